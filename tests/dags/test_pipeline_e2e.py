"""The two DAGs end to end with ``airflow dags test`` (which also runs the triggers),
against the local Cloud Healthcare API server and the Cloud Storage emulator.

A source store is seeded with planted PHI in headers (``corpus.markers``), text burned
into ultrasound pixels (``corpus.burned_instances``) and pydicom's CT/MR samples. The
strong run must de-identify, verify, pass its gates, export, write a manifest and hand
it to training, leaving no planted value in any log, XCom, report or file name. The
weak run (a profile that keeps every tag) must be stopped by the quality gate before
anything is exported.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from google.cloud import storage
from pydicom.data import get_testdata_file

from dicom_deid.corpus.burned_instances import PHI_VALUES, burned_instance
from dicom_deid.corpus.markers import marked_instance
from dicom_deid.devstack import free_port
from dicom_deid.gcs import client as gcs_client
from tests.dags.helpers import AIRFLOW, migrated_airflow
from tests.helpers import PARENT, stow_raw

REPO = Path(__file__).resolve().parents[2]
BUCKET = "dicom-deid-e2e"


def _bytes(ds) -> bytes:  # noqa: ANN001
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory, server, gcs_emulator) -> dict:  # noqa: ANN001
    return migrated_airflow(tmp_path_factory.mktemp("airflow-home"), server.url,
                            gcs_emulator.host, BUCKET)


@pytest.fixture(scope="module")
def source(healthcare, server) -> tuple[str, list]:  # noqa: ANN001
    """A store with planted PHI in headers and pixels; returns its name and the plants."""
    datasets = healthcare.projects().locations().datasets()
    dataset_id = f"e2e-{uuid.uuid4().hex[:8]}"
    datasets.create(parent=PARENT, datasetId=dataset_id, body={}).execute()
    dataset = f"{PARENT}/datasets/{dataset_id}"
    store = datasets.dicomStores().create(parent=dataset, dicomStoreId="source",
                                          body={}).execute()["name"]
    marked = [marked_instance(seed=s) for s in (61, 62)]
    burned = [burned_instance(63, photometric="RGB").dataset,
              burned_instance(64, background="flat").dataset]
    # Instances of a series differ in InstanceNumber; the corpus' twins would not, and
    # the verification sample pairs source and destination through such attributes.
    for number, ds in enumerate([m.dataset for m in marked] + burned, start=1):
        ds.InstanceNumber = number
    parts = [m.to_bytes() for m in marked] + [_bytes(ds) for ds in burned]
    parts += [Path(get_testdata_file(n)).read_bytes() for n in ("CT_small.dcm", "MR_small.dcm")]
    r = stow_raw(f"{server.url}/v1/{store}/dicomWeb", parts)
    assert r.status_code == 200, r.text
    markers = [p.marker for m in marked for p in m.plants if p.searchable]
    markers += [v for v in PHI_VALUES.values() if len(v) >= 6]
    return store, markers


def _dags_test(env: dict, dag_id: str, conf: dict) -> subprocess.CompletedProcess:
    return subprocess.run([AIRFLOW, "dags", "test", dag_id, "--conf", json.dumps(conf)],
                          env=env, capture_output=True, text=True, timeout=900)


def _everything_written(env: dict, run: subprocess.CompletedProcess) -> bytes:
    """Console, task logs, the metadata DB (XComs, params, asset events) and reports."""
    home = Path(env["AIRFLOW_HOME"])
    blobs = [run.stdout.encode(), run.stderr.encode()]
    for path in home.rglob("*"):
        if path.is_file():
            blobs.append(str(path).encode())
            blobs.append(path.read_bytes())
    return b"\n".join(blobs)


def _objects(prefix: str) -> list[storage.Blob]:
    client = gcs_client("test")
    return list(client.list_blobs(BUCKET, prefix=prefix))


def test_deidentify_export_and_handoff_end_to_end(airflow_env, source) -> None:
    store, markers = source
    prefix = f"strong-{uuid.uuid4().hex[:6]}"
    run = _dags_test(airflow_env, "dicom_deidentify", {
        "source_store": store, "destination_store_id": "deid-strong", "profile": "basic",
        "sample_size": 6, "export_prefix": f"gs://{BUCKET}/{prefix}"})
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    names = [b.name for b in _objects(prefix + "/")]
    exported = [n for n in names if n.endswith(".dcm")]
    assert len(exported) == 6, names
    manifest = f"gs://{BUCKET}/{prefix}/manifest.parquet"
    assert f"{prefix}/manifest.parquet" in names
    handoff = _dags_test(airflow_env, "dicom_training_handoff", {"manifest": manifest})
    assert handoff.returncode == 0, handoff.stdout[-4000:] + handoff.stderr[-4000:]
    assert f"{prefix}/dataset_stats.json" in [b.name for b in _objects(prefix + "/")]
    written = _everything_written(airflow_env, run) + handoff.stdout.encode()
    assert [m for m in markers if m.encode() in written] == []
    page = max(Path(airflow_env["DICOM_DEID_REPORTS"]).rglob("report.html"),
               key=lambda p: p.stat().st_mtime)
    html = page.read_text()
    assert "data:image/png;base64," in html and "deidentified" in html and "FAILED" not in html


def test_a_weak_profile_is_stopped_by_the_gate_before_export(airflow_env, source) -> None:
    store, _ = source
    prefix = f"weak-{uuid.uuid4().hex[:6]}"
    run = _dags_test(airflow_env, "dicom_deidentify", {
        "source_store": store, "destination_store_id": "deid-weak",
        "profile": "keep-all-pixels-only", "sample_size": 6,
        "export_prefix": f"gs://{BUCKET}/{prefix}"})
    assert run.returncode != 0
    assert [b.name for b in _objects(prefix + "/") if b.name.endswith(".dcm")] == []
    logs = _everything_written(airflow_env, run).decode(errors="replace")
    # On-call reads which gate failed and which expectations, in the task's log.
    assert "quality gate 'deidentified' failed" in logs
    assert "FAILED" in "".join(p.read_text() for p in
                               Path(airflow_env["DICOM_DEID_REPORTS"]).rglob("report.html"))
    assert "expect_column_values_to_be_in_set(column=status)" in logs
    # Red means red: the run itself is failed in the metadata DB, not only the gate.
    found = re.search(r"DagRun Finished: .*?run_id=([^,\s]+),", run.stdout + run.stderr)
    assert found, run.stdout[-3000:]
    db = sqlite3.connect(Path(airflow_env["AIRFLOW_HOME"]) / "airflow.db")
    try:
        [(state,)] = db.execute("select state from dag_run where run_id = ?", (found[1],))
    finally:
        db.close()
    assert state == "failed"
    page = max(Path(airflow_env["DICOM_DEID_REPORTS"]).rglob("report.html"),
               key=lambda p: p.stat().st_mtime).read_text()
    assert "Run failed at gate_deidentified" in page and "kept: holds" in page


def test_png_export_for_ml_is_gated_by_frame_count(airflow_env, source, healthcare) -> None:
    """export_mime_type image/png: one PNG per frame, gated on the frame count, and the
    handoff loads the PNGs as arrays."""
    store, _ = source
    prefix = f"png-{uuid.uuid4().hex[:6]}"
    # The destination store id keeps its default, a template: the run's own store.
    run = _dags_test(airflow_env, "dicom_deidentify", {
        "source_store": store, "profile": "basic",
        "sample_size": 2, "export_prefix": f"gs://{BUCKET}/{prefix}",
        "export_mime_type": "image/png"})
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    dataset = store.rsplit("/dicomStores/", 1)[0]
    stores = [s["name"].rsplit("/", 1)[1] for s in healthcare.projects().locations().datasets()
              .dicomStores().list(parent=dataset).execute()["dicomStores"]]
    assert [s for s in stores if s.startswith("basic-manual-")], stores
    pngs = [b.name for b in _objects(prefix + "/") if b.name.endswith(".png")]
    assert len(pngs) == 6, pngs
    handoff = _dags_test(airflow_env, "dicom_training_handoff",
                         {"manifest": f"gs://{BUCKET}/{prefix}/manifest.parquet"})
    assert handoff.returncode == 0, handoff.stdout[-4000:] + handoff.stderr[-4000:]


@pytest.fixture(scope="module")
def api_server(airflow_env, tmp_path_factory) -> Iterator[tuple[str, dict]]:  # noqa: ANN001
    """The Airflow API server on the runs' database, with a read-only (viewer) user."""
    home = tmp_path_factory.mktemp("api-server")
    password = uuid.uuid4().hex
    (home / "passwords.json").write_text(json.dumps({"oncall": password}))
    port = free_port()
    env = {**airflow_env,
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "oncall:viewer",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
           "AIRFLOW__API__PORT": str(port)}
    log = (home / "api-server.log").open("wb")
    proc = subprocess.Popen([AIRFLOW, "api-server", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{url}/api/v2/monitor/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, (home / "api-server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the API server did not start in 120 s"
            time.sleep(1)
        token = requests.post(f"{url}/auth/token", timeout=10,
                              json={"username": "oncall", "password": password})
        assert token.status_code in (200, 201), token.text
        yield url, {"Authorization": f"Bearer {token.json()['access_token']}"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_the_run_report_opens_from_a_task_link_behind_the_login(api_server) -> None:
    """On-call starts from a task: the report task of a good run, the failed gate of a
    stopped one. Both carry a ``Run report`` link that the API server serves, to a
    signed-in viewer only."""
    url, auth = api_server
    runs = requests.get(f"{url}/api/v2/dags/dicom_deidentify/dagRuns", headers=auth,
                        timeout=10).json()["dag_runs"]
    by_state = {r["state"]: r["dag_run_id"] for r in runs}
    assert {"success", "failed"} <= set(by_state), runs

    def link(run_id: str, task_id: str) -> str:
        r = requests.get(f"{url}/api/v2/dags/dicom_deidentify/dagRuns/{quote(run_id)}/"
                         f"taskInstances/{task_id}/links", headers=auth, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()["extra_links"]["Run report"]

    for state, task_id, expected in (("success", "report", "data:image/png;base64,"),
                                     ("failed", "gate_deidentified", "FAILED")):
        href = link(by_state[state], task_id)
        folder = f"/dicom-deid/reports/dicom_deidentify/{quote(by_state[state], safe='')}"
        assert href == f"{folder}/report.html"
        page = requests.get(url + href, headers=auth, timeout=10)
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert expected in page.text
        assert requests.get(url + href, timeout=10).status_code == 401
        # The page links its table and gate results, relative to itself.
        assert "href='verification.csv'" in page.text and "href='deidentified.json'" in page.text
        table = requests.get(f"{url}{folder}/verification.csv", headers=auth, timeout=10)
        assert table.status_code == 200 and table.text.startswith("sample_index,")
        assert requests.get(url + folder, headers=auth, timeout=10).text == page.text
    for bad in ("..%2F..%2Fairflow.cfg", "airflow.db", "nothing.json"):
        r = requests.get(f"{url}{folder}/{bad}", headers=auth, timeout=10)
        assert r.status_code == 404, (bad, r.status_code)
