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


class TaskInstance:
    """The one stand-in the tests use: a task instance's XCom, for a hand-built context.

    Everything else (hook, client, HTTP, server) is real.
    """

    def __init__(self, task_id: str, try_number: int = 1) -> None:
        self.task_id = task_id
        self.try_number = try_number
        self.stats_tags: dict[str, str] = {}
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value

    def xcom_pull(self, task_ids: str | None = None, key: str = "return_value") -> Any:
        assert task_ids in (None, self.task_id)
        return self.xcom.get(key)
