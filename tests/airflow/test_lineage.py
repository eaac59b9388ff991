"""OpenLineage: the names ``dicom_deid_airflow.lineage`` gives datasets, and the events a
real run of the ``dicom_deidentify`` DAG emits with a transport configured.

The DAG runs with ``airflow dags test`` in a subprocess (as tests/dags/test_pipeline_e2e.py
runs it), against the session's local Cloud Healthcare API server and Cloud Storage
emulator, with ``AIRFLOW__OPENLINEAGE__TRANSPORT`` set to openlineage-python's file
transport. The provider's plugin reads that setting when Airflow starts, which is why a
subprocess is used: this process's Airflow started without it. The listener is active in
``dags test`` (tasks run in-process there, through the same task runner that calls the
listeners), so the COMPLETE events of the de-identification, export and manifest tasks are
read back from the file and their datasets checked.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
from dicom_deid_airflow.lineage import (
    DatasetId,
    dicom_store_dataset_id,
    gcs_dataset_id,
    healthcare_namespace,
    operator_lineage,
    report_manifest_lineage,
)
from dicom_deid_airflow.operators.healthcare import (
    HealthcareDeidentifyDicomStoreOperator,
    HealthcareExportDicomStoreOperator,
    HealthcareImportDicomStoreOperator,
)
from pydicom.data import get_testdata_file

from tests.dags.helpers import AIRFLOW, migrated_airflow
from tests.helpers import PARENT, stow_raw

BUCKET = "dicom-deid-lineage"
STORE = "projects/demo/locations/local/datasets/d/dicomStores/s"


# -- naming (no Airflow run) ---------------------------------------------------------


@pytest.mark.parametrize(("uri", "expected"), [
    ("gs://b/run-1", ("gs://b", "run-1")),
    ("gs://b/run-1/", ("gs://b", "run-1")),
    ("gs://b/a/b/manifest.parquet", ("gs://b", "a/b/manifest.parquet")),
    ("gs://b", ("gs://b", "/")),
    ("gs://b/", ("gs://b", "/")),
    ("gs://b/drop/**.dcm", ("gs://b", "drop")),
    ("gs://b/drop/site-*/x.dcm", ("gs://b", "drop")),
    ("gs://b/*", ("gs://b", "/")),
])
def test_gcs_names_follow_the_openlineage_spec(uri, expected) -> None:
    assert gcs_dataset_id(uri) == DatasetId(*expected)


@pytest.mark.parametrize("uri", ["b/path", "s3://b/p", "gs:///p"])
def test_a_gcs_name_needs_a_gs_uri_with_a_bucket(uri) -> None:
    with pytest.raises(ValueError, match="gs://"):
        gcs_dataset_id(uri)


@pytest.mark.parametrize(("endpoint", "namespace"), [
    ("https://healthcare.googleapis.com", "healthcare://healthcare.googleapis.com"),
    ("https://Healthcare.GoogleAPIs.com/", "healthcare://healthcare.googleapis.com"),
    ("http://127.0.0.1:8080", "healthcare://127.0.0.1:8080"),
    ("http://user:secret@localhost:9000/base", "healthcare://localhost:9000"),
    ("localhost:9000", "healthcare://localhost:9000"),
])
def test_healthcare_namespace_is_the_endpoint_host(endpoint, namespace) -> None:
    assert healthcare_namespace(endpoint) == namespace


def test_a_store_is_named_by_its_full_resource_name() -> None:
    assert dicom_store_dataset_id("https://healthcare.googleapis.com", f"/{STORE}") == (
        "healthcare://healthcare.googleapis.com", STORE)
    with pytest.raises(ValueError, match="dicomStores"):
        dicom_store_dataset_id("https://healthcare.googleapis.com", "s")


def test_operator_lineage_holds_openlineage_datasets() -> None:
    lineage = operator_lineage([gcs_dataset_id("gs://b/in")], [DatasetId("ns", "out")])
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("gs://b", "in")]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("ns", "out")]


def test_the_operators_report_their_stores_and_uris(server) -> None:
    """Names as the listener would get them, with the hook on the local server."""
    namespace = healthcare_namespace(server.url)
    other = STORE.replace("/s", "/t")

    def names(lineage) -> tuple[list, list]:
        return ([(d.namespace, d.name) for d in lineage.inputs],
                [(d.namespace, d.name) for d in lineage.outputs])

    deid = HealthcareDeidentifyDicomStoreOperator(
        task_id="d", source_store=STORE, destination_store=other, config={})
    assert names(deid.get_openlineage_facets_on_complete(None)) == (
        [(namespace, STORE)], [(namespace, other)])
    export = HealthcareExportDicomStoreOperator(task_id="e", store=other,
                                                uri_prefix="gs://b/run/")
    assert names(export.get_openlineage_facets_on_complete(None)) == (
        [(namespace, other)], [("gs://b", "run")])
    imported = HealthcareImportDicomStoreOperator(task_id="i", store=STORE,
                                                  uri="gs://b/drop/**")
    assert names(imported.get_openlineage_facets_on_complete(None)) == (
        [("gs://b", "drop")], [(namespace, STORE)])


def test_manifest_lineage_is_a_no_op_without_a_reader(caplog) -> None:
    """This process's Airflow has no OpenLineage transport: nothing is collected, built
    or logged."""
    from airflow.providers.openlineage import conf
    from airflow.sdk.lineage import get_hook_lineage_collector

    if not conf.is_disabled():
        pytest.skip("this session's Airflow has an OpenLineage transport configured")
    get_hook_lineage_collector.cache_clear()
    report_manifest_lineage("gs://b/run/manifest.parquet", "gs://b/run")
    assert get_hook_lineage_collector.cache_info().currsize == 0
    assert caplog.records == []


# -- a real DAG run with the file transport --------------------------------------------


@pytest.fixture(scope="module")
def lineage_run(tmp_path_factory, server, gcs_emulator, healthcare) -> dict:  # noqa: ANN001
    """One ``dicom_deidentify`` run (CT and MR: the metadata route) with the file
    transport; its events by task id, and the names it used."""
    home = tmp_path_factory.mktemp("airflow-lineage")
    env = migrated_airflow(home, server.url, gcs_emulator.host, BUCKET)
    events = home / "openlineage.jsonl"
    env["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps(
        {"type": "file", "log_file_path": str(events), "append": True})
    env["AIRFLOW__OPENLINEAGE__NAMESPACE"] = "dicom-deid-test"
    datasets = healthcare.projects().locations().datasets()
    dataset_id = f"lineage-{uuid.uuid4().hex[:8]}"
    datasets.create(parent=PARENT, datasetId=dataset_id, body={}).execute()
    source = datasets.dicomStores().create(parent=f"{PARENT}/datasets/{dataset_id}",
                                           dicomStoreId="source", body={}).execute()["name"]
    parts = [Path(get_testdata_file(n)).read_bytes() for n in ("CT_small.dcm", "MR_small.dcm")]
    assert stow_raw(f"{server.url}/v1/{source}/dicomWeb", parts).status_code == 200
    prefix = f"gs://{BUCKET}/run-{uuid.uuid4().hex[:6]}"
    run = subprocess.run(
        [AIRFLOW, "dags", "test", "dicom_deidentify", "--conf", json.dumps({
            "source_store": source, "destination_store_id": "deid", "profile": "basic",
            "sample_size": 2, "export_prefix": prefix})],
        env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    by_task: dict[str, list[dict]] = {}
    for line in events.read_text().splitlines():
        event = json.loads(line)
        task = event["job"]["name"].removeprefix("dicom_deidentify.")
        by_task.setdefault(task, []).append(event)
    return {"events": by_task, "source": source, "prefix": prefix,
            "destination": source.replace("/source", "/deid"),
            "namespace": healthcare_namespace(server.url), "output": run.stdout + run.stderr}


def _complete(lineage_run: dict, task_id: str) -> dict:
    events = [e for e in lineage_run["events"].get(task_id, [])
              if e["eventType"] == "COMPLETE"]
    assert len(events) == 1, sorted(lineage_run["events"])
    return events[0]


def _datasets(event: dict, side: str) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in event[side]]


def test_deidentify_reports_source_store_in_and_destination_out(lineage_run) -> None:
    event = _complete(lineage_run, "deidentify_metadata")
    namespace = lineage_run["namespace"]
    assert _datasets(event, "inputs") == [(namespace, lineage_run["source"])]
    assert _datasets(event, "outputs") == [(namespace, lineage_run["destination"])]
    assert event["job"]["namespace"] == "dicom-deid-test"


def test_export_reports_the_store_in_and_the_prefix_out(lineage_run) -> None:
    event = _complete(lineage_run, "export")
    assert _datasets(event, "inputs") == [(lineage_run["namespace"],
                                           lineage_run["destination"])]
    assert _datasets(event, "outputs") == [gcs_dataset_id(lineage_run["prefix"])]


def test_manifest_reports_the_export_in_and_the_manifest_out(lineage_run) -> None:
    event = _complete(lineage_run, "manifest")
    prefix = gcs_dataset_id(lineage_run["prefix"])
    assert _datasets(event, "inputs") == [prefix]
    assert _datasets(event, "outputs") == [(prefix.namespace,
                                            f"{prefix.name}/manifest.parquet")]
