"""Start the local server and a Cloud Storage emulator as real processes.

Shared by the test suite, the demo and the benchmarks, so that each of them talks to
the same thing a user runs: ``dicom-deid serve`` over HTTP on loopback.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
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
