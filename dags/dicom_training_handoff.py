"""
### Hand a de-identified export to model training

Runs whenever `dicom_deidentify` publishes a manifest (Asset `dicom_deid_manifest`):
**gate** the manifest with Great Expectations, then **load** every listed image as an
array and write dataset statistics beside it (proof the export is trainable).

It is **not paused on creation**: Airflow queues an Asset event only for DAGs that are
not paused, so a manifest published while it is paused starts no run, ever. A run
triggered by several Asset events (two exports finished while a run was queued) gates
and loads **every** manifest in them, oldest first, and fails naming each one it could
not handle. To catch up after a pause, trigger it by hand with the missed manifests in
the `manifest` param (several, separated by commas or new lines); each export's report
names its manifest.

**Vertex AI (optional, off by default).** When the Airflow Variable
`dicom_deid_vertex_ai` (JSON) says `"enabled": true` - or a manual run sets
`train_on_vertex` - `vertex_job_spec` builds a Vertex AI CustomJob that runs the
configured training container on the manifest (`--manifest gs://...` and
`DICOM_DEID_MANIFEST`), and `vertex_training_job` submits it (deferrable, no retry:
a retry would start a second job) on the newest manifest of the run. Otherwise both are
skipped and the run succeeds.
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
    is_paused_upon_creation=False,
    tags=["dicom", "ml", "handoff", "vertex-ai"],
    default_args={"owner": "ml-platform", "retries": 1, "retry_delay": timedelta(seconds=30)},
    params={
        "manifest": Param("", type=["null", "string"], title="Manifests (manual runs)",
                          description="gs://... manifest(s) to hand off when the run was "
                                      "not triggered by a dicom_deidentify run: one, or "
                                      "several separated by commas or new lines"),
        "train_on_vertex": Param(False, type="boolean", title="Train on Vertex AI",
                                 description="Start the Vertex AI job for this run even if "
                                             "the dicom_deid_vertex_ai Variable's enabled is "
                                             "false (its job settings are still needed)"),
    },
) as dag:

    @task
    def manifest_uris(triggering_asset_events=None, params=None) -> list[str]:  # noqa: ANN001
        """Every manifest the triggering runs wrote (the Asset events' extras), or the
        ``manifest`` param of a manual run."""
        from dicom_deid_airflow.handoff import manifests_of

        events = list((triggering_asset_events or {}).get(MANIFEST, []))
        return manifests_of(events, (params or {}).get("manifest"))

    @task(retries=0)
    def gate_manifest(uris: list[str]) -> list[dict]:
        """Per manifest: required columns present, URIs unique, sizes sane; fails listing
        the manifests and expectations at fault."""
        from dicom_deid_airflow.handoff import for_each_manifest
        from dicom_deid_airflow.handoff import gate_manifest as gate

        return for_each_manifest(uris, lambda uri: gate(uri, GCP_CONN_ID), "the manifest gate")

    @task
    def load_for_training(uris: list[str]) -> dict:
        """Every exported image of every manifest loads as an array; statistics written
        beside each manifest. The newest manifest's statistics feed the Vertex AI job."""
        from dicom_deid_airflow.handoff import for_each_manifest, load_and_describe

        loaded = for_each_manifest(uris, lambda uri: load_and_describe(uri, GCP_CONN_ID),
                                   "loading for training")
        return {"manifests": loaded, "newest": loaded[-1]["manifest"],
                "stats": loaded[-1].get("stats")}

    @task.short_circuit(multiple_outputs=True, retries=0)
    def vertex_job_spec(loaded: dict, params=None) -> dict | None:  # noqa: ANN001
        """The Vertex AI job on the newest manifest, or nothing (the job is then skipped).

        Reads the ``dicom_deid_vertex_ai`` Variable now, at run time; a bad one fails
        here naming its keys, before anything is submitted."""
        from dicom_deid_airflow import vertex

        return vertex.handoff_job(loaded["newest"], loaded.get("stats"),
                                  vertex.read_variable(),
                                  force=bool((params or {}).get("train_on_vertex")))

    uris = manifest_uris()
    loaded = load_for_training(uris)
    gate_manifest(uris) >> loaded
    spec = vertex_job_spec(loaded)

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
