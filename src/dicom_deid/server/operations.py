"""Long-running operations in google.longrunning form, run on the server's job pool.

An operation's state lives in the index, so ``operations.get`` answers the same
after a restart; one that was running when the server died is ended as ABORTED
rather than left pending for ever. Per-instance failures are kept with a reason that
names the resource (never a DICOM value) and are listed at the metadata's
``logsUrl``, the local stand-in for Cloud Logging.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable

from . import errors
from .catalog import dumps
from .clock import now
from .names import DatasetName
from .paging import page
from .resources import get_dataset
from .state import ServerState

log = logging.getLogger("dicom_deid.server.operations")

METADATA_TYPE = "type.googleapis.com/google.cloud.healthcare.v1.OperationMetadata"

# HTTP status -> google.rpc.Code, for the ``error`` of a finished operation.
_GRPC = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 412: 9, 429: 8, 499: 1, 500: 13,
         501: 12, 503: 14, 504: 4}


class Cancelled(Exception):
    """Raised inside a job when the caller asked to cancel it."""


class Stopped(Exception):
    """Raised inside a job when the server is shutting down (SIGTERM, Ctrl-C)."""


class Progress:
    """What a running job reports: counts, failures with reasons, cancellation."""

    FLUSH_SECONDS = 0.5

    def __init__(self, state: ServerState, name: str) -> None:
        self._state = state
        self.name = name
        self.success = 0
        self.failure = 0
        self.pending = 0
        self._failures: list[tuple[str, str, str]] = []
        self._last = 0.0
        self._lock = threading.Lock()

    def ok(self, n: int = 1) -> None:
        self.tally(n)
        self._maybe_flush()

    def failed(self, resource: str, reason: str) -> None:
        self.tally(0, [(resource, reason)])
        self._maybe_flush()

    def tally(self, successes: int, failures: list[tuple[str, str]] = ()) -> None:
        """Count without writing: for a caller that flushes the counts in the same
        transaction as the instances they count (``flush(db)``)."""
        with self._lock:
            self.success += successes
            self.failure += len(failures)
            self.pending = max(0, self.pending - successes - len(failures))
            self._failures.extend((self.name, r, why) for r, why in failures)

    def expect(self, n: int) -> None:
        with self._lock:
            self.pending = n
        self.flush()

    def check_cancel(self) -> None:
        """Raise if the job should stop now: ``Stopped`` when the server is shutting
        down, ``Cancelled`` when a caller asked."""
        if self._state.stopping.is_set():
            raise Stopped
        row = self._state.catalog.one(
            "SELECT cancel_requested FROM operations WHERE name=?", (self.name,)
        )
        if row and row[0]:
            raise Cancelled

    def _maybe_flush(self) -> None:
        if time.monotonic() - self._last >= self.FLUSH_SECONDS:
            self.flush()

    def flush(self, db: sqlite3.Connection | None = None) -> None:
        """Write the counts and new failures; inside ``db``'s transaction if given."""
        with self._lock:
            failures, self._failures = self._failures, []
            counts = (self.success, self.failure, self.pending)
            self._last = time.monotonic()
        if db is None:
            with self._state.catalog.write() as own:
                self._write(own, counts, failures)
        else:
            self._write(db, counts, failures)

    def _write(self, db: sqlite3.Connection, counts: tuple[int, int, int],
               failures: list[tuple[str, str, str]]) -> None:
        db.execute("UPDATE operations SET success=?, failure=?, pending=? WHERE name=?",
                   (*counts, self.name))
        if failures:
            db.executemany(
                "INSERT INTO operation_failures (operation, resource, reason) VALUES (?,?,?)",
                failures)


Job = Callable[[Progress], dict]


def start(state: ServerState, dataset: DatasetName, method: str, job: Job,
          target: str | None = None) -> dict:
    """Record a new operation, run ``job`` in the background, return the Operation.

    ``target`` names what the job writes into (a destination store or dataset): an
    operation that ends early says how much of it is there."""
    name = f"{dataset}/operations/{secrets.randbelow(10**18):018d}"
    with state.catalog.write() as db:
        db.execute(
            "INSERT INTO operations (name, dataset, method, create_time, target) "
            "VALUES (?,?,?,?,?)",
            (name, str(dataset), method, now(), target),
        )
    state.jobs.submit(_run, state, name, job)
    return get(state, name)


def finished(state: ServerState, dataset: DatasetName, method: str, response: dict) -> dict:
    """Record an operation that completed as it was asked for (e.g. datasets.create)."""
    name = f"{dataset}/operations/{secrets.randbelow(10**18):018d}"
    stamp = now()
    with state.catalog.write() as db:
        db.execute(
            "INSERT INTO operations (name, dataset, method, create_time, end_time, done, "
            "response) VALUES (?,?,?,?,?,1,?)",
            (name, str(dataset), method, stamp, stamp, dumps(response)),
        )
    return get(state, name)


def _run(state: ServerState, name: str, job: Job) -> None:
    progress = Progress(state, name)
    response: dict | None = None
    error: dict | None = None
    try:
        response = job(progress)
    except Cancelled:
        error = {"code": 1, "message": _ended_early("operation cancelled", progress.success,
                                                    _target(state, name))}
    except Stopped:
        error = _aborted(progress.success, _target(state, name))
    except errors.ApiError as exc:
        error = {"code": _GRPC.get(exc.code, 13), "message": exc.message}
    except Exception as exc:  # the job failed as a whole; say what kind, not the data
        log.error("operation %s failed: %s", name, errors.describe(exc))
        error = {"code": 13, "message": f"internal error: {type(exc).__name__}"}
    progress.flush()
    with state.catalog.write() as db:
        db.execute(
            "UPDATE operations SET done=1, end_time=?, pending=0, error=?, response=? "
            "WHERE name=?",
            (now(), dumps(error) if error else None,
             dumps(response) if response is not None else None, name),
        )


def _json(row: object, base_url: str = "") -> dict:
    counter = {}
    for key in ("success", "failure", "pending"):
        if row[key]:
            counter[key] = str(row[key])
    metadata: dict = {
        "@type": METADATA_TYPE,
        "apiMethodName": row["method"],
        "createTime": row["create_time"],
        "counter": counter,
    }
    if row["end_time"]:
        metadata["endTime"] = row["end_time"]
    if row["cancel_requested"]:
        metadata["cancelRequested"] = True
    if base_url:
        metadata["logsUrl"] = f"{base_url}/v1/{row['name']}/failures"
    body = {"name": row["name"], "metadata": metadata}
    if row["done"]:
        body["done"] = True
        if row["error"]:
            body["error"] = json.loads(row["error"])
        else:
            body["response"] = json.loads(row["response"] or "{}")
    return body


def get(state: ServerState, name: str, base_url: str = "") -> dict:
    row = state.catalog.one("SELECT * FROM operations WHERE name=?", (name,))
    if row is None:
        raise errors.not_found("operation not found")
    return _json(row, base_url)


def list_(state: ServerState, dataset: DatasetName, params: dict, base_url: str = "") -> dict:
    get_dataset(state, dataset)
    flt = (params.get("filter") or "").replace(" ", "")
    sql = "SELECT * FROM operations WHERE dataset=?"
    if flt == "done=true":
        sql += " AND done=1"
    elif flt == "done=false":
        sql += " AND done=0"
    elif flt:
        raise errors.invalid("filter supports only done=true or done=false")
    rows = state.catalog.read(sql + " ORDER BY create_time DESC", (str(dataset),))
    return page(params, rows, "operations", lambda r: _json(r, base_url))


def cancel(state: ServerState, name: str) -> dict:
    with state.catalog.write() as db:
        cur = db.execute("UPDATE operations SET cancel_requested=1 WHERE name=? AND done=0",
                         (name,))
        if cur.rowcount == 0 and not db.execute(
            "SELECT 1 FROM operations WHERE name=?", (name,)
        ).fetchone():
            raise errors.not_found("operation not found")
    return {}


def failures(state: ServerState, name: str, params: dict) -> dict:
    get(state, name)
    rows = state.catalog.read(
        "SELECT resource, reason FROM operation_failures WHERE operation=? ORDER BY rowid",
        (name,),
    )
    return page(params, rows, "failures",
                 lambda r: {"resource": r["resource"], "reason": r["reason"]})


def _target(state: ServerState, name: str) -> str | None:
    row = state.catalog.one("SELECT target FROM operations WHERE name=?", (name,))
    return row["target"] if row else None


def _ended_early(what: str, stored: int, target: str | None) -> str:
    """``what``, plus what a partial run left in its destination: the counters count
    exactly those instances (they are written in the same transaction), and a second
    run into the same destination finds them there as successes, not conflicts."""
    if not target:
        return what
    return (f"{what}; {stored} instance(s) had been stored in {target}, as the success "
            f"counter says; run it again into the same destination to finish: instances "
            f"already there count as successes and nothing is stored twice")


def _aborted(stored: int, target: str | None) -> dict:
    return {"code": 10, "message": _ended_early(
        "aborted: the server stopped while the operation was running", stored, target)}


def fail_interrupted(state: ServerState) -> int:
    """End as ABORTED every operation a stop or crash left running (at start-up)."""
    with state.catalog.write() as db:
        rows = db.execute("SELECT name, success, target FROM operations WHERE done=0"
                          ).fetchall()
        db.executemany(
            "UPDATE operations SET done=1, end_time=?, pending=0, error=? WHERE name=?",
            [(now(), dumps(_aborted(r["success"], r["target"])), r["name"]) for r in rows])
        return len(rows)
