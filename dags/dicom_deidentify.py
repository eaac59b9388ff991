"""
### De-identify a DICOM store, verify it, gate it, export it for ML

Source store → **validate** params and profile → **create** the destination store →
**route** series by modality (burned-in-text prone modalities get pixel redaction,
CT/MR metadata-only) → **de-identify** (one deferrable Cloud Healthcare API operation
per route, both into the destination) → **verify** a seeded sample of
source/destination pairs → **quality gate** (Great Expectations) → **export** to
Cloud Storage (deferrable) → **gate** the export → **manifest** beside the export,
and an Asset event for the training handoff.

The same DAG runs on Google Cloud and on the project's local Cloud Healthcare API
server: the `google_cloud_default` connection's `api_endpoint` extra decides.

On-call: a failed gate lists the expectations that failed. Every task has a **Run
report** link (counts, gates, outlined thumbnails; written when the run ends, whatever
happened); the verification table and gate results sit beside it. No task logs or
returns PHI.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Asset, Param, task
from dicom_deid_airflow.configs import profiles
from dicom_deid_airflow.links import add_run_report_link
from dicom_deid_airflow.operators.healthcare import (
    HealthcareCreateDicomStoreOperator,
    HealthcareDeidentifyDicomStoreOperator,
    HealthcareExportDicomStoreOperator,
)
from dicom_deid_airflow.params import MIME_TYPES

MANIFEST = Asset(name="dicom_deid_manifest", uri="dicom-deid://manifest")
#: The connection every task uses: its ``api_endpoint`` extra picks Google or the local
#: server. Operators and Python steps get it passed in.
GCP_CONN_ID = "google_cloud_default"

with DAG(
    dag_id="dicom_deidentify",
    description="De-identify a DICOM store, verify, gate, export and hand off for ML",
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=4,
    render_template_as_native_obj=True,
    tags=["dicom", "de-identification", "healthcare-api"],
    default_args={"owner": "data-platform", "retries": 2, "retry_delay": timedelta(seconds=30)},
    params={
        "source_store": Param(
            "projects/demo/locations/local/datasets/demo/dicomStores/source", type="string",
            title="Source DICOM store",
            description="projects/P/locations/L/datasets/D/dicomStores/S"),
        "destination_store_id": Param(
            "{{ params.profile }}-{{ run_slug }}", type="string", minLength=1,
            title="Destination store id",
            description="Created in the source's dataset (reused if empty). Letters, "
                        "digits, _ . - once rendered; {{ run_slug }} is this run's ID"),
        "profile": Param(
            "basic", type="string", enum=profiles(), title="De-identification profile",
            description="include/configs/deid/<profile>.json (a Cloud Healthcare API "
                        "DeidentifyConfig)"),
        "study_uids": Param(
            [], type="array", items={"type": "string"}, title="Only these studies (optional)",
            description="Ad-hoc runs: restrict to these Study Instance UIDs"),
        "sample_size": Param(20, type="integer", minimum=1, maximum=10000,
                             title="Verification sample size"),
        "export_prefix": Param("gs://dicom-deid-export/{{ run_slug }}", type="string",
                               title="Export to",
                               description="gs://bucket/prefix, this run's own folder by "
                                           "default (the export gate counts what is there)"),
        "export_mime_type": Param(
            "application/dicom", type="string", enum=list(MIME_TYPES),
            title="Export format",
            description="DICOM as stored, or image/png frames for ML"),
        "overwrite": Param(False, type="boolean",
                           title="Replace a non-empty destination store"),
        "max_failures": Param(0, type="integer", minimum=0,
                              title="Instances allowed to fail de-identification"),
    },
) as dag:

    @task(multiple_outputs=True)
    def validate(params: dict | None = None, ti=None, run_id: str | None = None,  # noqa: ANN001
                 ) -> dict:
        """Params and profile checked before anything is created; the destination store
        id and export prefix rendered (they default to this run's own). One XCom per
        plan field, so the operators below take them as XComArgs."""
        from airflow.sdk import get_current_context
        from dicom_deid_airflow.params import run_slug, validate_params

        context = {**get_current_context(), "run_slug": run_slug(run_id or "manual")}
        return validate_params(
            params or {}, render=lambda value: str(ti.task.render_template(value, context)))

    plan = validate()

    create = HealthcareCreateDicomStoreOperator(
        task_id="create_destination_store",
        dataset_name=plan["dataset"],
        store_id=plan["destination_store_id"],
        overwrite=plan["overwrite"],
        gcp_conn_id=GCP_CONN_ID,
    )

    @task(multiple_outputs=True)
    def route(plan: dict) -> dict:
        """Series per route, written as filterConfig files; counts only in XCom."""
        from dicom_deid_airflow.steps import RunRef, plan_routes

        return plan_routes(plan, RunRef.current(GCP_CONN_ID))

    routes = route(plan)

    @task.branch
    def choose(series: dict) -> list[str]:
        """Skip a route with no series (the API refuses an empty filter)."""
        from dicom_deid_airflow.steps import chosen_routes

        return chosen_routes({"series": series})

    deidentify = {
        name: HealthcareDeidentifyDicomStoreOperator(
            task_id=f"deidentify_{name}",
            source_store=plan["source_store"],
            destination_store=plan["destination_store"],
            max_failures=plan["max_failures"],
            config=routes[f"{name}_config"],
            filter_uri=routes[f"{name}_filter_uri"],
            gcp_conn_id=GCP_CONN_ID,
            deferrable=True,
        )
        for name in ("pixel", "metadata")
    }

    @task(trigger_rule="none_failed_min_one_success")
    def verify(plan: dict) -> dict:
        """A seeded sample of source/destination pairs checked attribute by attribute."""
        from dicom_deid_airflow.steps import RunRef
        from dicom_deid_airflow.steps import verify as verify_sample

        return verify_sample(plan, RunRef.current(GCP_CONN_ID))

    @task(retries=0, trigger_rule="none_failed_min_one_success")
    def gate_deidentified(plan: dict, verification: dict, pixel: dict | None,
                          metadata: dict | None) -> dict:
        """Great Expectations over the sample and the counts; fails listing expectations."""
        from dicom_deid_airflow.steps import RunRef
        from dicom_deid_airflow.steps import gate_deidentified as gate

        return gate(plan, verification, [pixel, metadata], RunRef.current(GCP_CONN_ID))

    export = HealthcareExportDicomStoreOperator(
        task_id="export",
        store=plan["destination_store"],
        uri_prefix=plan["export_prefix"],
        mime_type=plan["export_mime_type"],
        gcp_conn_id=GCP_CONN_ID,
        deferrable=True,
    )

    @task(retries=0)
    def gate_export(plan: dict) -> dict:
        """Objects exported = destination instances; names and sizes sane."""
        from dicom_deid_airflow.steps import RunRef
        from dicom_deid_airflow.steps import gate_export as gate

        return gate(plan, RunRef.current(GCP_CONN_ID))

    @task(outlets=[MANIFEST])
    def manifest(plan: dict, outlet_events=None) -> dict:  # noqa: ANN001 - Airflow injects
        """The manifest beside the export, announced to the training handoff."""
        from dicom_deid_airflow.steps import RunRef, write_manifest

        result = write_manifest(plan, RunRef.current(GCP_CONN_ID))
        if outlet_events is not None:
            outlet_events[MANIFEST].extra = {"manifest": result["uri"], "rows": result["rows"]}
        return result

    @task(trigger_rule="all_done", retries=0)
    def report(plan: dict, pixel: dict | None, metadata: dict | None,
               exported: dict | None) -> dict:
        """The run's HTML report (counts, digest, gates, sampled thumbnails), written
        whatever happened upstream: on-call opens it first."""
        from dicom_deid_airflow.steps import RunRef, write_run_report

        outcomes = {"deidentify_pixel": pixel, "deidentify_metadata": metadata,
                    "export": exported}
        return write_run_report(plan, outcomes, RunRef.current(GCP_CONN_ID))

    deidentified = [deidentify["pixel"], deidentify["metadata"]]
    verification = verify(plan)
    plan >> create >> routes >> choose(routes["series"]) >> deidentified >> verification
    gate = gate_deidentified(plan, verification, deidentify["pixel"].output,
                             deidentify["metadata"].output)
    gate >> export >> gate_export(plan) >> manifest(plan) >> report(
        plan, deidentify["pixel"].output, deidentify["metadata"].output, export.output)

    @task(trigger_rule="one_failed", retries=0)
    def run_failed() -> None:
        """Keeps the run red when a task failed: the report, which runs whatever
        happened, must not turn a failed run green."""
        raise RuntimeError("a task of this run failed; its log and the run report say why")

    dag.tasks >> run_failed()
    add_run_report_link(dag.tasks)
