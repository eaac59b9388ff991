"""``make up``: Airflow (standalone, SQLite) beside the local Cloud Healthcare API server
and a Cloud Storage emulator, with a seeded source store, for trying the DAGs in the UI.

Everything lives under ``.airflow/`` in the checkout (``--work-dir``). The Airflow side
is configured only through the connection and environment variables a real deployment
would use (``AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT`` with the server's URL as
``api_endpoint``, ``STORAGE_EMULATOR_HOST``), so what works here works against Google
Cloud with a different connection. ``airflow standalone`` starts its components as
``airflow`` subprocesses, hence the venv's ``bin/`` on ``PATH``.

Everything listens on 127.0.0.1 only (``devstack.airflow_env``). The stack stops as a
whole, within 15 s, on Ctrl-C, SIGTERM or SIGHUP to this process, or on ``make down``
(``python -m dicom_deid.up --down``): this process is the subreaper of everything it
starts (orphans stay in its tree), runs ``airflow standalone`` in a session of its own
and, on the way out, SIGTERMs that process group and every descendant at once, then
SIGKILLs what is left after a grace period. ``up.pid`` in the work directory records
this process and its descendants (refreshed while it runs) for ``--down``, which
SIGTERMs this process and, should it not be there or not finish in time, stops the
recorded processes itself.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests
from googleapiclient.errors import HttpError

from .devstack import (
    ROOT,
    airflow_env,
    alive,
    become_subreaper,
    healthcare_client,
    local_stack,
    process_tree,
    reap_orphans,
    same_process,
    seed_source,
    terminate_processes,
)
from .gcs import client as gcs_client
from .pools import pool_command

PARENT = "projects/demo/locations/local"
SERVER_PORT, GCS_PORT = 8090, 9023
AIRFLOW_PORT, WORKER_LOG_PORT, TRIGGER_LOG_PORT = 8080, 8793, 8794
BUCKET = "dicom-deid-export"
WORK_DIR = ROOT / ".airflow"
PID_FILE = "up.pid"
#: Stopping: SIGTERM, this long to exit, then SIGKILL and this long again; within 15 s.
GRACE, KILL_GRACE = 8.0, 3.0
#: ``--down`` waits this long for ``make up`` to stop its stack before doing it itself.
DOWN_WAIT = GRACE + KILL_GRACE + 3.0
RECORD_EVERY = 5.0  # seconds between refreshes of up.pid's list of processes
HEALTH_EVERY = 2.0


def seed(url: str) -> str:
    """A ``demo`` dataset with a ``source`` store holding planted PHI, once."""
    hc = healthcare_client(url)
    datasets = hc.projects().locations().datasets()
    try:
        datasets.create(parent=PARENT, datasetId="demo", body={}).execute()
    except HttpError as exc:
        if exc.resp.status != 409:
            raise
    store = f"{PARENT}/datasets/demo/dicomStores/source"
    try:
        datasets.dicomStores().create(parent=f"{PARENT}/datasets/demo", dicomStoreId="source",
                                      body={}).execute()
        seed_source(url, store)
    except HttpError as exc:
        if exc.resp.status != 409:
            raise
    client = gcs_client("demo")
    if client.lookup_bucket(BUCKET) is None:
        client.create_bucket(BUCKET)
    return store


# -- the pid file -------------------------------------------------------------------


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "pid" in record else None


def _write_record(path: Path, groups: list[int]) -> None:
    """``up.pid``: this process and, with their start times (so a reused pid is never
    taken for one of them), every descendant alive now and the process groups of its
    own that ``airflow standalone`` runs in. Replaced atomically."""
    record = {
        "pid": os.getpid(), "started": _started(os.getpid()), "groups": groups,
        "processes": [[p.pid, _started(p.pid)] for p in process_tree(os.getpid())],
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def _started(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return 0.0


def _recorded(record: dict) -> tuple[list, list[int]]:
    """The recorded processes still alive (and still the same processes), and the
    recorded groups that one of them is still in."""
    procs = [p for pid, started in record.get("processes", [])
             if (p := same_process(pid, started)) is not None]
    groups = []
    for group in record.get("groups", []):
        with contextlib.suppress(OSError):
            if any(os.getpgid(p.pid) == group for p in procs):
                groups.append(group)
    return procs, groups


def down(work: Path) -> int:
    """Stop the ``make up`` that runs in ``work``: SIGTERM to it (it stops its stack and
    removes its pid file), and if it is gone or does not finish within ``DOWN_WAIT``,
    stop what it recorded directly. 0 when nothing of it is left."""
    path = work / PID_FILE
    record = _read_record(path)
    if record is None:
        print(f"nothing to stop: no {path}")
        return 0
    up = same_process(record["pid"], record.get("started", 0.0))
    deadline = time.monotonic() + DOWN_WAIT
    if up is not None:
        print(f"stopping make up (pid {up.pid}) and everything it started ...", flush=True)
        with contextlib.suppress(Exception):
            up.terminate()
        while alive(up) and time.monotonic() < deadline:
            time.sleep(0.1)
    procs, groups = _recorded(record)
    if up is not None and alive(up):
        print(f"make up (pid {up.pid}) did not stop within {DOWN_WAIT:.0f}s: killing it",
              flush=True)
        procs.append(up)
    left = terminate_processes(procs, groups=groups, grace=3.0, kill_grace=3.0) if (
        procs or groups) else []
    if up is None and procs:
        print(f"stopped {len(procs)} process(es) left by a make up (pid {record['pid']}) "
              "that is gone")
    if left:
        print("still running: " + ", ".join(str(p.pid) for p in left), file=sys.stderr)
        return 1
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    print("stopped")
    return 0


# -- running ------------------------------------------------------------------------


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _shield() -> None:
    """From here on the stop runs to its end (it is bounded): a second Ctrl-C or a
    ``make down`` meanwhile does not cut it short."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _healthy(url: str) -> bool:
    try:
        health = requests.get(f"{url}/api/v2/monitor/health", timeout=2).json()
        return all(health[c]["status"] == "healthy"
                   for c in ("metadatabase", "scheduler", "triggerer", "dag_processor"))
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return False


def _banner(url: str, work: Path, down_command: str) -> str:
    password = _display(work / "home" / "simple_auth_manager_passwords.json.generated")
    return (f"Airflow UI: {url}  (user admin; the password is in {password})\n"
            f"Stop everything: Ctrl-C here, or `{down_command}` from another terminal.")


def _supervise(standalone: subprocess.Popen, url: str, record: Path, groups: list[int],
               banner: str) -> int:
    """Until ``airflow standalone`` exits: keep ``up.pid`` current, reap inherited
    orphans, and say once where the UI is when every component reports healthy."""
    ready = False
    next_record = next_health = 0.0
    while standalone.poll() is None:
        now = time.monotonic()
        if now >= next_record:
            _write_record(record, groups)
            next_record = now + RECORD_EVERY
        if not ready and now >= next_health:
            if _healthy(url):
                ready = True
                print(f"\nmake up is ready. {banner}\n", flush=True)
            next_health = time.monotonic() + HEALTH_EVERY
        reap_orphans(keep=[standalone.pid])
        time.sleep(0.5)
    print(f"airflow standalone exited with {standalone.returncode}", flush=True)
    return standalone.returncode or 0


def _stop_everything(groups: list[int]) -> None:
    """SIGTERM to standalone's process group and to every descendant of this process
    at once (the server, the emulator and their children too), SIGKILL after ``GRACE``."""
    family = process_tree(os.getpid())  # standalone's group is in it (subreaper)
    if not family:
        return
    print(f"stopping {len(family)} process(es) (at most {GRACE + KILL_GRACE:.0f}s) ...",
          flush=True)
    left = terminate_processes(family, groups=groups, grace=GRACE, kill_grace=KILL_GRACE)
    if left:
        print("could not stop: " + ", ".join(str(p.pid) for p in left), file=sys.stderr)


def _claim(record: Path, down_command: str) -> None:
    """Refuse to start beside a running ``make up`` of the same work directory; stop
    what a killed one left behind."""
    previous = _read_record(record)
    if previous is None:
        return
    if same_process(previous["pid"], previous.get("started", 0.0)) is not None:
        sys.exit(f"make up is already running (pid {previous['pid']}, {record}); "
                 f"stop it with `{down_command}` first")
    procs, groups = _recorded(previous)
    if procs or groups:
        print(f"stopping {len(procs)} process(es) left by a make up that was killed ...",
              flush=True)
        terminate_processes(procs, groups=groups, grace=3.0, kill_grace=3.0)
    record.unlink(missing_ok=True)


def prepare_airflow(env: dict[str, str]) -> None:
    """The metadata DB migrated and the Healthcare API pool created before Airflow
    starts, so the first scheduled run finds its pool (``dicom_deid.pools``)."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    for command in ([airflow, "db", "migrate"], pool_command(airflow)):
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)


def up(work: Path, *, airflow_port: int = AIRFLOW_PORT, server_port: int = SERVER_PORT,
       gcs_port: int = GCS_PORT, worker_log_port: int = WORKER_LOG_PORT,
       trigger_log_port: int = TRIGGER_LOG_PORT) -> int:
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    down_command = "make down" if work == WORK_DIR.resolve() else (
        f"python -m dicom_deid.up --down --work-dir {work}")
    record = work / PID_FILE
    _claim(record, down_command)
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    become_subreaper()
    groups: list[int] = []
    url = f"http://127.0.0.1:{airflow_port}"
    code = 0
    try:
        _write_record(record, groups)
        # local_stack sets STORAGE_EMULATOR_HOST for seed()'s Cloud Storage client too.
        with local_stack(work, server_port=server_port, gcs_port=gcs_port) as stack:
            server, gcs = stack.server, stack.gcs
            try:
                _write_record(record, groups)
                store = seed(server.url)
                banner = _banner(url, work, down_command)
                print(f"local Cloud Healthcare API: {server.url}/v1  (source store: {store})")
                print(f"Cloud Storage emulator: {gcs.host}  (bucket gs://{BUCKET})")
                print(f"{banner}\n(Airflow takes a minute to start; its output follows.)",
                      flush=True)
                env = airflow_env(work / "home", server.url, gcs.host, api_port=airflow_port,
                                  worker_log_port=worker_log_port,
                                  trigger_log_port=trigger_log_port)
                prepare_airflow(env)
                # A session of its own: Ctrl-C in the terminal reaches this process, which
                # stops standalone's whole group; standalone alone would leave its
                # components running on SIGTERM.
                standalone = subprocess.Popen(
                    [str(Path(sys.executable).with_name("airflow")), "standalone"],
                    env=env, start_new_session=True)
                groups.append(standalone.pid)
                _write_record(record, groups)
                code = _supervise(standalone, url, record, groups, banner)
            except KeyboardInterrupt:
                pass
            finally:
                _shield()
                _stop_everything(groups)
    except KeyboardInterrupt:  # while the server or the emulator was starting
        pass
    finally:
        _shield()
        _stop_everything(groups)  # whatever is left (normally nothing)
        record.unlink(missing_ok=True)
    print("make up: stopped", flush=True)
    return code


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dicom_deid.up", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path,
                        default=Path(os.environ.get("DICOM_DEID_UP_WORK_DIR", WORK_DIR)),
                        help="state, logs and the pid file (default: .airflow/ in the "
                             "checkout; env DICOM_DEID_UP_WORK_DIR)")
    parser.add_argument("--down", action="store_true",
                        help="stop the make up running in --work-dir (what `make down` runs)")
    for name, default, what in (
            ("airflow-port", AIRFLOW_PORT, "the Airflow UI and API server"),
            ("server-port", SERVER_PORT, "the local Cloud Healthcare API server"),
            ("gcs-port", GCS_PORT, "the Cloud Storage emulator"),
            ("worker-log-port", WORKER_LOG_PORT, "the scheduler's task log server"),
            ("trigger-log-port", TRIGGER_LOG_PORT, "the triggerer's log server")):
        env = "DICOM_DEID_UP_" + name.upper().replace("-", "_")
        parser.add_argument(f"--{name}", type=int, default=int(os.environ.get(env, default)),
                            help=f"port of {what} on 127.0.0.1 (default {default}; env {env})")
    args = parser.parse_args(argv)
    if args.down:
        sys.exit(down(args.work_dir.resolve()))
    sys.exit(up(args.work_dir, airflow_port=args.airflow_port, server_port=args.server_port,
                gcs_port=args.gcs_port, worker_log_port=args.worker_log_port,
                trigger_log_port=args.trigger_log_port))


if __name__ == "__main__":
    main()
