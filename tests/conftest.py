"""Session fixtures: a real ``dicom-deid serve`` process and a Cloud Storage emulator.

Tests talk to them only through real clients: the Google API discovery client,
dicomweb-client, google-cloud-storage, plain HTTP where a raw body is the point. The
stack, the client and operation polling are ``dicom_deid.devstack``'s, as the demo
and the benches use them; the fixtures every test directory shares are here.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dicomweb_client.api import DICOMwebClient
from google.cloud import storage
from googleapiclient.discovery import Resource
from googleapiclient.errors import HttpError

from dicom_deid.devstack import (
    LocalStack,
    ServerProcess,
    StorageEmulator,
    healthcare_client,
    local_stack,
)
from dicom_deid.gcs import client as gcs_client
from tests.helpers import PARENT, new_store, stores_api

# Airflow reads its configuration once, at first import: give the whole test session
# one throw-away AIRFLOW_HOME (with this checkout's dags/ and plugins/) before any
# test module imports it, so no test touches ~/airflow.
_REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="dicom-deid-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(_REPO / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(_REPO / "plugins"))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The emulator and the server for the whole session (``STORAGE_EMULATOR_HOST`` set
    in this process while it runs, so the tests' Cloud Storage clients see it)."""
    with local_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture(scope="session")
def gcs_emulator(stack: LocalStack) -> StorageEmulator:
    return stack.gcs


@pytest.fixture(scope="session")
def server(stack: LocalStack) -> ServerProcess:
    return stack.server


@pytest.fixture(scope="session")
def healthcare(server: ServerProcess) -> Resource:
    return healthcare_client(server.url)


@pytest.fixture(scope="session")
def dataset(healthcare: Resource) -> str:
    healthcare.projects().locations().datasets().create(
        parent=PARENT, datasetId="tests", body={}).execute()
    return f"{PARENT}/datasets/tests"


@pytest.fixture
def datasets(healthcare: Resource) -> Resource:
    """``projects.locations.datasets`` of the session's discovery client."""
    return healthcare.projects().locations().datasets()


@pytest.fixture
def new_dataset(datasets: Resource) -> Iterator[str]:
    """A fresh dataset for one test (a policy or config set on it reaches no other
    test), deleted afterwards if the test left it."""
    name = f"{PARENT}/datasets/ds-{uuid.uuid4().hex[:10]}"
    datasets.create(parent=PARENT, datasetId=name.rsplit("/", 1)[1], body={}).execute()
    yield name
    try:
        datasets.delete(name=name).execute()
    except HttpError as exc:
        if exc.resp.status != 404:
            raise


@pytest.fixture
def stores(healthcare: Resource) -> Resource:
    """``projects.locations.datasets.dicomStores`` of the session's discovery client."""
    return stores_api(healthcare)


@pytest.fixture
def store(healthcare: Resource, dataset: str) -> str:
    """A new, empty DICOM store for one test."""
    return new_store(healthcare, dataset)


@pytest.fixture
def dicomweb(server: ServerProcess, store: str) -> DICOMwebClient:
    return DICOMwebClient(url=f"{server.url}/v1/{store}/dicomWeb")


@pytest.fixture
def bucket(gcs_emulator: StorageEmulator) -> storage.Bucket:
    gcs = gcs_client("local")
    return gcs.create_bucket(f"b-{uuid.uuid4().hex[:12]}")
