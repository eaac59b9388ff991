"""Session fixtures: a real ``dicom-deid serve`` process and a Cloud Storage emulator.

Tests talk to them only through real clients: the Google API discovery client,
dicomweb-client, google-cloud-storage, plain HTTP where a raw body is the point.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dicomweb_client.api import DICOMwebClient
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from googleapiclient.discovery import build

from dicom_deid.testing import ServerProcess, StorageEmulator, free_port

# Airflow reads its configuration once, at first import: give the whole test session
# one throw-away AIRFLOW_HOME (with this checkout's dags/ and plugins/) before any
# test module imports it, so no test touches ~/airflow.
_REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="dicom-deid-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(_REPO / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(_REPO / "plugins"))

PROJECT, LOCATION = "test-project", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageEmulator]:
    root = tmp_path_factory.mktemp("gcs")
    emu = StorageEmulator(root / "data", free_port(), root / "emulator.log").start()
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = emu.host
    yield emu
    emu.stop()
    if previous is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = previous


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory,
           gcs_emulator: StorageEmulator) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("server")
    proc = ServerProcess(root / "data", free_port(), root / "server.log",
                         env={"STORAGE_EMULATOR_HOST": gcs_emulator.host}).start()
    yield proc
    proc.stop()


def healthcare_client(url: str):
    return build("healthcare", "v1", static_discovery=True, cache_discovery=False,
                 client_options={"api_endpoint": url}, credentials=AnonymousCredentials())


@pytest.fixture(scope="session")
def healthcare(server: ServerProcess):
    return healthcare_client(server.url)


@pytest.fixture(scope="session")
def dataset(healthcare) -> str:
    healthcare.projects().locations().datasets().create(
        parent=PARENT, datasetId="tests", body={}).execute()
    return f"{PARENT}/datasets/tests"


@pytest.fixture
def store(healthcare, dataset: str) -> str:
    """A new, empty DICOM store for one test."""
    store_id = f"s-{uuid.uuid4().hex[:12]}"
    healthcare.projects().locations().datasets().dicomStores().create(
        parent=dataset, dicomStoreId=store_id, body={}).execute()
    return f"{dataset}/dicomStores/{store_id}"


@pytest.fixture
def dicomweb(server: ServerProcess, store: str) -> DICOMwebClient:
    return DICOMwebClient(url=f"{server.url}/v1/{store}/dicomWeb")


@pytest.fixture
def bucket(gcs_emulator: StorageEmulator) -> storage.Bucket:
    gcs = storage.Client(project="local", credentials=AnonymousCredentials())
    return gcs.create_bucket(f"b-{uuid.uuid4().hex[:12]}")
