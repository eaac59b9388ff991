"""
### Hand a de-identified export to model training

Runs whenever `dicom_deidentify` publishes a manifest (Asset `dicom_deid_manifest`):
**gate** the manifest with Great Expectations, then **load** every listed image as an
array and write dataset statistics beside it (proof the export is trainable).

**Vertex AI (optional, off by default).** When the Airflow Variable
`dicom_deid_vertex_ai` (JSON) says `"enabled": true` - or a manual run sets
`train_on_vertex` - `vertex_job_spec` builds a Vertex AI CustomJob that runs the
configured training container on the manifest (`--manifest gs://...` and
`DICOM_DEID_MANIFEST`), and `vertex_training_job` submits it (deferrable, no retry:
a retry would start a second job). Otherwise both are skipped and the run succeeds.
The Variable is read when the run executes, never when this file is parsed.

On-call: a bad Variable fails `vertex_job_spec` with the keys at fault; the Vertex AI
task's extra link opens the job in the Cloud console.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Asset, Param, task
from dicom_deid_airflow.operators.vertex import VertexCustomJobOperator

MANIFEST = Asset(name="dicom_deid_manifest", uri="dicom-deid://manifest")
#: The connection the manifest and the export are read with.
GCP_CONN_ID = "google_cloud_default"

with DAG(
    dag_id="dicom_training_handoff",
    description="Validate a de-identified export's manifest and load it for training",
    doc_md=__doc__,
    schedule=[MANIFEST],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["dicom", "ml", "handoff", "vertex-ai"],
    default_args={"owner": "ml-platform", "retries": 1, "retry_delay": timedelta(seconds=30)},
    params={
        "manifest": Param("", type="string", title="Manifest (manual runs)",
                          description="gs://... manifest to hand off when the run was "
                                      "not triggered by a dicom_deidentify run"),
        "train_on_vertex": Param(False, type="boolean", title="Train on Vertex AI",
                                 description="Start the Vertex AI job for this run even if "
                                             "the dicom_deid_vertex_ai Variable's enabled is "
                                             "false (its job settings are still needed)"),
    },
) as dag:

    @task
    def manifest_uri(triggering_asset_events=None, params=None) -> str:  # noqa: ANN001
        """The manifest the triggering run wrote (the Asset event's extra), or the
        ``manifest`` param of a manual run."""
        events = (triggering_asset_events or {}).get(MANIFEST, [])
        if events:
            return str(events[-1].extra["manifest"])
        if (params or {}).get("manifest"):
            return str(params["manifest"])
        raise ValueError("no dicom_deid_manifest event triggered this run and no manifest "
                         "param was given")

    @task(retries=0)
    def gate_manifest(uri: str) -> dict:
        """Required columns present, URIs unique, sizes sane; fails listing expectations."""
        from dicom_deid_airflow.handoff import gate_manifest as gate

        return gate(uri, GCP_CONN_ID)

    @task
    def load_for_training(uri: str) -> dict:
        """Every exported image loads as an array; statistics written beside the manifest."""
        from dicom_deid_airflow.handoff import load_and_describe

        return load_and_describe(uri, GCP_CONN_ID)

    @task.short_circuit(multiple_outputs=True, retries=0)
    def vertex_job_spec(uri: str, loaded: dict, params=None) -> dict | None:  # noqa: ANN001
        """The Vertex AI job for this manifest, or nothing (the job is then skipped).

        Reads the ``dicom_deid_vertex_ai`` Variable now, at run time; a bad one fails
        here naming its keys, before anything is submitted."""
        from dicom_deid_airflow import vertex

        return vertex.handoff_job(uri, loaded.get("stats"), vertex.read_variable(),
                                  force=bool((params or {}).get("train_on_vertex")))

    uri = manifest_uri()
    loaded = load_for_training(uri)
    gate_manifest(uri) >> loaded
    spec = vertex_job_spec(uri, loaded)

    # The provider's CreateCustomJobOperator, imported only when the task runs (see
    # VertexCustomJobOperator); the XComs the spec task pushes (one per key) resolve
    # into its template fields at run time.
    VertexCustomJobOperator(
        task_id="vertex_training_job",
        project_id=spec["project_id"],
        region=spec["region"],
        gcp_conn_id=spec["gcp_conn_id"],
        custom_job=spec["custom_job"],
        deferrable=True,
        poll_interval=60,
        retries=0,
    )
