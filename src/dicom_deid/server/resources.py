"""Datasets and DICOM stores: create, get, list, patch, delete; store, study and series
metrics."""

from __future__ import annotations

import json
import re
import unicodedata
import zoneinfo

from ..api_schema import ConfigError, validate
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


def check_schema(body: object, schema: str) -> dict:
    """``body`` checked against the discovery document's ``schema`` (400 naming the
    field, never quoting a value)."""
    try:
        validate(body if body is not None else {}, schema, schema[0].lower() + schema[1:])
    except ConfigError as exc:
        raise errors.invalid(str(exc)) from None
    return body or {}


def _time_zone(value: object) -> str | None:
    """Google: "a valid IANA time zone name such as America/New_York or empty"."""
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise errors.invalid("timeZone must be an IANA time zone name")
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise errors.invalid("timeZone is not an IANA time zone name") from None
    return value


def _update_mask(params: dict, allowed: tuple[str, ...], what: str) -> list[str]:
    """The ``updateMask`` of a patch: required, and only of fields that may change."""
    mask = [m.strip() for m in (params.get("updateMask") or "").split(",") if m.strip()]
    if not mask:
        raise errors.invalid("updateMask is required")
    for field in mask:
        if field not in allowed:
            raise errors.invalid(f"updateMask field not supported for a {what}: "
                                 f"{errors.quote(field)} (fields that can be updated: "
                                 f"{', '.join(allowed)})")
    return mask


def create_dataset(state: ServerState, name: DatasetName, body: dict) -> dict:
    """Insert the dataset; the new Dataset. Google answers ``datasets.create`` with a
    long-running operation: the HTTP layer (``app``) wraps this in one, so that this
    module stays plain CRUD that ``operations`` can read datasets from."""
    tz = _time_zone(check_schema(body, "Dataset").get("timeZone"))
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


def patch_dataset(state: ServerState, name: DatasetName, body: dict, params: dict) -> dict:
    """``datasets.patch``: the time zone is the one field of a v1 Dataset a client can
    change (``name`` and the ``satisfies*`` flags are output only, ``encryptionSpec``
    is fixed at creation)."""
    _update_mask(params, ("timeZone",), "dataset")
    tz = _time_zone(check_schema(body, "Dataset").get("timeZone"))
    with state.catalog.write() as db:
        cur = db.execute("UPDATE datasets SET time_zone=? WHERE name=?", (tz, str(name)))
        if cur.rowcount == 0:
            raise errors.not_found(f"dataset {name.dataset} not found")
    return get_dataset(state, name)


def delete_dataset(state: ServerState, name: DatasetName) -> dict:
    get_dataset(state, name)
    pks: list[int] = []
    with state.catalog.write() as db:
        for (pk,) in db.execute("SELECT pk FROM stores WHERE dataset=?", (str(name),)):
            pks.append(pk)
            db.execute("DELETE FROM instances WHERE store=?", (pk,))
        db.execute("DELETE FROM stores WHERE dataset=?", (str(name),))
        db.execute("DELETE FROM datasets WHERE name=?", (str(name),))
        state.catalog.drop_settings(db, str(name))
    for pk in pks:
        state.blobs.remove_store(pk)
    return {}


# -- DICOM stores -------------------------------------------------------------------


#: DicomStore fields a client sets that this server keeps and returns but does not act
#: on: there is no Pub/Sub or BigQuery here, so no message or row is ever sent.
STORED_ONLY = ("notificationConfig", "notificationConfigs", "streamConfigs")
# Pub/Sub: a topic ID is 3-255 characters, starting with a letter; project IDs are at
# most 30 characters (100 leaves room for domain-scoped ones, "example.com:project").
_TOPIC = re.compile(r"projects/[^/]{1,100}/topics/[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}")
# The discovery document: "BigQuery URI to a table, up to 2000 characters long".
_TABLE = re.compile(r"bq://[^.]+\.[^.]+\.[^.]+")
_MAX_TABLE_URI = 2000
#: Google documents no count for either list; a store with more destinations than this
#: is not a configuration anyone means, and each one is kept in the index.
MAX_CONFIGS = 100


def _store_json(state: ServerState, row: object) -> dict:
    body = {"name": row["name"]}
    labels = json.loads(row["labels"])
    if labels:
        body["labels"] = labels
    settings = state.catalog.settings(row["name"])
    body.update({k: settings[k] for k in STORED_ONLY if k in settings})
    return body


def _check_topic(field: str, topic: object) -> None:
    if topic and not _TOPIC.fullmatch(topic):
        raise errors.invalid(f"{field} must be projects/{{project}}/topics/{{topic}}, the "
                             "topic ID 3 to 255 characters starting with a letter")


def _check_table(field: str, table: object) -> None:
    if not table or len(table) > _MAX_TABLE_URI or not _TABLE.fullmatch(table):
        raise errors.invalid(f"{field} must be bq://{{project}}.{{dataset}}.{{table}}, "
                             f"at most {_MAX_TABLE_URI} characters")


def _stored_only(body: dict) -> dict:
    """The notification and streaming configs of a DicomStore body, checked for the
    resource names Google requires (a Pub/Sub topic, a BigQuery table URI), their
    lengths, and a bounded count: they are kept, so nothing in them may grow without
    limit."""
    if body.get("notificationConfig") is not None:
        _check_topic("notificationConfig.pubsubTopic",
                     body["notificationConfig"].get("pubsubTopic"))
    for field in ("notificationConfigs", "streamConfigs"):
        if len(body.get(field) or ()) > MAX_CONFIGS:
            raise errors.invalid(f"{field} may hold at most {MAX_CONFIGS} configs")
    for i, item in enumerate(body.get("notificationConfigs") or ()):
        _check_topic(f"notificationConfigs[{i}].pubsubTopic", item.get("pubsubTopic"))
    tables = set()
    for i, item in enumerate(body.get("streamConfigs") or ()):
        table = (item.get("bigqueryDestination") or {}).get("tableUri")
        _check_table(f"streamConfigs[{i}].bigqueryDestination.tableUri", table)
        if table in tables:  # "Each config must contain a unique destination."
            raise errors.invalid(f"streamConfigs[{i}] repeats the destination of an "
                                 "earlier config")
        tables.add(table)
    return {k: body[k] for k in STORED_ONLY if body.get(k)}


#: Google's label rules (DicomStore.labels): at most 64 labels; keys 1-63 characters,
#: values 0-63, each at most 128 bytes of UTF-8, of lowercase letters, letters of
#: caseless scripts, digits, ``_`` and ``-``, a key starting with a letter. (The
#: discovery document prints the key pattern garbled, ``\p{Ll}\p{Lo}{0,62}``: this is
#: the rule Google's label documentation gives, ``[\p{Ll}\p{Lo}][\p{Ll}\p{Lo}\p{N}_-]{0,62}``.)
MAX_LABELS = 64
_LABEL_CHARS = 63
_LABEL_BYTES = 128


def _label_char(ch: str) -> bool:
    return ch in "_-" or unicodedata.category(ch) in ("Ll", "Lo", "Nd", "Nl", "No")


def _label_ok(text: str, key: bool) -> bool:
    if len(text) > _LABEL_CHARS or len(text.encode("utf-8")) > _LABEL_BYTES:
        return False
    if key and (not text or unicodedata.category(text[0]) not in ("Ll", "Lo")):
        return False
    return all(_label_char(ch) for ch in text)


def _check_labels(labels: object) -> dict:
    """The labels of a DicomStore body, by Google's rules; errors say which rule, never
    the label (a key or value could be anything a client typed)."""
    if labels is None:
        return {}
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise errors.invalid("labels must be a map of strings to strings")
    if len(labels) > MAX_LABELS:
        raise errors.invalid(f"at most {MAX_LABELS} labels may be set")
    for i, (key, value) in enumerate(labels.items()):
        if not _label_ok(key, key=True):
            raise errors.invalid(
                f"label key {i + 1} must be 1 to 63 lowercase letters, digits, '_' or '-' "
                "(at most 128 bytes of UTF-8), starting with a letter")
        if not _label_ok(value, key=False):
            raise errors.invalid(
                f"label value {i + 1} must be at most 63 lowercase letters, digits, '_' or "
                "'-' (at most 128 bytes of UTF-8)")
    return labels


def create_store(state: ServerState, name: StoreName, body: dict) -> dict:
    get_dataset(state, name.dataset)
    body = check_schema(body, "DicomStore")
    labels = _check_labels(body.get("labels"))
    settings = _stored_only(body)
    with state.catalog.write() as db:
        if db.execute("SELECT 1 FROM stores WHERE name=?", (str(name),)).fetchone():
            raise errors.already_exists(f"DICOM store {name.store} already exists")
        db.execute(
            "INSERT INTO stores (name, dataset, labels, create_time) VALUES (?,?,?,?)",
            (str(name), str(name.dataset), dumps(labels), now()),
        )
        state.catalog.drop_settings(db, str(name))
        for field, value in settings.items():
            state.catalog.put_setting(db, str(name), field, value)
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
    return _store_json(state, row)


def list_stores(state: ServerState, dataset: DatasetName, params: dict) -> dict:
    get_dataset(state, dataset)
    rows = state.catalog.read(
        "SELECT * FROM stores WHERE dataset=? ORDER BY name", (str(dataset),)
    )
    return page(params, rows, "dicomStores", lambda r: _store_json(state, r))


def patch_store(state: ServerState, name: StoreName, body: dict, params: dict) -> dict:
    """``dicomStores.patch`` of the fields in ``updateMask``; a field in the mask but not
    in the body is cleared, as a FieldMask update does."""
    mask = _update_mask(params, ("labels", *STORED_ONLY), "DICOM store")
    body = check_schema(body, "DicomStore")
    labels = _check_labels(body.get("labels"))
    settings = _stored_only(body)
    with state.catalog.write() as db:
        if not db.execute("SELECT 1 FROM stores WHERE name=?", (str(name),)).fetchone():
            raise errors.not_found(f"DICOM store {name.store} not found")
        if "labels" in mask:
            db.execute("UPDATE stores SET labels=? WHERE name=?", (dumps(labels), str(name)))
        for field in STORED_ONLY:
            if field in mask:
                state.catalog.put_setting(db, str(name), field, settings.get(field))
    return get_store(state, name)


def delete_store(state: ServerState, name: StoreName) -> dict:
    pk = store_pk(state, name)
    with state.catalog.write() as db:
        db.execute("DELETE FROM instances WHERE store=?", (pk,))
        db.execute("DELETE FROM stores WHERE pk=?", (pk,))
        state.catalog.drop_settings(db, str(name))
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
