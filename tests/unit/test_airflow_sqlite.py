"""Airflow's own engines, built from ``airflow_env``, wait for SQLite's write lock.

The UI test that announces Asset events got a 500 "Database error" on a busy CI machine:
the API server's write met a lock held longer than the driver's 5 s default. These
build Airflow's real engines (``airflow.settings.configure_orm``) in a subprocess with
the environment ``make up`` gives Airflow, and hold the lock from outside for longer
than 5 s while Airflow writes."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from dicom_deid.airflow_sqlite import LOCK_TIMEOUT_S
from dicom_deid.devstack import airflow_env

WRITE = """
import asyncio, time
from airflow import settings
from sqlalchemy import text
settings.configure_orm()
with settings.engine.connect() as c:
    print("sync busy_timeout", c.exec_driver_sql("PRAGMA busy_timeout").scalar())
async def async_timeout():
    async with settings.async_engine.connect() as c:
        timeout = (await c.exec_driver_sql("PRAGMA busy_timeout")).scalar()
    await settings.async_engine.dispose()
    return timeout
print("async busy_timeout", asyncio.run(async_timeout()))
print("ready", flush=True)
start = time.monotonic()
with settings.engine.begin() as c:
    c.execute(text("INSERT INTO probe VALUES (1)"))
print("wrote after", round(time.monotonic() - start, 1))
"""


def test_airflow_connections_wait_for_the_write_lock(tmp_path: Path) -> None:
    env = airflow_env(tmp_path / "home", "http://127.0.0.1:9", "127.0.0.1:9")
    env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)
    db = tmp_path / "home" / "airflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("CREATE TABLE probe (x)")
    holder.execute("BEGIN IMMEDIATE")  # the write lock, as a long scheduler loop holds it
    writer = subprocess.Popen([sys.executable, "-c", WRITE], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert writer.stdout is not None
        lines: list[str] = []
        while not lines or lines[-1] not in ("ready\n", ""):  # "": the child exited
            lines.append(writer.stdout.readline())
        assert lines[-1] == "ready\n", (lines, writer.stderr.read() if writer.stderr
                                        else "")
        time.sleep(6.5)  # longer than the driver's default wait of 5 s
        assert writer.poll() is None, f"Airflow's write gave up: {writer.stderr.read()}"
        holder.execute("COMMIT")
        out, err = writer.communicate(timeout=60)
    finally:
        if writer.poll() is None:
            writer.kill()
        holder.close()
    assert writer.returncode == 0, err[-3000:]
    ms = int(LOCK_TIMEOUT_S * 1000)
    assert f"sync busy_timeout {ms}\n" in lines and f"async busy_timeout {ms}\n" in lines
    waited = re.search(r"^wrote after ([0-9.]+)$", out, re.M)
    assert waited and float(waited[1]) >= 6.0, out[-3000:]
    assert sqlite3.connect(db).execute("SELECT count(*) FROM probe").fetchone() == (1,)
