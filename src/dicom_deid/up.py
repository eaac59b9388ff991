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

import subprocess
import sys
from pathlib import Path

from googleapiclient.errors import HttpError

from .devstack import ROOT, airflow_env, healthcare_client, local_stack, seed_source
from .gcs import client as gcs_client

PARENT = "projects/demo/locations/local"
SERVER_PORT, GCS_PORT = 8090, 9023
BUCKET = "dicom-deid-export"


def seed(url: str) -> str:
    """A ``demo`` dataset with a ``source`` store holding planted PHI, once."""
    hc = healthcare_client(url)
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
    client = gcs_client("demo")
    if client.lookup_bucket(BUCKET) is None:
        client.create_bucket(BUCKET)
    return store


def main() -> None:
    work = ROOT / ".airflow"
    work.mkdir(exist_ok=True)
    # local_stack sets STORAGE_EMULATOR_HOST for seed()'s Cloud Storage client too.
    with local_stack(work, server_port=SERVER_PORT, gcs_port=GCS_PORT) as stack:
        server, gcs = stack.server, stack.gcs
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


if __name__ == "__main__":
    main()
