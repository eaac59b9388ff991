"""Shared by the Airflow tests: names, sample instances, a minimal task instance."""

from __future__ import annotations

import uuid
from typing import Any

from pydicom import dcmread
from pydicom.data import get_testdata_file

from tests.airflow.conftest import LOCATION, PROJECT

BASIC = {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}}
SAMPLES = ("CT_small.dcm", "MR_small.dcm")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def dataset_name(dataset_id: str) -> str:
    return f"projects/{PROJECT}/locations/{LOCATION}/datasets/{dataset_id}"


def samples() -> list:
    return [dcmread(get_testdata_file(name)) for name in SAMPLES]


class TaskStateStore:
    """Airflow 3.3's ``task_state_store`` for a hand-built context: what a try saves
    survives into the next (a dict the test keeps), as the real store does."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


class TaskInstance:
    """The stand-ins the tests use: a task instance's XCom and its task state store, for
    a hand-built context (:func:`context`).

    Everything else (hook, client, HTTP, server) is real.
    """

    def __init__(self, task_id: str, try_number: int = 1) -> None:
        self.task_id = task_id
        self.try_number = try_number
        self.stats_tags: dict[str, str] = {}
        self.xcom: dict[str, Any] = {}
        self.task_state = TaskStateStore()

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value

    def xcom_pull(self, task_ids: str | None = None, key: str = "return_value") -> Any:
        assert task_ids in (None, self.task_id)
        return self.xcom.get(key)


def context(ti: TaskInstance) -> dict[str, Any]:
    """A hand-built task context: the task instance and its task state store."""
    return {"ti": ti, "task_state_store": ti.task_state}
