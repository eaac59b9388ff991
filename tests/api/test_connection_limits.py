"""Slow and idle connections cannot hold the server: a header timeout and a cap.

The server runs as a process with a 2 s header timeout and an open-file limit of 256
(so the default cap is 128 connections per worker); slow clients send half a request
line, idle ones finish a request and keep the connection. A slow connection is closed
after the header timeout, an idle keep-alive one is kept (the discovery client reuses
them), and with hundreds of both open a new client is answered within a second.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest
import requests

from dicom_deid.devstack import ServerProcess, free_port, wait_http

FD_LIMIT = 256
HEADER_TIMEOUT_S = 2.0
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"


class LimitedServer(ServerProcess):
    """``dicom-deid serve`` under a low open-file limit, as a small host would set it."""

    def start(self) -> LimitedServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dicom_deid.cli", "serve", "--host", "127.0.0.1",
             "--port", str(self.port), "--data-dir", str(self.data_dir), *(self.args or [])],
            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ),
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE,
                                                  (FD_LIMIT, FD_LIMIT)))
        wait_http(f"{self.url}/healthz", self.proc)
        return self


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimitedServer]:
    root = tmp_path_factory.mktemp("limits")
    proc = LimitedServer(root / "data", free_port(), root / "server.log",
                         args=["--workers", "1", "--header-timeout-s", str(HEADER_TIMEOUT_S)])
    proc.start()
    yield proc
    proc.stop()


def _connect(server: ServerProcess, first: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    if first:
        sock.sendall(first)
    return sock


def _closed_after(sock: socket.socket, limit: float) -> tuple[float, bytes]:
    """Seconds until the server closed ``sock`` (reading at most ``limit``), and what it
    sent before closing."""
    start, got = time.monotonic(), b""
    sock.settimeout(limit)
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(4096):
            got += chunk
        return time.monotonic() - start, got
    return float("inf"), got


def _idle(server: ServerProcess) -> socket.socket:
    """A keep-alive connection that has had its answer and now waits."""
    sock = _connect(server, REQUEST)
    got = b""
    while b'"ok"' not in got:
        chunk = sock.recv(4096)
        assert chunk, "the server closed a keep-alive connection after one request"
        got += chunk
    return sock


def test_half_sent_request_and_silent_connection_are_closed_after_header_timeout(server):
    slow = _connect(server, b"GET /heal")
    silent = _connect(server)
    waited, got = _closed_after(slow, 10)
    assert 0.5 * HEADER_TIMEOUT_S <= waited <= HEADER_TIMEOUT_S + 3, waited
    assert got.startswith(b"HTTP/1.1 408 ")
    waited, got = _closed_after(silent, 10)
    assert waited <= HEADER_TIMEOUT_S + 3 and got == b""
    # Headers trickled in a byte at a time are still bound by the same timeout.
    trickle = _connect(server)
    start = time.monotonic()
    with contextlib.suppress(OSError):
        for byte in REQUEST[:-2]:
            trickle.sendall(bytes([byte]))
            time.sleep(0.1)
            if time.monotonic() - start > HEADER_TIMEOUT_S + 3:
                break
    waited, _ = _closed_after(trickle, 10)
    assert time.monotonic() - start <= HEADER_TIMEOUT_S + 3
    for sock in (slow, silent, trickle):
        sock.close()


def test_idle_keep_alive_connection_outlives_the_header_timeout(server):
    sock = _idle(server)
    time.sleep(HEADER_TIMEOUT_S + 1)
    sock.sendall(REQUEST)  # reused as httplib2 reuses a pooled connection
    sock.settimeout(5)
    assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
    sock.close()


def test_idle_and_slow_connections_cannot_starve_a_new_client(server):
    opened: list[socket.socket] = []
    try:
        opened += [_idle(server) for _ in range(150)]
        opened += [_connect(server, b"GET /hea") for _ in range(300)]
        start = time.monotonic()
        r = requests.get(f"{server.url}/healthz", timeout=1)
        assert r.json() == {"status": "ok"}
        assert time.monotonic() - start < 1
        # The server holds no more than its cap (128) and a few descriptors of its own.
        fds = psutil.Process(server.proc.pid).num_fds()
        assert fds < FD_LIMIT - 32, fds
    finally:
        for sock in opened:
            sock.close()
