"""Bringing a data directory back to a consistent state after a crash.

Runs once per start, before any request is served (and before worker processes
exist, which would otherwise lose uploads in flight to the sweep).
"""

from __future__ import annotations

import logging

from .operations import fail_interrupted
from .state import ServerState

log = logging.getLogger("dicom_deid.server")


def recover(state: ServerState) -> None:
    """Remove temp and unreferenced files; end operations a crash interrupted."""
    removed = state.blobs.sweep(state.catalog.all_instance_paths())
    if removed:
        log.info("start-up sweep removed %d unreferenced file(s)", removed)
    interrupted = fail_interrupted(state)
    if interrupted:
        log.info("marked %d interrupted operation(s) as aborted", interrupted)
