"""Our server, ``dicom-deid serve``: its stores and its instance files on disk.

Stores are created through the Google Healthcare API discovery client, as users create
them; the instance files are listed from the server's index, opened read-only.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from dicom_deid.devstack import healthcare_client

PROJECT, LOCATION, DATASET = "bench", "local", "bench"


def create_store(url: str, store_id: str) -> str:
    """Dataset (once) and store through the Google discovery client, as users do."""
    from googleapiclient.errors import HttpError

    datasets = healthcare_client(url).projects().locations().datasets()
    parent = f"projects/{PROJECT}/locations/{LOCATION}"
    dataset = f"{parent}/datasets/{DATASET}"
    try:
        datasets.create(parent=parent, datasetId=DATASET, body={}).execute()
    except HttpError as exc:
        if exc.resp.status != 409:
            raise
    datasets.dicomStores().create(parent=dataset, dicomStoreId=store_id, body={}).execute()
    return f"{dataset}/dicomStores/{store_id}"


def store_instance_count(url: str, store: str) -> int:
    stores = healthcare_client(url).projects().locations().datasets().dicomStores()
    return int(stores.getDICOMStoreMetrics(name=store).execute()["instanceCount"])


def our_files(data_dir: Path, store: str) -> list[Path]:
    """The store's instance files in upload order, from the index (opened read-only)."""
    db = sqlite3.connect(f"file:{data_dir / 'index.sqlite3'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT i.path FROM instances i JOIN stores s ON i.store = s.pk "
                          "WHERE s.name = ? ORDER BY i.pk", (store,)).fetchall()
    finally:
        db.close()
    return [data_dir / "objects" / r[0] for r in rows]
