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


def path_segment(name: str) -> str:
    """A DAG or run ID as a folder or object name: run IDs carry ``:`` and ``+``, which
    become ``_``; ``.`` and ``..`` (which the report app gets from a URL) become ``_``
    too, so a name never leaves its parent folder."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return "_" * len(safe) if set(safe) <= {"."} else safe


def report_folder(dag_id: str, run_id: str) -> Path:
    """A run's report folder, by the DAG's own id: a copied or renamed DAG writes where
    its Run report link looks."""
    return reports_root() / path_segment(dag_id) / path_segment(run_id)


def reports_dir(dag_id: str, run_id: str) -> Path:
    """A run's report folder, created: where its tables and report are written."""
    path = report_folder(dag_id, run_id)
    path.mkdir(parents=True, exist_ok=True)
    return path
