"""The SQLite index of datasets, DICOM stores, instances and operations.

SQLite in WAL mode gives crash safety without a server process: a transaction is
either in the database after a restart or not at all. Each thread gets its own
connection; SQLite serialises writers.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .attributes import INDEXED

_COLUMNS = ",\n    ".join(
    f"{a.column} {'INTEGER' if a.vr in ('US', 'UL', 'SS', 'SL', 'IS') else 'TEXT'}"
    for a in INDEXED
    if a.column not in ("study_uid", "series_uid", "sop_uid")
)

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS datasets (
    name TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    time_zone TEXT,
    create_time TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stores (
    pk INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT UNIQUE NOT NULL,
    dataset TEXT NOT NULL,
    labels TEXT NOT NULL DEFAULT '{{}}',
    create_time TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS instances (
    pk INTEGER PRIMARY KEY AUTOINCREMENT,
    store INTEGER NOT NULL,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    transfer_syntax TEXT,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    {_COLUMNS},
    UNIQUE (store, sop_uid)
);
CREATE INDEX IF NOT EXISTS instances_by_study ON instances (store, study_uid, series_uid);
CREATE TABLE IF NOT EXISTS operations (
    name TEXT PRIMARY KEY,
    dataset TEXT NOT NULL,
    method TEXT NOT NULL,
    create_time TEXT NOT NULL,
    end_time TEXT,
    done INTEGER NOT NULL DEFAULT 0,
    success INTEGER NOT NULL DEFAULT 0,
    failure INTEGER NOT NULL DEFAULT 0,
    pending INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    response TEXT,
    target TEXT
);
CREATE INDEX IF NOT EXISTS operations_by_dataset ON operations (dataset);
CREATE TABLE IF NOT EXISTS operation_failures (
    operation TEXT NOT NULL,
    resource TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS failures_by_operation ON operation_failures (operation);
CREATE TABLE IF NOT EXISTS resource_settings (
    name TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (name, field)
);
"""

INSTANCE_COLUMNS = ["store", "transfer_syntax", "path", "size"] + [a.column for a in INDEXED]


def wildcard_match(pattern: str, value: str) -> bool:
    """``*`` (any run) and ``?`` (one character) over the whole of ``value``.

    The greedy walk that backs up only to the last ``*`` costs at most
    len(pattern) x len(value) steps whatever the pattern; a regex of ``.*`` runs
    backtracks exponentially on patterns such as ``*?*?*?...#``, which let one
    30-character query hold a worker for minutes.
    """
    p = v = 0
    star, resume = -1, 0
    while v < len(value):
        if p < len(pattern) and pattern[p] in ("?", value[v]):
            p += 1
            v += 1
        elif p < len(pattern) and pattern[p] == "*":
            star, resume = p, v
            p += 1
        elif star >= 0:  # let the last * take one more character, retry after it
            resume += 1
            p, v = star + 1, resume
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


def wildcard_ci(value: str | None, pattern: str) -> int:
    """QIDO matching for person names: ``*``/``?`` wildcards, case-insensitive in any script.

    SQLite's LIKE folds ASCII only, so this is registered as a SQL function.
    """
    return int(value is not None and wildcard_match(pattern.casefold(), value.casefold()))


class Catalog:
    """Thread-safe access to the index; one connection per thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self.db.executescript(SCHEMA)
        self._add_columns()

    def _add_columns(self) -> None:
        """Columns added since a data directory was created: ``CREATE TABLE IF NOT
        EXISTS`` leaves an older table as it was."""
        have = {r["name"] for r in self.db.execute("PRAGMA table_info(operations)")}
        if "target" not in have:
            self.db.execute("ALTER TABLE operations ADD COLUMN target TEXT")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None,
                             check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable against a process crash in WAL mode (only power loss can
        # drop the last transactions), which is the failure this server must survive.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.create_function("wildcard_ci", 2, wildcard_ci, deterministic=True)
        return db

    @property
    def db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
        return db

    def close(self) -> None:
        """Close this thread's connection (before a fork: children open their own)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, taken immediately so writers queue instead of deadlocking."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def read(self, sql: str, params: tuple | list = ()) -> list[sqlite3.Row]:
        return self.db.execute(sql, params).fetchall()

    def one(self, sql: str, params: tuple | list = ()) -> sqlite3.Row | None:
        return self.db.execute(sql, params).fetchone()

    # -- instances ----------------------------------------------------------------

    def insert_instance(self, db: sqlite3.Connection, row: dict) -> bool:
        """Insert one instance row inside ``db``'s transaction; False on a duplicate UID."""
        cols = [c for c in INSTANCE_COLUMNS if c in row]
        try:
            db.execute(
                f"INSERT INTO instances ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [row[c] for c in cols],
            )
        except sqlite3.IntegrityError:
            return False
        return True

    # -- settings of a dataset or store kept as JSON (IAM policy, notificationConfig) --

    def settings(self, name: str) -> dict[str, object]:
        """Every stored setting of the resource ``name``, by field."""
        return {r["field"]: json.loads(r["value"]) for r in self.db.execute(
            "SELECT field, value FROM resource_settings WHERE name=?", (name,))}

    @staticmethod
    def put_setting(db: sqlite3.Connection, name: str, field: str, value: object) -> None:
        """Set (or, with None, clear) one setting inside ``db``'s transaction."""
        if value is None:
            db.execute("DELETE FROM resource_settings WHERE name=? AND field=?", (name, field))
        else:
            db.execute("INSERT OR REPLACE INTO resource_settings (name, field, value) "
                       "VALUES (?,?,?)", (name, field, dumps(value)))

    @staticmethod
    def drop_settings(db: sqlite3.Connection, name: str) -> None:
        """Forget the settings of ``name`` and of every resource under it, so a resource
        created again under the same name starts without its predecessor's policy."""
        db.execute("DELETE FROM resource_settings WHERE name=? OR substr(name, 1, ?)=?",
                   (name, len(name) + 1, name + "/"))

    def all_instance_paths(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT path FROM instances")}


def dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))
