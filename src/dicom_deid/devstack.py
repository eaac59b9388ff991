"""The local stack as the demo, ``make up``, the tests and the benchmarks run it.

One module for what each of them used to write for itself: the local Cloud Healthcare
API server and a Cloud Storage emulator as real processes (``dicom-deid serve`` over
HTTP on loopback, as a user runs it), the discovery client pointed at that server, the
poll of a long-running operation, a seeded source store and the environment Airflow
gets. Written once here so that they all talk to the same thing in the same way, and
so that ``demo`` and ``up`` share it without importing each other.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from google.auth.credentials import AnonymousCredentials
from googleapiclient.discovery import Resource, build
from pydicom.data import get_testdata_file

from .corpus.burned_instances import burned_instance
from .corpus.markers import marked_instance

#: The checkout: Airflow gets its ``dags/`` and ``plugins/`` from here.
ROOT = Path(__file__).resolve().parents[2]


# -- processes ----------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on loopback now, so parallel runs do not collide on fixed ports."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Block until ``url`` answers at all: a child process is ready only once it serves.
    Fails early if the process exits, so a crash is not mistaken for slowness."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def stop_process(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


@dataclass
class ServerProcess:
    """A ``dicom-deid serve`` child process."""

    data_dir: Path
    port: int
    log_path: Path
    proc: subprocess.Popen | None = None
    env: dict | None = None
    args: list[str] | None = None  # extra ``dicom-deid serve`` options

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        """Start (or restart, on the same data directory) and wait for ``/healthz``."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dicom_deid.cli", "serve", "--host", "127.0.0.1",
             "--port", str(self.port), "--data-dir", str(self.data_dir), *(self.args or [])],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(self.env or {})},
        )
        wait_http(f"{self.url}/healthz", self.proc)
        return self

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as in a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        stop_process(self.proc)


@dataclass
class StorageEmulator:
    """``gcp-storage-emulator`` serving buckets from a directory."""

    data_dir: Path
    port: int
    log_path: Path
    proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StorageEmulator:
        self.data_dir = self.data_dir.resolve()  # the emulator insists on absolute paths
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        exe = Path(sys.executable).with_name("gcp-storage-emulator")
        self.proc = subprocess.Popen(
            [str(exe), "--data-dir", str(self.data_dir), "start", "--host", "127.0.0.1",
             "--port", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        wait_http(f"{self.host}/storage/v1/b", self.proc)
        return self

    def stop(self) -> None:
        stop_process(self.proc)


@dataclass
class LocalStack:
    """The running server and the emulator it exports to and imports from."""

    server: ServerProcess
    gcs: StorageEmulator


@contextmanager
def local_stack(root: Path, *, server_port: int | None = None,
                gcs_port: int | None = None) -> Iterator[LocalStack]:
    """Start the storage emulator, then the server pointed at it, under ``root``
    (``gcs/``, ``gcs.log``, ``healthcare/``, ``server.log``); stop both on exit.

    Free ports unless given (``make up`` wants fixed ones the user can open).
    ``STORAGE_EMULATOR_HOST`` is set in this process too for the duration, so its own
    Cloud Storage clients see the emulator's buckets, and put back afterwards.
    """
    gcs = StorageEmulator(root / "gcs", gcs_port or free_port(), root / "gcs.log").start()
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = gcs.host
    server = ServerProcess(root / "healthcare", server_port or free_port(),
                           root / "server.log", env={"STORAGE_EMULATOR_HOST": gcs.host})
    try:
        server.start()
        yield LocalStack(server, gcs)
    finally:
        server.stop()
        gcs.stop()
        if previous is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = previous


# -- the API, as a client --------------------------------------------------------------


def healthcare_client(url: str) -> Resource:
    """The Cloud Healthcare API v1 discovery client against the local server at ``url``:
    the client the pipeline uses on Google, with the discovery document that ships in
    the package (no network), no discovery cache, and anonymous credentials (the local
    server checks none)."""
    return build("healthcare", "v1", static_discovery=True, cache_discovery=False,
                 client_options={"api_endpoint": url}, credentials=AnonymousCredentials())


def wait_for_operation(client: Resource, name: str, timeout: float = 120.0, *,
                       interval: float = 0.1) -> dict:
    """Poll ``operations.get`` until the operation is done, as a client of the real API
    must; the finished Operation (which may carry an ``error``: that is the caller's to
    judge). Bounded, so a stuck operation fails the caller with TimeoutError instead
    of hanging it."""
    ops = client.projects().locations().datasets().operations()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        op = ops.get(name=name).execute()
        if op.get("done"):
            return op
        time.sleep(interval)
    raise TimeoutError(f"operation {name} not done after {timeout}s")


def seed_source(url: str, store: str) -> int:
    """A source store as the pipeline meets one: planted PHI in headers
    (``corpus.markers``), names burned into ultrasound pixels
    (``corpus.burned_instances``) and pydicom's CT and MR samples; over STOW-RS.
    Returns how many instances the server stored."""
    instances = [marked_instance(seed=s).dataset for s in (1, 2)]
    instances += [burned_instance(s, photometric="RGB").dataset for s in (3, 4)]
    instances += [pydicom.dcmread(get_testdata_file(n)) for n in ("CT_small.dcm",
                                                                  "MR_small.dcm")]
    for number, ds in enumerate(instances[:4], start=1):
        ds.InstanceNumber = number  # instances of a series differ; the corpus' twins do not
    for ds in instances:
        ds.preamble = getattr(ds, "preamble", None) or b"\0" * 128
    result = DICOMwebClient(url=f"{url}/v1/{store}/dicomWeb").store_instances(instances)
    return len(result.get("ReferencedSOPSequence", []))


# -- Airflow --------------------------------------------------------------------------


def airflow_env(home: Path, server_url: str, gcs_host: str) -> dict[str, str]:
    """The environment every Airflow component gets: only the connection and variables a
    real deployment would set (the server's URL as the connection's ``api_endpoint``,
    ``STORAGE_EMULATOR_HOST``), so what works here works on Google Cloud with another
    connection. The venv's ``bin/`` is on ``PATH`` because Airflow starts its
    components as ``airflow`` subprocesses."""
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps({
            "conn_type": "google_cloud_platform",
            "extra": {"api_endpoint": server_url, "project": "demo"}}),
        "STORAGE_EMULATOR_HOST": gcs_host,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)]),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
