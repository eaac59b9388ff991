"""Where a run's report and tables live, for the workers that write them and the API
server that serves them (``report_app``).

Kept free of heavy imports: the API server imports this to find a file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def reports_root() -> Path:
    """Where run reports live: ``$DICOM_DEID_REPORTS``, else ``$AIRFLOW_HOME/reports``.

    Workers write there and the API server serves it (``report_app``), so in a
    multi-host deployment it must be a volume both see.
    """
    return Path(os.environ.get("DICOM_DEID_REPORTS")
                or Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "reports")


#: What stands for itself in a folder or object name: the characters Airflow allows in a
#: run ID (its default ``allowed_run_id_pattern``), which include those of DAG IDs but
#: their non-ASCII letters.
_PLAIN = re.compile(r"[A-Za-z0-9_.~:+-]")


def path_segment(name: str) -> str:
    """A DAG, task or run ID as one folder or object name, one to one: two IDs never
    share a folder, so the report app, which serves by the DAG ID it authorized, never
    serves another DAG's (or run's) files.

    Plain characters stand for themselves; any other (``/``, ``%``, non-ASCII letters)
    becomes ``%XX`` per UTF-8 byte, and so do the dots of ``.`` and ``..``, which would
    leave the parent folder. ValueError for an empty name, which names no folder."""
    if not name:
        raise ValueError("an empty ID names no folder")
    if set(name) <= {"."}:
        return "%2E" * len(name)
    return "".join(c if _PLAIN.fullmatch(c) else _escaped(c) for c in name)


def _escaped(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode())


def report_folder(dag_id: str, run_id: str) -> Path:
    """A run's report folder, by the DAG's own id: a copied or renamed DAG writes where
    its Run report link looks."""
    return reports_root() / path_segment(dag_id) / path_segment(run_id)


def reports_dir(dag_id: str, run_id: str) -> Path:
    """A run's report folder, created: where its tables and report are written."""
    path = report_folder(dag_id, run_id)
    path.mkdir(parents=True, exist_ok=True)
    return path
