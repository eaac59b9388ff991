"""
### Hand a de-identified export to model training

Runs whenever `dicom_deidentify` publishes a manifest (Asset `dicom_deid_manifest`):
**gate** the manifest with Great Expectations, then **load** every listed image as an
array and write dataset statistics beside it (proof the export is trainable).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Asset, Param, task

MANIFEST = Asset(name="dicom_deid_manifest", uri="dicom-deid://manifest")

with DAG(
    dag_id="dicom_training_handoff",
    description="Validate a de-identified export's manifest and load it for training",
    doc_md=__doc__,
    schedule=[MANIFEST],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["dicom", "ml", "handoff"],
    default_args={"owner": "ml-platform", "retries": 1, "retry_delay": timedelta(seconds=30)},
    params={"manifest": Param("", type="string", title="Manifest (manual runs)",
                              description="gs://... manifest to hand off when the run was "
                                          "not triggered by a dicom_deidentify run")},
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
        from dicom_deid_airflow.pipeline import gate_manifest as gate

        return gate(uri)

    @task
    def load_for_training(uri: str) -> dict:
        """Every exported image loads as an array; statistics written beside the manifest."""
        from dicom_deid_airflow.handoff import load_and_describe

        return load_and_describe(uri)

    uri = manifest_uri()
    gate_manifest(uri) >> load_for_training(uri)
