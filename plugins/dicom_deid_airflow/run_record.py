"""Each task's outcome, written by the task itself, for the run report.

The report task runs last and must say which task failed, with which error, and how
long each took. A task in Airflow 3 cannot read other tasks' logs or exceptions, so
every task of the DAG carries :func:`record_outcome` as its success, failure, retry and
skip callback (``default_args``): it writes one small JSON file per task into the run's
report folder (``tasks/<task_id>.json``), which the report reads.

The error text kept is PHI-free by construction: the message of an exception this
project or Airflow raised (they name fields, resources and counts, never values), and
for any other exception only its class, because a library's message may quote a value
(pydicom and requests do).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dicom_deid_airflow.report_paths import path_segment, reports_dir

log = logging.getLogger(__name__)

#: Longest error text kept.
MAX_ERROR = 600
#: Modules whose exceptions' messages are written without values (ours and Airflow's).
TRUSTED_MODULES = ("dicom_deid", "dicom_deid_airflow", "airflow")


def safe_error(exc: BaseException | None) -> dict[str, str] | None:
    """``{"class", "message"}`` of a failure, with the message only where it is known not
    to quote data."""
    if exc is None:
        return None
    cls = type(exc)
    trusted = cls.__module__.split(".")[0] in TRUSTED_MODULES
    if trusted:
        message = " ".join(str(exc).split())[:MAX_ERROR]
    else:
        message = ("(message not shown: it may quote data; the task log has the traceback)")
    return {"class": cls.__name__, "message": message}


def tasks_dir(dag_id: str, run_id: str) -> Path:
    path = reports_dir(dag_id, run_id) / "tasks"
    path.mkdir(exist_ok=True)
    return path


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def record_outcome(context: dict, state: str) -> None:
    """Write this task's state, timings and PHI-free error; never fail the task."""
    try:
        ti = context["ti"]
        exc = context.get("exception")
        start = getattr(ti, "start_date", None)
        end = datetime.now(UTC)
        record = {
            "task_id": ti.task_id, "state": state,
            "try_number": int(getattr(ti, "try_number", 1) or 1),
            "start": _iso(start), "end": end.isoformat(),
            "duration_s": round((end - start).total_seconds(), 1) if start else None,
            "error": safe_error(exc) if isinstance(exc, BaseException) else None,
        }
        folder = tasks_dir(context["dag"].dag_id, context["run_id"])
        (folder / f"{path_segment(ti.task_id)}.json").write_text(json.dumps(record))
    except Exception as err:  # the record is for the report; the task's outcome stands
        log.warning("could not record the task's outcome for the report: %s",
                    type(err).__name__)


def _on(state: str) -> Callable[[dict], None]:
    def callback(context: dict) -> None:
        record_outcome(context, state)

    callback.__name__ = f"record_{state}"
    return callback


def read_outcomes(folder: Path) -> dict[str, dict]:
    """Task id -> its last recorded outcome (tasks that never ran have none)."""
    out: dict[str, dict] = {}
    for path in sorted((folder / "tasks").glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except ValueError:
            continue
        out[str(record.get("task_id") or path.stem)] = record
    return out


#: ``default_args`` entries that make every task record its outcome.
CALLBACKS = {"on_success_callback": _on("success"), "on_failure_callback": _on("failed"),
             "on_retry_callback": _on("up_for_retry"), "on_skipped_callback": _on("skipped")}
