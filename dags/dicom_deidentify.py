"""
### De-identify a DICOM store, verify it, gate it, export it for ML

**validate** params, profile and every resource the run needs (source store, studies,
destination, export bucket) → **route** series by modality (burned-in-text prone
modalities get pixel redaction, CT/MR metadata-only) and estimate the cost →
(**dry run** stops here) → **create** the destination store → **de-identify** (one
deferrable Cloud Healthcare API operation per route) → **verify** a seeded sample of
source/destination pairs → **quality gate** (Great Expectations) → optional human
**review** of the sampled pairs → **export** to Cloud Storage (deferrable) → **gate**
the export → **manifest** beside the export, and an Asset event for the training handoff.
Every Healthcare API operation takes a slot of the `healthcare_api` pool.

The same DAG runs on Google Cloud and on the project's local Cloud Healthcare API
server: the `google_cloud_default` connection's `api_endpoint` extra decides.

On-call: open the **Run report** link of any task. It is opened when the run starts
(setup task) and completed when it ends (teardown task), whatever happened: a banner
says whether the run succeeded, which task failed and why (no PHI), with the params,
the resources, per-task durations, the gates, the cost estimate and the sampled
before/after pairs. Any failed task makes the run failed; deterministic errors (bad
params, missing resources, 4xx answers, failed gates) fail at once, without retries.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Asset, Param, TaskGroup, task
from dicom_deid_airflow import dag_parts
from dicom_deid_airflow.links import add_run_report_link
from dicom_deid_airflow.operators.healthcare import (
    HEALTHCARE_POOL,
    HealthcareCreateDicomStoreOperator,
    HealthcareExportDicomStoreOperator,
)
from dicom_deid_airflow.operators.review import ReviewApprovalOperator
from dicom_deid_airflow.params import DEFAULT_EXPORT_BUCKET, MIME_TYPES

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
    default_args=dag_parts.DEFAULT_ARGS,
    params={
        "source_store": dag_parts.source_store_param(
            "The store to de-identify: projects/P/locations/L/datasets/D/dicomStores/S. "
            "It is read, never changed."),
        "profile": dag_parts.profile_param(
            "basic", "What is removed, replaced or painted (include/configs/deid/)."),
        "destination_store_id": Param(
            None, type=["null", "string"], title="Destination store id (optional)",
            description="Created in the source's dataset (an existing empty store is "
                        "reused). Empty: <profile>-<run id>, this run's own store."),
        "study_uids": Param(
            None, type=["null", "array"], items={"type": "string"},
            title="Only these studies (optional)",
            description="Study Instance UIDs, one per line, for an ad-hoc run. Empty: the "
                        "whole store. Each must be in the source store."),
        "sample_size": Param(
            20, type="integer", minimum=1, maximum=10000, title="Verification sample size",
            description="Source/destination pairs checked attribute by attribute and by "
                        "OCR, drawn with the run id as seed."),
        "export_prefix": Param(
            None, type=["null", "string"], title="Export to (optional)",
            description=f"gs://bucket/prefix. Empty: gs://{DEFAULT_EXPORT_BUCKET}/<run id>, "
                        "this run's own folder (the export gate counts what is there)."),
        "export_mime_type": Param(
            "application/dicom", type="string", enum=list(MIME_TYPES),
            values_display=MIME_TYPES, title="Export format",
            description="DICOM files as stored, or PNG frames for ML."),
        "overwrite": Param(
            False, type=["boolean", "null"], title="Replace a non-empty destination store",
            description="Off: a destination that already holds instances fails validate. "
                        "On: it is deleted and recreated (its instances are lost)."),
        "max_failures": Param(
            0, type="integer", minimum=0, title="Instances allowed to fail",
            description="De-identification failures tolerated before the run fails (each "
                        "is listed with its reason in the operation's log)."),
        "dry_run": Param(
            False, type=["boolean", "null"], title="Dry run",
            description="Validate, route and estimate the cost, then stop: nothing is "
                        "created, de-identified or exported. The report shows the plan."),
        "require_review": Param(
            False, type=["boolean", "null"], title="Require a human review before export",
            description="A reviewer approves or rejects the sampled before/after pairs in "
                        "Required Actions; rejection or no answer in 24 h fails the run."),
    },
) as dag:

    @task(multiple_outputs=True)
    def validate(params: dict | None = None, ti=None, run_id: str | None = None,  # noqa: ANN001
                 ) -> dict:
        """Params, profile and every resource checked before anything is created; the
        destination store id and export prefix resolved. One XCom per plan field, so the
        operators below take them as XComArgs."""
        from airflow.sdk import get_current_context
        from dicom_deid_airflow.params import run_slug
        from dicom_deid_airflow.steps import RunRef, validate_run

        context = {**get_current_context(), "run_slug": run_slug(run_id or "manual")}
        return validate_run(
            params or {}, RunRef.current(GCP_CONN_ID),
            render=lambda value: str(ti.task.render_template(value, context)))

    @task(multiple_outputs=True)
    def route(plan: dict) -> dict:
        """Series per route, written as filterConfig files, and the cost estimate."""
        from dicom_deid_airflow.steps import RunRef, plan_routes

        return plan_routes(plan, RunRef.current(GCP_CONN_ID))

    @task.short_circuit(retries=0)
    def unless_dry_run(dry_run: bool) -> bool:
        """A dry run stops here, green, with nothing created: the report shows the plan
        and the estimate."""
        return not dry_run

    @task.branch(retries=0)
    def choose(series: dict) -> list[str]:
        """Skip a route with no series (the API refuses an empty filter)."""
        from dicom_deid_airflow.steps import chosen_routes

        return chosen_routes({"series": series})

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

    def _report_for_review(context: dict) -> None:
        from dicom_deid_airflow.run_report import write_run_report
        from dicom_deid_airflow.steps import RunRef

        write_run_report(context, RunRef.current(GCP_CONN_ID), final=False)

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

    # Four groups between the report's setup and teardown, so that the graph reads at its
    # default zoom; prefix_group_id=False keeps the task ids (links, XComs, the report).
    opened = dag_parts.open_report(GCP_CONN_ID)
    with TaskGroup("plan", prefix_group_id=False,
                   tooltip="validate params and resources, route by modality, estimate"):
        plan = validate()
        routes = route(plan)
        proceed = unless_dry_run(plan["dry_run"])
        routes >> proceed
    with TaskGroup("deidentify", prefix_group_id=False,
                   tooltip="create the destination, one operation per route"):
        create = HealthcareCreateDicomStoreOperator(
            task_id="create_destination_store",
            dataset_name=plan["dataset"],
            store_id=plan["destination_store_id"],
            overwrite=plan["overwrite"],
            gcp_conn_id=GCP_CONN_ID,
        )
        deidentify = dag_parts.deidentify_routes(
            plan, routes, GCP_CONN_ID)
        create >> choose(routes["series"]) >> [deidentify["pixel"], deidentify["metadata"]]
    with TaskGroup("check", prefix_group_id=False,
                   tooltip="verify a sample, quality gates, optional human review"):
        verification = verify(plan)
        gate = gate_deidentified(plan, verification, deidentify["pixel"].output,
                                 deidentify["metadata"].output)
        review = ReviewApprovalOperator(
            task_id="review",
            required=plan["require_review"],
            prepare=_report_for_review,
            retries=0,  # a person's verdict is final
            subject="Review the de-identified sample of run {{ run_id }}",
            body="Compare the sampled before/after pairs in the run report (below, and the "
                 "Run report link of this task). Approve to export; Reject stops the run: "
                 "it fails and nothing is exported.",
        )
        gate >> review
    with TaskGroup("publish", prefix_group_id=False,
                   tooltip="export, gate the export, manifest and Asset event"):
        export = HealthcareExportDicomStoreOperator(
            task_id="export",
            store=plan["destination_store"],
            uri_prefix=plan["export_prefix"],
            mime_type=plan["export_mime_type"],
            gcp_conn_id=GCP_CONN_ID,
            pool=HEALTHCARE_POOL,
            deferrable=True,
        )
        published = export >> gate_export(plan) >> manifest(plan)
    opened >> plan
    proceed >> create
    [deidentify["pixel"], deidentify["metadata"]] >> verification
    review >> export
    published >> dag_parts.report(GCP_CONN_ID).as_teardown(setups=opened)

    add_run_report_link(dag.tasks)
