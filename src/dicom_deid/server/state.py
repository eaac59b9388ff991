"""Everything one server process holds: its data directory, index and workers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .blobs import BlobStore
from .catalog import Catalog

DEFAULT_MAX_BODY = 4 * 1024**3


@dataclass
class ServerState:
    data_dir: Path
    max_body_bytes: int = DEFAULT_MAX_BODY
    catalog: Catalog = field(init=False)
    blobs: BlobStore = field(init=False)
    jobs: ThreadPoolExecutor = field(init=False)
    #: Set when the server shuts down: running operations stop and end ABORTED.
    stopping: threading.Event = field(init=False, default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.catalog = Catalog(self.data_dir / "index.sqlite3")
        self.blobs = BlobStore(self.data_dir)
        # Long-running operations (import, export, deidentify) run here, off the
        # request path; two workers match the machines this targets.
        self.jobs = ThreadPoolExecutor(max_workers=2, thread_name_prefix="operation")

    def stop(self) -> None:
        """Stop running operations and wait for them to end: each sees ``stopping`` at
        its next check (within a fraction of a second; de-identification kills its
        worker processes) and ends ABORTED, naming what it had stored."""
        self.stopping.set()
        self.jobs.shutdown(wait=True, cancel_futures=True)
