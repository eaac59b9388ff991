"""``make up``: Airflow (standalone, SQLite) beside the local Cloud Healthcare API server
and a Cloud Storage emulator, with a seeded source store, for trying the DAGs in the UI.

Everything lives under ``.airflow/`` in the checkout. The Airflow side is configured
only through the connection and environment variables a real deployment would use
(``AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT`` with the server's URL as ``api_endpoint``,
``STORAGE_EMULATOR_HOST``), so what works here works against Google Cloud with a
different connection. ``airflow standalone`` starts its components as ``airflow``
subprocesses, hence the venv's ``bin/`` on ``PATH``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from .testing import ServerProcess, StorageEmulator

ROOT = Path(__file__).resolve().parents[2]
PARENT = "projects/demo/locations/local"
SERVER_PORT, GCS_PORT = 8090, 9023
BUCKET = "dicom-deid-export"


def seed(url: str) -> str:
    """A ``demo`` dataset with a ``source`` store holding planted PHI, once."""
    from .demo import seed_source

    hc = build("healthcare", "v1", static_discovery=True, cache_discovery=False,
               client_options={"api_endpoint": url}, credentials=AnonymousCredentials())
    datasets = hc.projects().locations().datasets()
    try:
        datasets.create(parent=PARENT, datasetId="demo", body={}).execute()
    except HttpError as exc:
        if exc.resp.status != 409:
            raise
    store = f"{PARENT}/datasets/demo/dicomStores/source"
    try:
        datasets.dicomStores().create(parent=f"{PARENT}/datasets/demo", dicomStoreId="source",
                                      body={}).execute()
        seed_source(url, store)
    except HttpError as exc:
        if exc.resp.status != 409:
            raise
    client = storage.Client(project="demo", credentials=AnonymousCredentials())
    if client.lookup_bucket(BUCKET) is None:
        client.create_bucket(BUCKET)
    return store


def airflow_env(home: Path, server_url: str, gcs_host: str) -> dict[str, str]:
    """The environment every Airflow component gets."""
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps({
            "conn_type": "google_cloud_platform",
            "extra": {"api_endpoint": server_url, "project": "demo"}}),
        "STORAGE_EMULATOR_HOST": gcs_host,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)]),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }


def main() -> None:
    work = ROOT / ".airflow"
    work.mkdir(exist_ok=True)
    gcs = StorageEmulator(work / "gcs", GCS_PORT, work / "gcs.log").start()
    os.environ["STORAGE_EMULATOR_HOST"] = gcs.host
    server = ServerProcess(work / "healthcare", SERVER_PORT, work / "server.log",
                           env={"STORAGE_EMULATOR_HOST": gcs.host}).start()
    try:
        store = seed(server.url)
        print(f"local Cloud Healthcare API: {server.url}/v1  (source store: {store})")
        print(f"Cloud Storage emulator: {gcs.host}  (bucket gs://{BUCKET})")
        print("Airflow UI: http://localhost:8080 (the admin password is printed below and "
              "kept in .airflow/home/simple_auth_manager_passwords.json.generated)")
        subprocess.run([str(Path(sys.executable).with_name("airflow")), "standalone"],
                       env=airflow_env(work / "home", server.url, gcs.host), check=False)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        gcs.stop()


if __name__ == "__main__":
    main()
