"""Connection arguments for the SQLite metadata database of the local Airflow.

``airflow standalone`` (``make up``, ``make demo``, the UI tests) keeps Airflow's
metadata in SQLite: the scheduler, the DAG processor, the triggerer, the task runners
and the API server all write to one file. SQLite lets one writer in at a time and the
Python driver waits 5 s for the lock before it raises ``database is locked``, which the
API server answers as a bare 500 "Database error". On a busy 2-core machine a scheduler
loop can hold the lock longer than that, so a person's click (pausing a DAG, announcing
an Asset event) failed while nothing was wrong. A longer wait turns that into a slower
answer instead of an error. Kept in its own module so Airflow's settings import it
without importing anything else of this project.
"""

from __future__ import annotations

from typing import Any

#: Seconds a connection waits for SQLite's write lock (``sqlite3.connect(timeout=)``,
#: which aiosqlite passes through too), instead of the driver's 5.
LOCK_TIMEOUT_S = 60.0


def connect_args() -> dict[str, Any]:
    """A fresh dict: Airflow adds ``check_same_thread`` to what it gets."""
    return {"timeout": LOCK_TIMEOUT_S}


#: What ``[database] sql_alchemy_connect_args`` (and ``…_async``) name: Airflow imports
#: the object at that dotted path.
CONNECT_ARGS: dict[str, Any] = connect_args()
ASYNC_CONNECT_ARGS: dict[str, Any] = connect_args()
