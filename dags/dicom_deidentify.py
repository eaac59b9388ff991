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
from dicom_deid_airflow import pipeline
from dicom_deid_airflow.links import add_run_report_link
from dicom_deid_airflow.operators.healthcare import (
    CreateDicomStoreOperator,
    DeidentifyDicomStoreOperator,
    ExportDicomStoreOperator,
)

MANIFEST = Asset(name="dicom_deid_manifest", uri="dicom-deid://manifest")
PLAN = "ti.xcom_pull(task_ids='validate')"

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
            "basic", type="string", enum=pipeline.profiles(), title="De-identification profile",
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
            "application/dicom", type="string", enum=list(pipeline.MIME_TYPES),
            title="Export format",
            description="DICOM as stored, or image/png frames for ML"),
        "overwrite": Param(False, type="boolean",
                           title="Replace a non-empty destination store"),
        "max_failures": Param(0, type="integer", minimum=0,
                              title="Instances allowed to fail de-identification"),
    },
) as dag:

    @task
    def validate(params: dict | None = None, ti=None, run_id: str | None = None,  # noqa: ANN001
                 ) -> dict:
        """Params and profile checked before anything is created; the destination store
        id and export prefix rendered (they default to this run's own)."""
        from airflow.sdk import get_current_context

        context = {**get_current_context(), "run_slug": pipeline.run_slug(run_id or "manual")}
        return pipeline.validate_params(
            params or {}, render=lambda value: str(ti.task.render_template(value, context)))

    plan = validate()

    create = CreateDicomStoreOperator(
        task_id="create_destination_store",
        dataset_name=f"{{{{ {PLAN}['dataset'] }}}}",
        store_id=f"{{{{ {PLAN}['destination_store'].rsplit('/', 1)[1] }}}}",
        overwrite="{{ params.overwrite }}",
    )

    @task
    def route(plan: dict, run_id: str | None = None) -> dict:
        """Series per route, written as filterConfig files; counts only in XCom."""
        return pipeline.plan_routes(plan, run_id or "manual")

    routes = route(plan)

    @task.branch
    def choose(routes: dict) -> list[str]:
        """Skip a route with no series (the API refuses an empty filter)."""
        return [f"deidentify_{name}" for name in ("pixel", "metadata") if routes[name]["series"]]

    common = {
        "source_store": f"{{{{ {PLAN}['source_store'] }}}}",
        "destination_store": f"{{{{ {PLAN}['destination_store'] }}}}",
        "max_failures": f"{{{{ {PLAN}['max_failures'] }}}}",
    }
    deid_pixel = DeidentifyDicomStoreOperator(
        task_id="deidentify_pixel",
        config="{{ ti.xcom_pull(task_ids='route')['pixel']['config'] }}",
        filter_uri="{{ ti.xcom_pull(task_ids='route')['pixel']['filter_uri'] }}",
        **common)
    deid_metadata = DeidentifyDicomStoreOperator(
        task_id="deidentify_metadata",
        config="{{ ti.xcom_pull(task_ids='route')['metadata']['config'] }}",
        filter_uri="{{ ti.xcom_pull(task_ids='route')['metadata']['filter_uri'] }}",
        **common)

    @task(trigger_rule="none_failed_min_one_success")
    def verify(plan: dict, run_id: str | None = None) -> dict:
        """A seeded sample of source/destination pairs checked attribute by attribute."""
        return pipeline.verify(plan, run_id or "manual")

    @task(retries=0, trigger_rule="none_failed_min_one_success")
    def gate_deidentified(plan: dict, routes: dict, verification: dict, ti=None,  # noqa: ANN001
                          run_id: str | None = None) -> dict:
        """Great Expectations over the sample and the counts; fails listing expectations."""
        outcomes = ti.xcom_pull(task_ids=["deidentify_pixel", "deidentify_metadata"]) or []
        failures = sum(int((o or {}).get("failure", 0)) for o in outcomes)
        return pipeline.gate_deidentified(plan, routes, verification, failures,
                                          run_id or "manual")

    export = ExportDicomStoreOperator(
        task_id="export",
        store=f"{{{{ {PLAN}['destination_store'] }}}}",
        uri_prefix=f"{{{{ {PLAN}['export_prefix'] }}}}",
        mime_type=f"{{{{ {PLAN}['export_mime_type'] }}}}",
    )

    @task(retries=0)
    def gate_export(plan: dict, run_id: str | None = None) -> dict:
        """Objects exported = destination instances; names and sizes sane."""
        return pipeline.gate_export(plan, run_id or "manual")

    @task(outlets=[MANIFEST])
    def manifest(plan: dict, outlet_events=None) -> dict:  # noqa: ANN001 - Airflow injects
        """The manifest beside the export, announced to the training handoff."""
        result = pipeline.write_manifest(plan)
        if outlet_events is not None:
            outlet_events[MANIFEST].extra = {"manifest": result["uri"], "rows": result["rows"]}
        return result

    @task(trigger_rule="all_done", retries=0)
    def report(plan: dict, ti=None, run_id: str | None = None) -> dict:  # noqa: ANN001
        """The run's HTML report (counts, digest, gates, sampled thumbnails), written
        whatever happened upstream: on-call opens it first."""
        outcomes: dict = {}
        for task_id in ("deidentify_pixel", "deidentify_metadata", "export"):
            result = ti.xcom_pull(task_ids=task_id) or {}
            for key in ("success", "failure"):
                if key in result:
                    outcomes[f"{task_id} {key}"] = int(result[key])
        return pipeline.write_run_report(plan, run_id or "manual", outcomes)

    verification = verify(plan)
    chosen = choose(routes)
    plan >> create >> routes >> chosen >> [deid_pixel, deid_metadata] >> verification
    gate = gate_deidentified(plan, routes, verification)
    published = manifest(plan)
    gate >> export >> gate_export(plan) >> published >> report(plan)

    @task(trigger_rule="one_failed", retries=0)
    def run_failed() -> None:
        """Keeps the run red when a task failed: the report, which runs whatever
        happened, must not turn a failed run green."""
        raise RuntimeError("a task of this run failed; its log and the run report say why")

    dag.tasks >> run_failed()
    add_run_report_link(dag.tasks)
