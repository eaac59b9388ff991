"""The incremental DAG over a store that grows, with real ``airflow dags test`` runs
against the local Cloud Healthcare API server and the Cloud Storage emulator.

Three runs on three days, the source growing before each: each instance is
de-identified once into one long-lived destination, a patient's later study gets the
same date shift as the earlier one, the export folder and the cumulative manifest hold
every instance once, each run's delta manifest holds what it added. Then the same day
is run again and single tasks are run again: nothing changes.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import html
import io
import json
import re
import sqlite3
import subprocess
import threading
import uuid
from pathlib import Path

import pandas as pd
import pydicom
import pytest
import requests
from dicom_deid_airflow.report_paths import path_segment
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from dicom_deid.corpus.burned_instances import burned_instance
from dicom_deid.corpus.markers import marked_instance
from dicom_deid.gcs import client as gcs_client
from dicom_deid.pools import pool_command
from tests.dags.helpers import AIRFLOW, migrated_airflow
from tests.helpers import PARENT, stow_raw

BUCKET = "dicom-deid-incremental"
DAG_ID = "dicom_deidentify_incremental"
PATIENT = "INCPAT-4711"
KEY = base64.b64encode(bytes(range(32))).decode()


def _bytes(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _ct(patient: str, study: str, series: str, study_date: str, number: int,
        body_part: str = "KNEE") -> bytes:
    """A CT of ``patient``; its body part (kept by the profile) tells the test which
    destination instances are the patient's. Each series gets its own SeriesNumber, as
    a modality numbers them: the verification pairs instances through it."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.BodyPartExamined = body_part
    ds.SeriesNumber = int(series.rsplit(".", 1)[1]) % 10_000
    ds.PatientID, ds.PatientName = patient, "Incremental^Patient"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study_date
    ds.InstanceNumber = number
    return _bytes(ds)


@pytest.fixture(scope="module")
def env(tmp_path_factory, server, gcs_emulator) -> dict:  # noqa: ANN001
    env = migrated_airflow(tmp_path_factory.mktemp("airflow-incremental"), server.url,
                           gcs_emulator.host, BUCKET)
    # As `make up` and docker-compose's init do: the operations' pool exists.
    subprocess.run(pool_command(AIRFLOW), env=env, check=True, capture_output=True)
    return {**env, "AIRFLOW_VAR_DICOM_DEID_CRYPTO_SECRET": KEY}


@pytest.fixture(scope="module")
def source(healthcare) -> str:  # noqa: ANN001
    datasets = healthcare.projects().locations().datasets()
    dataset_id = f"inc-{uuid.uuid4().hex[:8]}"
    datasets.create(parent=PARENT, datasetId=dataset_id, body={}).execute()
    return datasets.dicomStores().create(
        parent=f"{PARENT}/datasets/{dataset_id}", dicomStoreId="source",
        body={}).execute()["name"]


def _run(env: dict, day: str, conf: dict) -> subprocess.CompletedProcess:
    run = subprocess.run([AIRFLOW, "dags", "test", DAG_ID, day, "--conf", json.dumps(conf)],
                         env=env, capture_output=True, text=True, timeout=900)
    return run


def _db(env: dict) -> sqlite3.Connection:
    return sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db")


def _run_id(env: dict, day: str) -> str:
    with contextlib.closing(_db(env)) as db:
        return db.execute("SELECT run_id FROM dag_run WHERE dag_id=? AND logical_date LIKE ?",
                          (DAG_ID, f"{day}%")).fetchone()[0]


def _states(env: dict, day: str) -> dict[str, str]:
    with contextlib.closing(_db(env)) as db:
        return dict(db.execute("SELECT task_id, state FROM task_instance WHERE dag_id=? AND "
                               "run_id=?", (DAG_ID, _run_id(env, day))).fetchall())


def _objects(prefix: str) -> dict[str, tuple[int, str]]:
    return {b.name: (b.generation, b.md5_hash)
            for b in gcs_client("test").list_blobs(BUCKET, prefix=prefix)}


def _parquet(name: str) -> pd.DataFrame:
    blob = gcs_client("test").bucket(BUCKET).blob(name)
    return pd.read_parquet(io.BytesIO(blob.download_as_bytes()))


def _destination(web_client, store: str) -> list[dict]:  # noqa: ANN001
    web = web_client(store)
    return web.search_for_instances(fields=["StudyDate", "PatientID", "BodyPartExamined"],
                                    get_remaining=True)


@pytest.fixture
def web_client(server):  # noqa: ANN001, ANN201
    from dicomweb_client.api import DICOMwebClient

    return lambda store: DICOMwebClient(f"{server.url}/v1/{store}/dicomWeb")


def _content(prefix: str = "") -> dict[str, str]:
    """Object name -> MD5, without the files a plan rewrites (filters, planned parts)."""
    return {n: md5 for n, (_, md5) in _objects(prefix).items()
            if "/filters/" not in n and "/planned/" not in n}


def test_three_runs_over_a_growing_store_deidentify_each_instance_once(
        env, source, server, web_client) -> None:  # noqa: ANN001
    prefix = f"research-{uuid.uuid4().hex[:6]}"
    events = Path(env["AIRFLOW_HOME"]) / f"lineage-{prefix}.jsonl"
    env = {**env, "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
        {"type": "file", "log_file_path": str(events), "append": True})}
    conf = {"source_store": source, "destination_store_id": "research",
            "export_prefix": f"gs://{BUCKET}/{prefix}", "sample_size": 4}
    web = f"{server.url}/v1/{source}/dicomWeb"
    first_study, first_series = generate_uid(), generate_uid()
    marked = [marked_instance(seed=s) for s in (71, 72)]
    for number, m in enumerate(marked, start=1):
        m.dataset.InstanceNumber = number
    markers = [p.marker for m in marked for p in m.plants if p.searchable]
    batches = [
        # day 1: the patient's first study (2 CT) and a marked instance
        [_ct(PATIENT, first_study, first_series, "20240110", n) for n in (1, 2)]
        + [marked[0].to_bytes()],
        # day 2: the same patient's second study, 47 days later, and an ultrasound
        # image with burned-in text (the pixel route)
        [_ct(PATIENT, generate_uid(), generate_uid(), "20240226", 1),
         _bytes(burned_instance(73, background="flat").dataset)],
        # day 3: another marked instance, and a late instance of day 1's series (the
        # series grew after it was de-identified: only the new instance is new)
        [marked[1].to_bytes(), _ct(PATIENT, first_study, first_series, "20240110", 3)],
    ]
    # An instance that arrives while day 2's run is in progress: whether it lands
    # before or after that run's plan, it is de-identified once, by day 2 or day 3.
    late = _ct("INCPAT-LATE", generate_uid(), generate_uid(), "20240301", 1, "ANKLE")
    arrival = threading.Timer(6.0, lambda: stow_raw(web, [late]))
    expected = 0
    destination = f"{source.rsplit('/dicomStores/', 1)[0]}/dicomStores/research"
    for day, batch in zip(("2026-12-01", "2026-12-02", "2026-12-03"), batches, strict=True):
        r = stow_raw(web, batch)
        assert r.status_code == 200, r.text
        expected += len(batch)
        if day == "2026-12-02":
            arrival.start()
        run = _run(env, day, conf)
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
        if day == "2026-12-02":
            arrival.join()
        states = _states(env, day)
        assert states["commit_ledger"] == "success", states
        assert states["manifest"] == "success", states
        held = len(_destination(web_client, destination))
        late_in = held - expected
        assert late_in in ((0,) if day == "2026-12-01" else (0, 1)), (day, held)
        if day == "2026-12-03":
            assert late_in == 1, "the late instance was not picked up by the next run"
        exported = [n for n in _objects(prefix + "/") if n.endswith(".dcm")]
        assert len(exported) == held == len(set(exported))
        manifest = _parquet(f"{prefix}/manifest.parquet")
        assert len(manifest) == held and manifest["uri"].is_unique
        delta = _parquet(f"{prefix}/manifests/"
                         f"{path_segment(_run_id(env, day))}.parquet")
        assert len(delta) - len(batch) in (0, 1), day
        assert set(delta["uri"]) <= set(manifest["uri"])
    expected += 1

    # The patient's two studies: dates shifted by the same amount (the 47 days between
    # them kept) under the pipeline's key, and the Patient ID gone from both (the Basic
    # Profile empties it; see the README on patient pseudonyms).
    by_study: dict[str, set[tuple[str, str]]] = {}
    for row in _destination(web_client, destination):
        if (row.get("00180015", {}).get("Value") or [""])[0] != "KNEE":
            continue
        by_study.setdefault(row["0020000D"]["Value"][0], set()).add((
            (row.get("00080020", {}).get("Value") or [""])[0],
            (row.get("00100020", {}).get("Value") or [""])[0]))
    patient = [next(iter(v)) for v in by_study.values() if len(v) == 1]
    dates = sorted(dt.datetime.strptime(d, "%Y%m%d").date() for d, _ in patient)
    assert len(by_study) == 2 and len(dates) == 2, by_study
    assert (dates[1] - dates[0]).days == 47, dates
    assert not {"20240110", "20240226"} & {d for d, _ in patient}
    assert {pid for d, pid in patient} == {""}

    # The report links each operation of the run to its audit log entries: the call
    # that started it (one entry) and the polls that read it, naming the stores.
    report = Path(env["DICOM_DEID_REPORTS"]) / DAG_ID / path_segment(
        _run_id(env, "2026-12-02")) / "report.html"
    page = report.read_text()
    assert "Estimated total" in page and "increment: instances" in page
    links = re.findall(r"href='([^']*auditLogs/entries[^']*)'", page)
    assert len(links) == 3, links  # pixel, metadata, export
    for link in links:
        entries = requests.get(html.unescape(link), timeout=30).json()["entries"]
        first = [e for e in entries if e["operation"].get("first")]
        assert len(first) == 1, first
        method = first[0]["protoPayload"]["methodName"]
        assert method.endswith(("DeidentifyDicomStore", "ExportDicomData")), method
        assert first[0]["protoPayload"]["resourceName"] in (source, destination)
        assert all(e["operation"]["id"] == first[0]["operation"]["id"] for e in entries)
    audit = b"".join(p.read_bytes() for p in (server.data_dir / "audit").glob("*.log*"))
    assert [m for m in markers if m.encode() in audit] == []
    assert first_study.encode() not in audit and PATIENT.encode() not in audit

    # Lineage: each run's operations and manifests name the stores and the folder.
    complete = [json.loads(line) for line in events.read_text().splitlines()]
    complete = [e for e in complete if e["eventType"] == "COMPLETE"]

    def datasets(task: str, side: str) -> set[str]:
        return {d["name"] for e in complete if e["job"]["name"] == f"{DAG_ID}.{task}"
                for d in e[side]}

    assert datasets("deidentify_metadata", "inputs") == {source}
    assert datasets("deidentify_metadata", "outputs") == {destination}
    assert datasets("export", "inputs") == {destination}
    assert datasets("export", "outputs") == {prefix}
    written = datasets("manifest", "outputs")
    assert f"{prefix}/manifest.parquet" in written
    assert len([n for n in written if n.startswith(f"{prefix}/manifests/")]) == 3

    # Three committed ledger records, holding digests only.
    ledger = {n: gcs_client("test").bucket(BUCKET).blob(n).download_as_text()
              for n in _objects("_dicom_deid/ledger/") if "/committed/" in n}
    assert len(ledger) == 3, list(ledger)
    text = "\n".join(ledger.values())
    assert first_study not in text and first_series not in text and PATIENT not in text
    assert [m for m in markers if m in text] == []

    # The same day again: it finds nothing new and changes nothing.
    before = _content()
    again = _run(env, "2026-12-03", conf)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    states = _states(env, "2026-12-03")
    assert states["unless_nothing_new"] == "success" and states["export"] == "skipped"
    assert _content() == before
    assert len(_destination(web_client, destination)) == expected

    # Day 2's tasks run again, as a cleared task would: the same bytes everywhere.
    for task_id in ("deidentify_metadata", "commit_ledger", "export", "manifest"):
        rerun = subprocess.run([AIRFLOW, "tasks", "test", DAG_ID, task_id, "2026-12-02"],
                               env=env, capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, (task_id, rerun.stdout[-3000:] + rerun.stderr[-3000:])
        assert _content() == before, task_id
        assert len(_destination(web_client, destination)) == expected, task_id
