"""Datasets and DICOM stores: create, get, list, patch, delete; store, study and series
metrics."""

from __future__ import annotations

import json

from . import errors
from .catalog import dumps
from .clock import now
from .names import DatasetName, StoreName, check_uid
from .paging import page
from .state import ServerState

# -- datasets ---------------------------------------------------------------------


def _dataset_json(row: object) -> dict:
    body = {"name": row["name"]}
    if row["time_zone"]:
        body["timeZone"] = row["time_zone"]
    return body


#: The ``@type`` of a Dataset inside an Operation's ``response``.
DATASET_TYPE = "type.googleapis.com/google.cloud.healthcare.v1.dataset.Dataset"


def create_dataset(state: ServerState, name: DatasetName, body: dict) -> dict:
    """Insert the dataset; the new Dataset. Google answers ``datasets.create`` with a
    long-running operation: the HTTP layer (``app``) wraps this in one, so that this
    module stays plain CRUD that ``operations`` can read datasets from."""
    tz = body.get("timeZone") if isinstance(body, dict) else None
    with state.catalog.write() as db:
        if db.execute("SELECT 1 FROM datasets WHERE name=?", (str(name),)).fetchone():
            raise errors.already_exists(f"dataset {name.dataset} already exists")
        db.execute(
            "INSERT INTO datasets (name, parent, time_zone, create_time) VALUES (?,?,?,?)",
            (str(name), name.parent, tz, now()),
        )
    return get_dataset(state, name)


def get_dataset(state: ServerState, name: DatasetName) -> dict:
    row = state.catalog.one("SELECT * FROM datasets WHERE name=?", (str(name),))
    if row is None:
        raise errors.not_found(f"dataset {name.dataset} not found")
    return _dataset_json(row)


def list_datasets(state: ServerState, parent: str, params: dict) -> dict:
    rows = state.catalog.read("SELECT * FROM datasets WHERE parent=? ORDER BY name", (parent,))
    return page(params, rows, "datasets", _dataset_json)


def delete_dataset(state: ServerState, name: DatasetName) -> dict:
    get_dataset(state, name)
    pks: list[int] = []
    with state.catalog.write() as db:
        for (pk,) in db.execute("SELECT pk FROM stores WHERE dataset=?", (str(name),)):
            pks.append(pk)
            db.execute("DELETE FROM instances WHERE store=?", (pk,))
        db.execute("DELETE FROM stores WHERE dataset=?", (str(name),))
        db.execute("DELETE FROM datasets WHERE name=?", (str(name),))
    for pk in pks:
        state.blobs.remove_store(pk)
    return {}


# -- DICOM stores -------------------------------------------------------------------


def _store_json(row: object) -> dict:
    body = {"name": row["name"]}
    labels = json.loads(row["labels"])
    if labels:
        body["labels"] = labels
    return body


def _check_labels(labels: object) -> dict:
    if labels is None:
        return {}
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise errors.invalid("labels must be a map of strings to strings")
    if len(labels) > 64:
        raise errors.invalid("at most 64 labels may be set")
    return labels


def create_store(state: ServerState, name: StoreName, body: dict) -> dict:
    get_dataset(state, name.dataset)
    labels = _check_labels((body or {}).get("labels"))
    with state.catalog.write() as db:
        if db.execute("SELECT 1 FROM stores WHERE name=?", (str(name),)).fetchone():
            raise errors.already_exists(f"DICOM store {name.store} already exists")
        db.execute(
            "INSERT INTO stores (name, dataset, labels, create_time) VALUES (?,?,?,?)",
            (str(name), str(name.dataset), dumps(labels), now()),
        )
    return get_store(state, name)


def store_pk(state: ServerState, name: StoreName) -> int:
    row = state.catalog.one("SELECT pk FROM stores WHERE name=?", (str(name),))
    if row is None:
        raise errors.not_found(f"DICOM store {name.store} not found")
    return row[0]


def get_store(state: ServerState, name: StoreName) -> dict:
    row = state.catalog.one("SELECT * FROM stores WHERE name=?", (str(name),))
    if row is None:
        raise errors.not_found(f"DICOM store {name.store} not found")
    return _store_json(row)


def list_stores(state: ServerState, dataset: DatasetName, params: dict) -> dict:
    get_dataset(state, dataset)
    rows = state.catalog.read(
        "SELECT * FROM stores WHERE dataset=? ORDER BY name", (str(dataset),)
    )
    return page(params, rows, "dicomStores", _store_json)


def patch_store(state: ServerState, name: StoreName, body: dict, params: dict) -> dict:
    mask = [m.strip() for m in (params.get("updateMask") or "").split(",") if m.strip()]
    if not mask:
        raise errors.invalid("updateMask is required")
    unknown = [m for m in mask if m != "labels"]
    if unknown:
        raise errors.invalid(f"updateMask field not supported: {unknown[0]}")
    labels = _check_labels((body or {}).get("labels"))
    with state.catalog.write() as db:
        cur = db.execute("UPDATE stores SET labels=? WHERE name=?", (dumps(labels), str(name)))
        if cur.rowcount == 0:
            raise errors.not_found(f"DICOM store {name.store} not found")
    return get_store(state, name)


def delete_store(state: ServerState, name: StoreName) -> dict:
    pk = store_pk(state, name)
    with state.catalog.write() as db:
        db.execute("DELETE FROM instances WHERE store=?", (pk,))
        db.execute("DELETE FROM stores WHERE pk=?", (pk,))
    state.blobs.remove_store(pk)
    return {}


def store_metrics(state: ServerState, name: StoreName) -> dict:
    pk = store_pk(state, name)
    row = state.catalog.one(
        "SELECT COUNT(DISTINCT study_uid), COUNT(DISTINCT series_uid), COUNT(*),"
        " COALESCE(SUM(size), 0) FROM instances WHERE store=?",
        (pk,),
    )
    studies, series, instances, size = row
    # int64 fields are strings in the JSON mapping of the API.
    return {
        "name": str(name),
        "studyCount": str(studies),
        "seriesCount": str(series),
        "instanceCount": str(instances),
        "structuredStorageSizeBytes": "0",
        "blobStorageSizeBytes": str(size),
    }


def study_metrics(state: ServerState, name: StoreName, study_uid: str) -> dict:
    """``dicomWeb.studies.getStudyMetrics``: what a study holds, counted from the index
    (its ``(store, study_uid, series_uid)`` index bounds the work to the study's rows)
    and never from the files, so the cost is that of the study's index rows whatever
    its bytes, and the sums always agree with :func:`store_metrics`. Structured storage
    is "0" there too: this server keeps no separate metadata store to measure."""
    check_uid(study_uid, "StudyInstanceUID")
    pk = store_pk(state, name)
    row = state.catalog.one(
        "SELECT COUNT(DISTINCT series_uid), COUNT(*), COALESCE(SUM(size), 0)"
        " FROM instances WHERE store=? AND study_uid=?",
        (pk, study_uid),
    )
    series, instances, size = row
    if instances == 0:
        # No instance, no study: NOT_FOUND, as the WADO-RS routes answer for it.
        raise errors.not_found(f"study not found in DICOM store {name.store}")
    return {
        "study": f"{name}/dicomWeb/studies/{study_uid}",
        "seriesCount": str(series),
        "instanceCount": str(instances),
        "structuredStorageSizeBytes": "0",
        "blobStorageSizeBytes": str(size),
    }


def series_metrics(state: ServerState, name: StoreName, study_uid: str,
                   series_uid: str) -> dict:
    """``dicomWeb.studies.series.getSeriesMetrics``: the series-level twin of
    :func:`study_metrics`, so a client can size one series (e.g. to route or cost it)
    without retrieving it. A series UID under another study is not found, as in
    DICOMweb paths the series belongs to the study named before it."""
    check_uid(study_uid, "StudyInstanceUID")
    check_uid(series_uid, "SeriesInstanceUID")
    pk = store_pk(state, name)
    row = state.catalog.one(
        "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM instances"
        " WHERE store=? AND study_uid=? AND series_uid=?",
        (pk, study_uid, series_uid),
    )
    instances, size = row
    if instances == 0:
        raise errors.not_found(f"series not found in DICOM store {name.store}")
    return {
        "series": f"{name}/dicomWeb/studies/{study_uid}/series/{series_uid}",
        "instanceCount": str(instances),
        "structuredStorageSizeBytes": "0",
        "blobStorageSizeBytes": str(size),
    }
