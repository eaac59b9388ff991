"""Running the server: one process, or several worker processes on one socket.

Parsing uploads is CPU-bound Python, so on a multi-core machine the server runs one
uvicorn worker per core. Recovery after a crash (sweeping temp files, ending
interrupted operations) happens once, in the parent, before any worker starts:
a worker doing it would delete a sibling's uploads in flight. Workers ask the kernel
to kill them when the parent dies, so ``kill -9`` of the server stops all of it,
as it does for a single process.
"""

from __future__ import annotations

import ctypes
import os
import signal
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from .app import create_app
from .state import ServerState

_ENV_DATA_DIR = "DICOM_DEID_DATA_DIR"
_ENV_MAX_BODY = "DICOM_DEID_MAX_BODY_BYTES"
_PR_SET_PDEATHSIG = 1


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def worker_app() -> Starlette:
    """uvicorn's factory in each worker process (configuration comes by environment)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: workers may outlive a killed parent
        pass
    return create_app(Path(os.environ[_ENV_DATA_DIR]), int(os.environ[_ENV_MAX_BODY]),
                      recover=False)


def run(host: str, port: int, data_dir: Path, max_body_bytes: int, workers: int,
        log_level: str = "warning") -> None:
    if workers <= 1:
        app = create_app(data_dir, max_body_bytes)
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
        return
    ServerState(data_dir, max_body_bytes=max_body_bytes).recover()
    os.environ[_ENV_DATA_DIR] = str(data_dir.resolve())
    os.environ[_ENV_MAX_BODY] = str(max_body_bytes)
    uvicorn.run("dicom_deid.server.serve:worker_app", factory=True, host=host, port=port,
                workers=workers, log_level=log_level, access_log=False)
