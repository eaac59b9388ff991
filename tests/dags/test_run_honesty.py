"""Red means red, fail fast, and the report says why: real ``airflow dags test`` runs of
``dicom_deidentify`` against the local server, with requests that cannot succeed.

Each bad request must fail the run in ``validate``, once (no retries: the answer would be
the same), before any store is created, and the run report must say which task failed
and why without quoting the bad value. A dry run must stop green after routing, with the
estimate in its report and nothing created.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from tests.dags.helpers import AIRFLOW, migrated_airflow
from tests.helpers import PARENT, stow_raw

BUCKET = "dicom-deid-honesty"
DAG_ID = "dicom_deidentify"


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory, server, gcs_emulator) -> dict:  # noqa: ANN001
    return migrated_airflow(tmp_path_factory.mktemp("airflow-honesty"), server.url,
                            gcs_emulator.host, BUCKET)


def _source(healthcare, server, parts: list[bytes]) -> tuple[str, str]:  # noqa: ANN001
    """A new dataset with a ``source`` store holding ``parts``; (dataset, store)."""
    datasets = healthcare.projects().locations().datasets()
    dataset_id = f"honest-{uuid.uuid4().hex[:8]}"
    datasets.create(parent=PARENT, datasetId=dataset_id, body={}).execute()
    name = f"{PARENT}/datasets/{dataset_id}"
    store = datasets.dicomStores().create(parent=name, dicomStoreId="source",
                                          body={}).execute()["name"]
    assert stow_raw(f"{server.url}/v1/{store}/dicomWeb", parts).status_code == 200
    return name, store


@pytest.fixture(scope="module")
def dataset(healthcare, server) -> tuple[str, str, str]:  # noqa: ANN001
    """A dataset with a two-instance source store; returns (dataset, store, study UID)."""
    import pydicom

    name, store = _source(healthcare, server, [
        Path(get_testdata_file(n)).read_bytes() for n in ("CT_small.dcm", "MR_small.dcm")])
    study = str(pydicom.dcmread(get_testdata_file("CT_small.dcm")).StudyInstanceUID)
    return name, store, study


def _stores(healthcare, dataset: str) -> list[str]:  # noqa: ANN001
    found = healthcare.projects().locations().datasets().dicomStores().list(
        parent=dataset).execute().get("dicomStores", [])
    return sorted(s["name"].rsplit("/", 1)[1] for s in found)


def _run(env: dict, conf: dict) -> tuple[subprocess.CompletedProcess, str]:
    proc = subprocess.run([AIRFLOW, "dags", "test", DAG_ID, "--conf", json.dumps(conf)],
                          env=env, capture_output=True, text=True, timeout=600)
    found = re.search(r"DagRun Finished: .*?run_id=([^,\s]+),", proc.stdout + proc.stderr)
    assert found, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, found[1]


def _db(env: dict, run_id: str) -> tuple[dict, dict[str, tuple[str, int]]]:
    """The run's state and times, and each task's (state, try_number)."""
    db = sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db")
    try:
        state, start, end = db.execute(
            "select state, start_date, end_date from dag_run where dag_id = ? and run_id = ?",
            (DAG_ID, run_id)).fetchone()
        tasks = {t: (s, n) for t, s, n in db.execute(
            "select task_id, state, try_number from task_instance where dag_id = ? and "
            "run_id = ?", (DAG_ID, run_id))}
    finally:
        db.close()
    return {"state": state, "start": start, "end": end}, tasks


def _report(env: dict, run_id: str) -> str:
    from dicom_deid_airflow.report_paths import path_segment

    return (Path(env["DICOM_DEID_REPORTS"]) / DAG_ID / path_segment(run_id)
            / "report.html").read_text()


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _assert_failed_at_validate(env: dict, run: subprocess.CompletedProcess, run_id: str,
                               message: str) -> str:
    assert run.returncode != 0, run.stdout[-3000:]
    dag_run, tasks = _db(env, run_id)
    assert dag_run["state"] == "failed", dag_run
    assert tasks["validate"] == ("failed", 1), tasks  # once: no retry
    assert tasks["open_report"][0] == "success" and tasks["report"][0] == "success", tasks
    for task in ("route", "create_destination_store", "export", "manifest"):
        assert tasks[task][0] == "upstream_failed", tasks
    assert message in run.stdout + run.stderr
    html = _report(env, run_id)
    assert "Run failed at validate" in html
    assert message in html
    return html


def test_a_study_filter_that_matches_nothing_fails_validate(airflow_env, dataset,
                                                            healthcare) -> None:
    name, store, _ = dataset
    before = _stores(healthcare, name)
    run, run_id = _run(airflow_env, {"source_store": store, "study_uids": ["1.2.3.999"],
                                     "export_prefix": f"gs://{BUCKET}/nothing"})
    _assert_failed_at_validate(airflow_env, run, run_id,
                               "No instances matched the study filter")
    assert _stores(healthcare, name) == before  # nothing created


def test_an_empty_source_fails_validate(airflow_env, dataset, healthcare) -> None:
    name, _, _ = dataset
    healthcare.projects().locations().datasets().dicomStores().create(
        parent=name, dicomStoreId="empty", body={}).execute()
    before = _stores(healthcare, name)
    run, run_id = _run(airflow_env, {"source_store": f"{name}/dicomStores/empty",
                                     "export_prefix": f"gs://{BUCKET}/empty"})
    _assert_failed_at_validate(airflow_env, run, run_id,
                               "Nothing to de-identify: the source store holds no instances")
    assert _stores(healthcare, name) == before


def test_a_missing_source_store_fails_at_once_and_creates_nothing(airflow_env, dataset,
                                                                  healthcare) -> None:
    name, _, _ = dataset
    before = _stores(healthcare, name)
    run, run_id = _run(airflow_env, {"source_store": f"{name}/dicomStores/absent",
                                     "export_prefix": f"gs://{BUCKET}/absent"})
    _assert_failed_at_validate(airflow_env, run, run_id, "does not exist (404 NOT_FOUND)")
    dag_run, _ = _db(airflow_env, run_id)
    assert _seconds(dag_run["start"], dag_run["end"]) < 30, dag_run
    assert _stores(healthcare, name) == before


def test_a_malformed_study_uid_fails_once_and_the_report_names_its_position(
        airflow_env, dataset, healthcare) -> None:
    name, store, study = dataset
    bad = "1.2.PATIENT-7781"
    before = _stores(healthcare, name)
    run, run_id = _run(airflow_env, {"source_store": store, "study_uids": [study, bad],
                                     "export_prefix": f"gs://{BUCKET}/malformed"})
    html = _assert_failed_at_validate(airflow_env, run, run_id, "study_uids[1] of the 2 given")
    assert bad not in html and bad not in run.stdout + run.stderr
    assert _stores(healthcare, name) == before


def test_a_missing_export_bucket_fails_validate_before_the_store_is_made(
        airflow_env, dataset, healthcare) -> None:
    name, store, _ = dataset
    before = _stores(healthcare, name)
    run, run_id = _run(airflow_env, {"source_store": store,
                                     "export_prefix": "gs://no-such-bucket-here/x"})
    _assert_failed_at_validate(airflow_env, run, run_id,
                               "bucket no-such-bucket-here does not exist")
    assert _stores(healthcare, name) == before


def test_a_dry_run_routes_estimates_and_creates_nothing(airflow_env, dataset,
                                                        healthcare) -> None:
    name, store, _ = dataset
    before = _stores(healthcare, name)
    run, run_id = _run(airflow_env, {"source_store": store, "dry_run": True,
                                     "export_prefix": f"gs://{BUCKET}/dry"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    dag_run, tasks = _db(airflow_env, run_id)
    assert dag_run["state"] == "success"
    assert tasks["route"][0] == "success" and tasks["create_destination_store"][0] == "skipped"
    assert tasks["report"][0] == "success"
    html = _report(airflow_env, run_id)
    assert "Dry run: validated and routed, nothing created" in html
    assert "Estimated total" in html and "metadata" in html
    from dicom_deid_airflow.report_paths import path_segment

    estimate = json.loads((Path(airflow_env["DICOM_DEID_REPORTS"]) / DAG_ID
                           / path_segment(run_id) / "estimate.json").read_text())
    assert estimate["routes"]["metadata"]["instances"] == 2
    assert _stores(healthcare, name) == before


def test_a_failed_run_deletes_the_empty_store_it_created(airflow_env, healthcare,
                                                         server) -> None:
    """Every instance fails de-identification (pixel data shorter than its header says,
    under a profile that paints text everywhere): the run is red at deidentify_metadata,
    and the destination it created holds nothing, so the report deletes it and says so."""
    from dicom_deid.corpus.quirks import quirks

    [short] = [q for q in quirks() if q.name == "pixel-data-short"]
    name, store = _source(healthcare, server, [short.build()])
    run, run_id = _run(airflow_env, {"source_store": store, "profile": "ultrasound",
                                     "destination_store_id": "emptied",
                                     "export_prefix": f"gs://{BUCKET}/emptied"})
    assert run.returncode != 0
    dag_run, tasks = _db(airflow_env, run_id)
    assert dag_run["state"] == "failed"
    assert tasks["create_destination_store"][0] == "success"
    assert tasks["deidentify_metadata"] == ("failed", 1), tasks  # a verdict: no retry
    html = _report(airflow_env, run_id)
    assert "Run failed at deidentify_metadata" in html and "more than max_failures" in html
    assert "deleted: this failed run created it and left it empty" in html
    assert _stores(healthcare, name) == ["source"]
