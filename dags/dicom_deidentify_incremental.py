"""
### Nightly: de-identify what is new in a store into one long-lived research store

**validate** params and resources (the destination may hold earlier runs' instances) →
**plan the increment**: the source's instances that the **ledger** (keyed digests of the
UIDs earlier runs de-identified, in the export bucket) does not hold, one filter per
route → (**nothing new** stops here, green) → **create or reuse** the destination →
**de-identify** the new instances only (one deferrable operation per route, with the
pipeline's crypto key, so UIDs and per-patient date shifts agree with earlier runs) →
**verify** a seeded sample → **gate** (counts reconcile over all runs) → **commit** the
ledger → **export** only what the folder lacks → **gate** the export → the cumulative
**manifest** plus this run's delta, and an Asset event for the training handoff.

Runs never overlap (`max_active_runs=1`), and every Healthcare API operation takes a slot
of the `healthcare_api` pool. Re-running a run, clearing a task or backfilling a range
finds nothing it has not done and does nothing twice.

**Schedule**: `@daily` unless the Airflow Variable `dicom_deid_incremental_schedule`
holds another (a cron expression or preset; Admin → Variables, read when the DAG file is
parsed). **Crypto key**: the Variable `dicom_deid_crypto_secret` (base64 AES key; set once,
keep it; a secrets backend can serve it).
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG, Asset, Param, TaskGroup, task
from dicom_deid_airflow import dag_parts
from dicom_deid_airflow.crypto_key import CRYPTO_KEY_VARIABLE
from dicom_deid_airflow.links import add_run_report_link
from dicom_deid_airflow.operators.healthcare import (
    HEALTHCARE_POOL,
    HealthcareCreateDicomStoreOperator,
    HealthcareExportDicomStoreOperator,
)
from dicom_deid_airflow.params import DEFAULT_EXPORT_BUCKET

MANIFEST = Asset(name="dicom_deid_manifest", uri="dicom-deid://manifest")
GCP_CONN_ID = "google_cloud_default"
SCHEDULE_VARIABLE = "dicom_deid_incremental_schedule"
DESTINATION = "research-longitudinal"


def _schedule() -> str:
    """The Variable's schedule, else ``@daily``: looked up through the environment
    (``AIRFLOW_VAR_...``, as a deployment or its secrets backend sets it) and then the
    metadata database, at parse time; an error reading it keeps the default."""
    env = os.environ.get(f"AIRFLOW_VAR_{SCHEDULE_VARIABLE.upper()}")
    if env:
        return env.strip()
    try:
        from airflow.sdk import Variable

        return str(Variable.get(SCHEDULE_VARIABLE, default="@daily")).strip() or "@daily"
    except Exception:  # no database at parse time (tests, a bare parse): the default
        return "@daily"


with DAG(
    dag_id="dicom_deidentify_incremental",
    description="Nightly: de-identify new studies into one research store, export the "
                "increment, extend the manifest",
    doc_md=__doc__,
    schedule=_schedule(),
    start_date=datetime(2026, 1, 1),
    # One run catches up whatever waits (the ledger, not the data interval, says what is
    # new): paused for a week, the next run takes the week. Backfills are idempotent.
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    tags=["dicom", "de-identification", "healthcare-api", "incremental"],
    default_args=dag_parts.DEFAULT_ARGS,
    params={
        "source_store": dag_parts.source_store_param(
            "The store that grows: projects/P/locations/L/datasets/D/dicomStores/S. Read, "
            "never changed."),
        "profile": dag_parts.profile_param(
            "longitudinal", "Keep the same profile across runs: a patient's studies must "
            "be de-identified alike to be comparable."),
        "destination_store_id": Param(
            DESTINATION, type="string", title="Destination store id",
            description="The long-lived research store in the source's dataset: created "
                        "by the first run, added to by every later one."),
        "export_prefix": Param(
            f"gs://{DEFAULT_EXPORT_BUCKET}/{DESTINATION}", type="string",
            title="Export folder",
            description="gs://bucket/prefix that holds every run's export; the ledger "
                        "and per-run manifests live in the same bucket."),
        "sample_size": Param(
            20, type="integer", minimum=1, maximum=10000, title="Verification sample size",
            description="Source/destination pairs checked, drawn with the run id as seed."),
        "max_failures": Param(
            0, type="integer", minimum=0, title="Instances allowed to fail per run",
            description="Failures tolerated before the run fails; a failed run commits "
                        "nothing, so the next run tries its instances again."),
        "max_instances_per_run": Param(
            100_000, type="integer", minimum=1, title="Instances per run at most",
            description="Catch-up in steps: what is over waits for the next run (whole "
                        "series). Trigger the DAG again to take the next step now."),
    },
) as dag:

    @task(multiple_outputs=True)
    def validate(params: dict | None = None, ti=None, run_id: str | None = None,  # noqa: ANN001
                 ) -> dict:
        """Params, profile, resources and the crypto key, before anything is created."""
        from airflow.sdk import get_current_context
        from dicom_deid_airflow.incremental_steps import validate_incremental
        from dicom_deid_airflow.params import run_slug
        from dicom_deid_airflow.steps import RunRef

        context = {**get_current_context(), "run_slug": run_slug(run_id or "manual")}
        return validate_incremental(
            params or {}, RunRef.current(GCP_CONN_ID),
            render=lambda value: str(ti.task.render_template(value, context)))

    @task(multiple_outputs=True)
    def plan_increment(plan: dict, params: dict | None = None) -> dict:
        """What the ledger does not hold yet, as one filter per route."""
        from dicom_deid_airflow.incremental_steps import plan_increment as plan_work
        from dicom_deid_airflow.steps import RunRef

        return plan_work(plan, RunRef.current(GCP_CONN_ID),
                         int((params or {}).get("max_instances_per_run") or 100_000))

    @task.short_circuit(retries=0)
    def unless_nothing_new(work: bool) -> bool:
        """Nothing new and nothing left to export: the run stops here, green."""
        return bool(work)

    @task.branch(retries=0)
    def choose(series: dict) -> list[str]:
        """One operation per route with new instances (none when only an earlier run's
        export is left to finish); ``verify`` always, which waits for them."""
        from dicom_deid_airflow.steps import chosen_routes

        return [*chosen_routes({"series": series}), "verify"]

    @task(trigger_rule="none_failed_min_one_success")
    def verify(plan: dict, increment: dict) -> dict:
        """A seeded sample of source/destination pairs checked attribute by attribute."""
        from airflow.sdk.exceptions import AirflowSkipException
        from dicom_deid_airflow.steps import RunRef
        from dicom_deid_airflow.steps import verify as verify_sample

        if not increment["instances"]:
            raise AirflowSkipException("Nothing was de-identified by this run")
        return verify_sample(plan, RunRef.current(GCP_CONN_ID))

    @task(retries=0)
    def gate_deidentified(plan: dict, increment: dict, verification: dict,
                          pixel: dict | None, metadata: dict | None) -> dict:
        """The sample's gate, and counts that reconcile over every run."""
        from dicom_deid_airflow.incremental_steps import gate_increment
        from dicom_deid_airflow.steps import RunRef

        return gate_increment(plan, increment, verification, [pixel, metadata],
                              RunRef.current(GCP_CONN_ID))

    @task(trigger_rule="none_failed")
    def commit_ledger(plan: dict, increment: dict, pixel: dict | None,
                      metadata: dict | None) -> dict:
        """The gated work is recorded as done: no later run takes it again."""
        from dicom_deid_airflow.incremental_steps import commit_ledger as commit
        from dicom_deid_airflow.steps import RunRef

        return commit(plan, increment, [pixel, metadata], RunRef.current(GCP_CONN_ID))

    @task(multiple_outputs=True)
    def plan_export(plan: dict) -> dict:
        """The destination's instances the export folder lacks, as the export's filter."""
        from dicom_deid_airflow.incremental_steps import plan_export as plan_it
        from dicom_deid_airflow.steps import RunRef

        return plan_it(plan, RunRef.current(GCP_CONN_ID))

    @task.branch(retries=0)
    def choose_export(instances: int) -> list[str]:
        """Export when the folder lacks something; else straight to the export gate."""
        return ["export"] if instances else ["gate_export"]

    @task(retries=0, trigger_rule="none_failed")
    def gate_export(plan: dict) -> dict:
        """Objects in the folder = destination instances (every run's, once each)."""
        from dicom_deid_airflow.steps import RunRef
        from dicom_deid_airflow.steps import gate_export as gate

        return gate(plan, RunRef.current(GCP_CONN_ID))

    @task(outlets=[MANIFEST])
    def manifest(plan: dict, exported: dict, gated: dict,
                 outlet_events=None) -> dict:  # noqa: ANN001 - Airflow injects
        """The cumulative manifest and this run's delta, announced to the handoff."""
        from dicom_deid_airflow.incremental_steps import write_manifests
        from dicom_deid_airflow.steps import RunRef

        result = write_manifests(plan, exported, int(gated["objects"]),
                                 RunRef.current(GCP_CONN_ID))
        if outlet_events is not None:
            outlet_events[MANIFEST].extra = {
                "manifest": result["uri"], "rows": result["rows"],
                "delta": result.get("delta_uri"), "delta_rows": result.get("delta_rows", 0)}
        return result

    opened = dag_parts.open_report(GCP_CONN_ID)
    with TaskGroup("plan", prefix_group_id=False,
                   tooltip="validate, find what the ledger does not hold"):
        plan = validate()
        increment = plan_increment(plan)
        proceed = unless_nothing_new(increment["work"])
    with TaskGroup("deidentify", prefix_group_id=False,
                   tooltip="create or reuse the destination, one operation per route"):
        create = HealthcareCreateDicomStoreOperator(
            task_id="create_destination_store",
            dataset_name=plan["dataset"],
            store_id=plan["destination_store_id"],
            reuse_nonempty=True,
            gcp_conn_id=GCP_CONN_ID,
        )
        deidentify = dag_parts.deidentify_routes(
            plan, increment, GCP_CONN_ID,
            crypto_key_variable=CRYPTO_KEY_VARIABLE)
        routes = choose(increment["series"])
        create >> routes >> [deidentify["pixel"], deidentify["metadata"]]
    with TaskGroup("check", prefix_group_id=False,
                   tooltip="verify a sample, gate, commit the ledger"):
        verification = verify(plan, increment)
        gated = gate_deidentified(plan, increment, verification,
                                  deidentify["pixel"].output, deidentify["metadata"].output)
        committed = commit_ledger(plan, increment, deidentify["pixel"].output,
                                  deidentify["metadata"].output)
        routes >> verification
        gated >> committed
    with TaskGroup("publish", prefix_group_id=False,
                   tooltip="export what is new, gate, manifest and Asset event"):
        to_export = plan_export(plan)
        export = HealthcareExportDicomStoreOperator(
            task_id="export",
            store=plan["destination_store"],
            uri_prefix=plan["export_prefix"],
            filter_uri=to_export["filter_uri"],
            gcp_conn_id=GCP_CONN_ID,
            pool=HEALTHCARE_POOL,
            deferrable=True,
        )
        export_gate = gate_export(plan)
        committed >> to_export >> choose_export(to_export["instances"]) >> [export,
                                                                            export_gate]
        export >> export_gate
        published = manifest(plan, to_export, export_gate)
    opened >> plan
    proceed >> create
    [deidentify["pixel"], deidentify["metadata"]] >> verification
    published >> dag_parts.report(GCP_CONN_ID).as_teardown(setups=opened)

    add_run_report_link(dag.tasks)
