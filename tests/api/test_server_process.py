"""The server as a process: body size limit, worker processes, kill -9."""

from __future__ import annotations

import time
import uuid

import psutil
import pytest
import requests

from dicom_deid.devstack import ServerProcess, free_port, healthcare_client
from tests.helpers import PARENT


@pytest.fixture
def small_server(tmp_path):
    proc = ServerProcess(tmp_path / "data", free_port(), tmp_path / "server.log",
                         args=["--max-body-mb", "1", "--workers", "2"]).start()
    yield proc
    proc.stop()


def _stow_url(server: ServerProcess) -> str:
    hc = healthcare_client(server.url)
    datasets = hc.projects().locations().datasets()
    datasets.create(parent=PARENT, datasetId="limits", body={}).execute()
    store = datasets.dicomStores().create(
        parent=f"{PARENT}/datasets/limits", dicomStoreId="s", body={}).execute()["name"]
    return f"{server.url}/v1/{store}/dicomWeb/studies"


def _body(size: int) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + b"\0" * size + f"\r\n--{boundary}--\r\n".encode())
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def test_oversize_body_is_refused_with_413_and_leaves_nothing(small_server):
    url = _stow_url(small_server)
    body, kind = _body(2 * 1024 * 1024)
    declared = requests.post(url, data=body, headers={"Content-Type": kind})
    assert declared.status_code == 413
    assert declared.json()["error"]["code"] == 413

    # Without a Content-Length (chunked), the limit is enforced while streaming.
    chunked = requests.post(url, data=iter([body[i:i + 65536] for i in range(0, len(body), 65536)]),
                            headers={"Content-Type": kind})
    assert chunked.status_code == 413
    assert chunked.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert list((small_server.data_dir / "tmp").iterdir()) == []

    # A body under the limit is parsed (and this one refused per part: it is not DICOM).
    small, kind = _body(1000)
    r = requests.post(url, data=small, headers={"Content-Type": kind})
    assert r.status_code == 409
    assert r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]


def test_kill_9_stops_every_worker(small_server):
    parent = psutil.Process(small_server.proc.pid)
    workers = parent.children(recursive=True)
    assert len(workers) == 2  # forked workers, one per --workers
    small_server.kill()
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert alive == [], "worker processes outlived a SIGKILL of the server"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{small_server.url}/healthz", timeout=2)


def test_a_dead_worker_is_replaced(small_server):
    parent = psutil.Process(small_server.proc.pid)
    first, second = parent.children()
    first.kill()
    psutil.wait_procs([first], timeout=10)
    assert requests.get(f"{small_server.url}/healthz", timeout=5).json() == {"status": "ok"}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(parent.children()) < 2:
        time.sleep(0.1)
    children = parent.children()
    assert len(children) == 2 and second in children and first not in children
