"""Airflow test set-up: a throw-away AIRFLOW_HOME and a connection to the local server.

Airflow reads its configuration once, when it is first imported, so ``AIRFLOW_HOME``
(a session temp dir), ``AIRFLOW__CORE__UNIT_TEST_MODE`` and
``AIRFLOW__CORE__LOAD_EXAMPLES`` are set here, when pytest imports this conftest, before
any test module imports airflow. They are set with ``setdefault``: tests/conftest.py
sets the same for the whole session first, and one session must have one Airflow home.

Connections: in Airflow 3.3 a hook used outside a running task resolves a connection
through the secrets backends, the first of which reads ``AIRFLOW_CONN_<ID>`` environment
variables (JSON or URI), looked up at each call. No metadata database, execution API
server or ``AIRFLOW__CORE__EXECUTION_API_SERVER_URL`` is needed for that; tasks run by
``dag.test()`` resolve it the same way through the in-process execution API. The
connection points at the session's local server (``server`` in tests/conftest.py), so an
autouse session fixture sets it once the server's port is known, before any hook is built.

``hook`` and ``dataset`` (a dataset of the test module's own, made through the hook) are
what every module here starts from.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import uuid
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from dicom_deid_airflow.hooks.healthcare import HealthcareHook

if "AIRFLOW_HOME" not in os.environ:
    _HOME = tempfile.mkdtemp(prefix="airflow-home-")
    atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
    os.environ["AIRFLOW_HOME"] = _HOME
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

PROJECT = "demo"
LOCATION = "local"


@pytest.fixture(scope="session", autouse=True)
def google_cloud_default(server) -> str:
    """``google_cloud_default`` -> the local server, project ``demo``."""
    os.environ["AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT"] = json.dumps({
        "conn_type": "google_cloud_platform",
        "extra": {"api_endpoint": server.url, "project": PROJECT},
    })
    return server.url


@pytest.fixture(scope="module")
def hook() -> HealthcareHook:
    """The hook on ``google_cloud_default``, one per test module."""
    # Imported here, not at the top: Airflow must not load before the settings above.
    from dicom_deid_airflow.hooks.healthcare import HealthcareHook

    return HealthcareHook()


@pytest.fixture(scope="module")
def dataset(hook: HealthcareHook, request: pytest.FixtureRequest) -> str:
    """A dataset for one test module, named after it (``hook-…`` for test_hook.py), so
    the modules sharing the session's server never meet each other's stores."""
    prefix = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    return hook.create_dataset(None, LOCATION, f"{prefix}-{uuid.uuid4().hex[:10]}")["name"]
