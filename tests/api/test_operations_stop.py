"""De-identification operations stop when asked, leave no process behind, and count
exactly what they stored.

Each test runs its own ``dicom-deid serve`` process (the real CLI, the real pool of
spawned worker processes) on its own data directory, because it kills, stops or
cancels it. What is checked is what an on-call engineer would check from outside:
the processes (psutil), the operation (the discovery client) and the destination
store (getDICOMStoreMetrics and QIDO).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from googleapiclient.discovery import Resource

from dicom_deid.corpus.burned_instances import burned_instance
from dicom_deid.devstack import ServerProcess, free_port, healthcare_client, wait_for_operation
from dicom_deid.server import workers
from tests.api.dicom_factory import make_instance, to_bytes
from tests.helpers import PARENT, stores_api, stow_raw

BASIC = {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}}
#: Text redaction reads every image (Tesseract): slow enough per instance that an
#: operation is still running seconds after it started, on any machine.
OCR = {**BASIC, "image": {"textRedactionMode": "REDACT_ALL_TEXT"}}
GONE_WITHIN_S = 5.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "data", free_port(), tmp_path / "server.log").start()
    yield proc
    proc.stop()


def _store(client: Resource, store_id: str) -> str:
    stores_api(client).create(parent=f"{PARENT}/datasets/ops", dicomStoreId=store_id,
                              body={}).execute()
    return f"{PARENT}/datasets/ops/dicomStores/{store_id}"


def _source(server: ServerProcess, parts: list[bytes]) -> tuple[Resource, str, str]:
    """A dataset ``ops`` with a source store holding ``parts`` and an empty destination."""
    client = healthcare_client(server.url)
    client.projects().locations().datasets().create(
        parent=PARENT, datasetId="ops", body={}).execute()
    source, dest = _store(client, "source"), _store(client, "dest")
    for i in range(0, len(parts), 50):
        r = stow_raw(f"{server.url}/v1/{source}/dicomWeb", parts[i:i + 50])
        assert r.status_code == 200, r.text[:300]
    return client, source, dest


def _small(n: int) -> list[bytes]:
    return [to_bytes(make_instance(rows=64, columns=64, instance_number=i + 1, seed=i))
            for i in range(n)]


def _burned(n: int) -> list[bytes]:
    return [to_bytes(burned_instance(seed, width=320, height=240).dataset) for seed in range(n)]


def _deidentify(client: Resource, source: str, dest: str, config: dict) -> str:
    return stores_api(client).deidentify(sourceStore=source, body={
        "destinationStore": dest, "config": config}).execute()["name"]


def _op(client: Resource, name: str) -> dict:
    return client.projects().locations().datasets().operations().get(name=name).execute()


def _count(op: dict, key: str) -> int:
    return int(op["metadata"].get("counter", {}).get(key, "0"))


def _held(client: Resource, dest: str) -> int:
    return int(stores_api(client).getDICOMStoreMetrics(name=dest).execute()
               .get("instanceCount", "0"))


def _pool_started(server: ServerProcess, timeout: float = 60.0) -> list[psutil.Process]:
    """The server's descendants once the de-identification pool is up (spawned
    processes: ``multiprocessing.spawn`` in their command line)."""
    root = psutil.Process(server.proc.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        family = root.children(recursive=True)
        if any(_is_pool_worker(p) for p in family):
            return [root, *family]
        time.sleep(0.05)
    raise AssertionError("the de-identification pool never started")


def _is_pool_worker(process: psutil.Process) -> bool:
    try:
        return "spawn_main" in " ".join(process.cmdline())
    except psutil.NoSuchProcess:
        return False


def _assert_gone(family: list[psutil.Process], within: float = GONE_WITHIN_S) -> None:
    _, alive = psutil.wait_procs(family, timeout=within)
    assert not alive, f"still running {within} s later: " + ", ".join(
        f"{p.pid} {' '.join(p.cmdline())[:80]}" for p in alive if p.is_running())


def _wait_for(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.05)


def test_kill_9_mid_operation_leaves_no_process_and_counts_what_is_stored(
        server: ServerProcess) -> None:
    total = 400
    client, source, dest = _source(server, _small(total))
    name = _deidentify(client, source, dest, BASIC)
    family = _pool_started(server)
    _wait_for(lambda: _count(_op(client, name), "success") > 0, 60,
              "the first batch was stored")
    assert not _op(client, name).get("done"), "the store is too small to kill mid-way"
    server.kill()
    _assert_gone(family)

    server.start()
    after = wait_for_operation(client, name, timeout=10)
    held = _held(client, dest)
    assert after["error"]["code"] == 10, after  # ABORTED
    assert 0 < held < total
    # The counter is exactly what the destination holds, and the error names it.
    assert _count(after, "success") == held, (after, held)
    assert dest in after["error"]["message"] and str(held) in after["error"]["message"]

    # Running it again into the same destination finishes the job: the instances
    # already there are the same bytes (same key, same UIDs), so they are successes.
    again = wait_for_operation(client, _deidentify(client, source, dest, BASIC), timeout=120)
    assert "error" not in again, again
    assert (_count(again, "success"), _count(again, "failure")) == (total, 0), again
    assert _held(client, dest) == total


def test_cancel_stops_a_running_operation_within_seconds(server: ServerProcess) -> None:
    client, source, dest = _source(server, _burned(12))
    name = _deidentify(client, source, dest, OCR)
    family = _pool_started(server)
    time.sleep(1.0)  # the workers are busy reading text now
    assert not _op(client, name).get("done")
    client.projects().locations().datasets().operations().cancel(name=name).execute()
    start = time.monotonic()
    done = wait_for_operation(client, name, timeout=10)
    assert time.monotonic() - start < 5, "cancel took more than 5 s"
    assert done["error"]["code"] == 1, done  # CANCELLED
    assert dest in done["error"]["message"]
    assert _count(done, "success") == _held(client, dest)
    _assert_gone([p for p in family if _is_pool_worker(p)])  # the pool, not the server
    assert server.proc.poll() is None


def test_sigterm_mid_operation_stops_the_server_and_its_pool(server: ServerProcess) -> None:
    client, source, dest = _source(server, _burned(12))
    name = _deidentify(client, source, dest, OCR)
    family = _pool_started(server)
    time.sleep(1.0)
    server.proc.send_signal(signal.SIGTERM)
    _assert_gone(family, within=10)
    assert server.proc.wait(1) == 0

    server.start()
    after = _op(client, name)
    assert after.get("done") and after["error"]["code"] == 10, after
    assert "server stopped" in after["error"]["message"]
    assert _count(after, "success") == _held(client, dest)


def test_serve_instance_timeout_fails_slow_instances_alone(tmp_path: Path) -> None:
    """``serve --instance-timeout-s``: every instance over it fails with a reason that
    names the limit; the operation ends (not stuck) and says so in its counters."""
    server = ServerProcess(tmp_path / "data", free_port(), tmp_path / "server.log",
                           args=["--instance-timeout-s", "0.05"]).start()
    try:
        client, source, dest = _source(server, _burned(2))
        done = wait_for_operation(client, _deidentify(client, source, dest, OCR), timeout=60)
        assert "error" not in done, done
        assert (_count(done, "success"), _count(done, "failure")) == (0, 2), done
        failures = requests.get(done["metadata"]["logsUrl"], timeout=10).json()["failures"]
        assert [f["reason"] for f in failures] == [
            "de-identification took longer than the per-instance limit of 0.05 s "
            "(serve --instance-timeout-s) and was stopped"] * 2
        assert _held(client, dest) == 0
    finally:
        server.stop()


def _sleep(seconds: float) -> str | None:
    time.sleep(seconds)
    return None


def test_an_instance_over_its_time_budget_fails_alone() -> None:
    """The pool's per-instance budget (``serve --instance-timeout-s``): the slow item
    gets a reason, the others their results."""
    start = time.monotonic()
    with workers.Pool(budget_s=1.0, processes=2) as pool:
        reasons = pool.map(_sleep, [0.0, 30.0, 0.1], check=lambda: None)
    assert time.monotonic() - start < 15
    assert reasons[0] is None and reasons[2] is None
    assert reasons[1] and "per-instance limit of 1 s" in reasons[1]


#: A module written the way OpenCV's loader is (``cv2/__init__.py``): a flag on ``sys``
#: guards against recursion, so an import stopped half-way leaves the flag set and every
#: later import in that process fails with "recursion is detected".
_FRAGILE_MODULE = """
import sys, time
if getattr(sys, "FRAGILE_LOADER", False):
    raise ImportError("recursion is detected during loading")
sys.FRAGILE_LOADER = True
time.sleep(0.3)
del sys.FRAGILE_LOADER
"""


def _import_then_sleep(call: tuple[str, float]) -> str | None:
    import importlib
    import sys

    folder, seconds = call
    sys.path.insert(0, folder)
    importlib.import_module("fragile_loader")
    time.sleep(seconds)
    return None


def test_the_budget_never_stops_an_import_half_way(tmp_path: Path) -> None:
    """A budget that runs out inside an import stops the instance once the import is
    done: the next instance of the same worker finds the module whole. CI saw the
    instance after a stopped one fail as ``pixel decode failed ... ImportError``: the
    stop had landed inside ``import cv2``."""
    (tmp_path / "fragile_loader.py").write_text(_FRAGILE_MODULE)
    with workers.Pool(budget_s=0.05, processes=1) as pool:
        reasons = pool.map(_import_then_sleep, [(str(tmp_path), 1.0), (str(tmp_path), 0.0)],
                           check=lambda: None)
    assert reasons[0] and "per-instance limit of 0.05 s" in reasons[0]
    assert reasons[1] is None


def test_a_check_that_raises_kills_the_pool_at_once() -> None:
    """``map``'s check raising (cancel, shutdown) kills the busy processes."""
    stop_at = time.monotonic() + 1.0
    processes: list = []

    def check() -> None:
        processes[:] = processes or list(pool._executor._processes.values())  # noqa: SLF001
        if time.monotonic() > stop_at:
            raise KeyboardInterrupt  # any exception: cancel, shutdown

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt), workers.Pool(processes=2) as pool:
        pool.map(_sleep, [60.0, 60.0, 60.0], check=check)
    assert time.monotonic() - start < 10
    assert processes and not any(p.is_alive() for p in processes)


def _engine_threads(_: object) -> str | None:
    from dicom_deid.engine import ocr_rapid

    reader = ocr_rapid.engine()
    sessions = (reader.text_det.infer.session, reader.text_rec.session.session)
    return ",".join(str(s.get_session_options().intra_op_num_threads) for s in sessions)


@pytest.mark.parametrize("processes", [1, 2])
def test_each_worker_s_ocr_engine_uses_its_share_of_the_cores(processes: int) -> None:
    """Two workers each running ONNX Runtime on every core held more memory per frame
    and spent more CPU than with a thread each; the server's peak is set by two
    workers' frames at once. Each worker's sessions get cores // processes threads."""
    share = max(1, (os.cpu_count() or 1) // processes)
    with workers.Pool(processes=processes) as pool:
        threads = pool.map(_engine_threads, range(processes), check=lambda: None)
    assert threads == [f"{share},{share}"] * processes
