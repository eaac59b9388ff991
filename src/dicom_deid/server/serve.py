"""Running the server: one process, or one forked worker per core on a shared socket.

Parsing uploads is CPU-bound Python, so on a multi-core machine the server runs
several worker processes accepting on one listening socket. Recovery after a crash
(sweeping temp files, ending interrupted operations) happens once, in the parent,
before any worker exists: a worker doing it would delete a sibling's uploads in
flight. Workers are forked after every import, so they start at once, and each asks
the kernel to kill it when the parent dies: ``kill -9`` of the server stops all of
it, as it would a single process.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

import uvicorn

from . import connections, quiet
from .app import create_app
from .lifeline import die_with
from .recovery import recover
from .state import ServerState

log = logging.getLogger("dicom_deid.server")

_M_ARENA_MAX = -8
_RESTART_PAUSE = 1.0


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _tune_malloc() -> None:
    """Keep memory flat under a stream of ~0.5 MB instance buffers (glibc only).

    glibc gives threads their own malloc arenas (up to 8 per core) and each keeps
    the instance-sized blocks it once held, so RSS creeps up as more of the server's
    threads touch instances. Two arenas bound that; a fixed mmap threshold would
    too, but costs retrieval a fresh mapping per instance.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, 2)


def _serve(sock: socket.socket | None, host: str, port: int, data_dir: Path,
           max_body_bytes: int, run_recovery: bool, log_level: str) -> None:
    quiet.install()  # before the first read of an instance: no value reaches a log
    app = create_app(data_dir, max_body_bytes, run_recovery=run_recovery)
    # Idle connections are kept for 10 minutes by default, as Google's front ends keep
    # them: the discovery client (httplib2) reuses a pooled connection without retrying
    # when the server has closed it, so uvicorn's 5 s default broke a client's first call
    # after a pause with BrokenPipeError. A header timeout and a connection cap (which
    # closes the longest-idle connection first) keep slow or idle clients from holding
    # every descriptor: see connections.py.
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            **connections.config_options())
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock] if sock is not None else None)
    finally:
        # uvicorn has stopped taking requests; operations still running would keep the
        # process alive (their threads are joined at exit) and their pools busy.
        app.state.server.stop()


def _fork_worker(sock: socket.socket, host: str, port: int, data_dir: Path,
                 max_body_bytes: int, log_level: str) -> int:
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        die_with(parent)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _serve(sock, host, port, data_dir, max_body_bytes, False, log_level)
    except BaseException:
        code = 1
        raise
    finally:
        os._exit(code)


def run(host: str, port: int, data_dir: Path, max_body_bytes: int, workers: int,
        log_level: str = "warning") -> None:
    _tune_malloc()
    if workers <= 1:
        _serve(None, host, port, data_dir, max_body_bytes, True, log_level)
        return
    state = ServerState(data_dir, max_body_bytes=max_body_bytes)
    recover(state)
    state.catalog.close()
    sock = socket.create_server((host, port), reuse_port=False, backlog=2048)
    sock.set_inheritable(True)
    children = {_fork_worker(sock, host, port, data_dir, max_body_bytes, log_level)
                for _ in range(workers)}
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        children.discard(pid)
        if not stopping:
            # A worker died on its own: replace it so capacity stays. Operations it was
            # running stay unfinished until the next start-up marks them ABORTED.
            log.error("worker %d exited (status %d); starting another", pid, status)
            time.sleep(_RESTART_PAUSE)
            children.add(_fork_worker(sock, host, port, data_dir, max_body_bytes, log_level))
    sock.close()
    sys.exit(0)
