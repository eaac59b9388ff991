"""``make up``'s lifecycle, on the real stack: ``python -m dicom_deid.up`` (the local
server, the Cloud Storage emulator and ``airflow standalone`` with its api-server,
scheduler, dag-processor, triggerer and their log servers), on free ports and a
throw-away work directory so that a developer's own ``make up`` is not disturbed.

Once Airflow reports every component healthy: every TCP socket any process of the stack
listens on is on 127.0.0.1 (read from the processes themselves through psutil, and
cross-checked with ``ss -ltnp`` where it is installed). Then the stack is stopped the
two ways a user stops it, Ctrl-C (SIGINT to ``up``) and ``make down`` (``up --down``),
and within 15 s not one of its processes, tracked by pid beforehand, may be left. A
third case covers ``--down``'s fallback for an ``up`` that was SIGKILLed: it stops the
processes the pid file recorded, process groups included, without any Airflow.

Both stack cases share one work directory, so the second starts on a migrated DB.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests

from dicom_deid.devstack import alive, free_port

pytestmark = pytest.mark.timeout(420)

STARTUP_TIMEOUT = 180.0
STOP_WITHIN = 15.0
COMPONENTS = ("metadatabase", "scheduler", "dag_processor", "triggerer")
PORTS = ("airflow", "server", "gcs", "worker_log", "trigger_log")


@dataclass
class Up:
    proc: subprocess.Popen
    work: Path
    log: Path
    ports: dict[str, int]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['airflow']}"

    def output(self, chars: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def _family(up: Up) -> list[psutil.Process]:
    """``up`` and everything under it, now."""
    root = psutil.Process(up.proc.pid)
    return [root, *root.children(recursive=True)]


def _describe(procs: list[psutil.Process]) -> str:
    lines = []
    for p in procs:
        try:
            lines.append(f"{p.pid} {' '.join(p.cmdline())[:160]}")
        except psutil.Error:
            lines.append(f"{p.pid} (gone)")
    return "\n".join(lines)


def _listening(procs: list[psutil.Process]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every listening TCP socket (IPv4 and IPv6) of ``procs``."""
    found = []
    for p in procs:
        try:
            conns = p.net_connections(kind="tcp")
        except psutil.Error:
            continue
        found += [(p.pid, c.laddr.ip, c.laddr.port) for c in conns
                  if c.status == psutil.CONN_LISTEN]
    return found


def _ss_listening(pids: set[int]) -> list[tuple[int, str, int]]:
    """The same from ``ss -ltnp``: what a user would look at."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        address, _, port = fields[3].rpartition(":")
        for pid in map(int, re.findall(r"pid=(\d+)", line)):
            if pid in pids:
                found.append((pid, address.strip("[]"), int(port)))
    return found


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    left = procs
    while time.monotonic() < deadline:
        left = [p for p in left if alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in left if alive(p)]


def _env() -> dict[str, str]:
    """The developer's environment without what tests/conftest.py put there for the test
    session's own Airflow (unit-test mode, a throw-away AIRFLOW_HOME) and the session's
    emulator: ``up`` sets what it needs itself."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AIRFLOW") and k != "STORAGE_EMULATOR_HOST"}
    # Fewer idle LocalExecutor workers than the default 32: faster to start on 2 cores
    # (as tests/ui does); the stop has to find and end them all the same.
    env["AIRFLOW__CORE__PARALLELISM"] = "4"
    return env


def _ports() -> dict[str, int]:
    ports: set[int] = set()
    while len(ports) < len(PORTS):
        ports.add(free_port())
    return dict(zip(PORTS, sorted(ports), strict=True))


def _start(work: Path) -> Up:
    ports = _ports()
    log = work.parent / f"up-{ports['airflow']}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dicom_deid.up", "--work-dir", str(work),
             "--airflow-port", str(ports["airflow"]), "--server-port", str(ports["server"]),
             "--gcs-port", str(ports["gcs"]), "--worker-log-port", str(ports["worker_log"]),
             "--trigger-log-port", str(ports["trigger_log"])],
            env=_env(), stdout=out, stderr=subprocess.STDOUT)
    up = Up(proc, work, log, ports)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if proc.poll() is not None:
            pytest.fail(f"up exited ({proc.returncode}) while starting:\n{up.output()}")
        try:
            health = requests.get(f"{up.url}/api/v2/monitor/health", timeout=5).json()
            if all(health[c]["status"] == "healthy" for c in COMPONENTS):
                break
        except (requests.RequestException, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            _kill(up)
            pytest.fail(f"Airflow not healthy within {STARTUP_TIMEOUT:.0f}s:\n{up.output()}")
        time.sleep(1)
    # Healthy components have started their log servers, which bind a moment later.
    deadline = time.monotonic() + 30
    while {p for _, _, p in _listening(_family(up))} < set(ports.values()):
        if time.monotonic() > deadline:
            _kill(up)
            pytest.fail(f"not all of {ports} listen within 30s of healthy: "
                        f"{_listening(_family(up))}\n{up.output()}")
        time.sleep(0.5)
    return up


def _kill(up: Up) -> None:
    """Only for a failed test: SIGKILL whatever of the stack is left."""
    family = []
    with contextlib.suppress(psutil.Error):
        family = _family(up)
    for p in family:
        with contextlib.suppress(psutil.Error):
            p.kill()
    up.proc.wait(10)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("up") / "work"


@pytest.fixture
def up(work: Path) -> Iterator[Up]:
    running = _start(work)
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            _kill(running)


def _assert_all_on_loopback(up: Up, family: list[psutil.Process]) -> None:
    listening = _listening(family)
    assert {p for _, _, p in listening} >= set(up.ports.values()), listening
    exposed = [entry for entry in listening if entry[1] != "127.0.0.1"]
    assert not exposed, f"listening beyond 127.0.0.1: {exposed}\n{_describe(family)}"
    if shutil.which("ss"):
        seen = _ss_listening({p.pid for p in family})
        assert {p for _, _, p in seen} >= set(up.ports.values()), seen
        assert all(address == "127.0.0.1" for _, address, _ in seen), seen


def test_ctrl_c_stops_the_whole_stack_and_everything_listens_on_loopback(up: Up) -> None:
    family = _family(up)
    assert len(family) > 10, _describe(family)  # the server, the emulator, Airflow's parts
    _assert_all_on_loopback(up, family)
    out = up.output(100_000)
    assert f"Airflow UI: {up.url}" in out
    assert "simple_auth_manager_passwords.json.generated" in out
    assert "Ctrl-C" in out and "--down" in out
    assert (up.work / "up.pid").exists()

    family = _family(up)  # the latest, right before stopping
    started = time.monotonic()
    up.proc.send_signal(signal.SIGINT)
    left = _wait_gone(family, STOP_WITHIN)
    took = time.monotonic() - started
    assert not left, f"left after {STOP_WITHIN:.0f}s:\n{_describe(left)}\n{up.output()}"
    assert up.proc.wait(5) == 0, up.output()
    assert not (up.work / "up.pid").exists()
    print(f"Ctrl-C: {len(family)} processes stopped in {took:.1f}s")


def test_make_down_stops_the_whole_stack(up: Up) -> None:
    family = _family(up)
    started = time.monotonic()
    down = subprocess.run([sys.executable, "-m", "dicom_deid.up", "--down", "--work-dir",
                           str(up.work)], env=_env(), capture_output=True, text=True,
                          timeout=60)
    left = _wait_gone(family, max(0.0, STOP_WITHIN - (time.monotonic() - started)))
    took = time.monotonic() - started
    assert down.returncode == 0, down.stdout + down.stderr
    assert not left, f"left after {STOP_WITHIN:.0f}s:\n{_describe(left)}\n{up.output()}"
    assert up.proc.wait(5) == 0, up.output()
    assert not (up.work / "up.pid").exists()
    print(f"make down: {len(family)} processes stopped in {took:.1f}s")


def test_down_stops_what_a_killed_up_left(tmp_path: Path) -> None:
    """``up`` SIGKILLed (no clean-up of its own): ``--down`` stops the processes its pid
    file recorded, a process group of their own included, and removes the file."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    # A process-group leader with a child that ignores SIGTERM (SIGKILL must follow).
    leader = subprocess.Popen(
        ["/bin/sh", "-c", "trap '' TERM; sleep 600 & wait"], start_new_session=True)
    loner = subprocess.Popen(["sleep", "600"])
    deadline = time.monotonic() + 10
    while len(psutil.Process(leader.pid).children()) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    procs = [psutil.Process(leader.pid), *psutil.Process(leader.pid).children(),
             psutil.Process(loner.pid)]
    (tmp_path / "up.pid").write_text(json.dumps({
        "pid": gone.pid, "started": 0.0, "groups": [leader.pid],
        "processes": [[p.pid, p.create_time()] for p in procs]}))
    try:
        down = subprocess.run([sys.executable, "-m", "dicom_deid.up", "--down", "--work-dir",
                               str(tmp_path)], capture_output=True, text=True, timeout=60)
        assert down.returncode == 0, down.stdout + down.stderr
        for popen in (leader, loner):
            popen.wait(5)  # our children: collect them, or they stay zombies
        assert not _wait_gone(procs, 5)
        assert not (tmp_path / "up.pid").exists()
    finally:
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.kill()
