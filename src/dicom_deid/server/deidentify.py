"""``dicomStores.deidentify`` and ``datasets.deidentify``: the engine applied to a store,
or to every DICOM store of a dataset, as one long-running operation.

The request is the API's ``DeidentifyDicomStoreRequest``: a ``destinationStore`` that
must already exist (as in the current v1 API), a ``config`` or a ``gcsConfigUri``,
and optionally ``filterConfig.resourcePathsGcsUri`` naming the studies, series or
instances to include. Instances are de-identified in worker processes (one per
core: the work is CPU-bound) into temp files, then checked and stored like any
upload, so the destination only ever holds complete instances. Every source
instance ends as a success or as a failure with a reason at the operation's
``logsUrl``; the reasons never quote a value from the instance.

UIDs and default date shifts are keyed by the server's own secret (``deid.key`` in
the data directory, created on first use), so de-identifying the same store twice
gives the same UIDs unless the config brings its own ``cryptoKey``.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import re
import secrets
import sqlite3
from pathlib import Path

from ..api_schema import ConfigError, validate
from ..engine.instance import DeidentifyError, deidentify_file
from ..engine.plan import Plan, build_plan
from ..engine.reading import UnreadableInstance
from . import errors, ingest, operations, resource_filter, resources, workers
from .names import DatasetName, StoreName, dataset_name, store_name
from .resources import store_pk
from .state import ServerState

METHOD = "google.cloud.healthcare.v1.dicom.DicomService.DeidentifyDicomStore"
DATASET_METHOD = "google.cloud.healthcare.v1.dataset.DatasetService.DeidentifyDataset"
RESPONSE = "type.googleapis.com/google.cloud.healthcare.v1.deidentify.DeidentifySummary"
_STORE = re.compile(r"projects/([^/]+)/locations/([^/]+)/datasets/([^/]+)/dicomStores/([^/]+)")
_DATASET = re.compile(r"projects/([^/]+)/locations/([^/]+)/datasets/([^/]+)")
_BATCH = 32


@functools.lru_cache(maxsize=8)
def server_key(data_dir: Path) -> bytes:
    """The server's secret for UIDs and default date shifts, created once per data dir."""
    path = data_dir / "deid.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    return base64.b64decode(path.read_text().strip())


def _config(body: dict) -> dict:
    if "config" in body and "gcsConfigUri" in body:
        raise errors.invalid("only one of config and gcsConfigUri can be specified")
    if "gcsConfigUri" not in body:
        return body.get("config") or {}
    try:
        config = json.loads(resource_filter.gcs_text(body["gcsConfigUri"], "gcsConfigUri"))
    except ValueError:
        raise errors.invalid("gcsConfigUri: the object is not JSON") from None
    return config


def _rows(state: ServerState, pk: int, filters: list | None) -> list:
    sql = ("SELECT pk, study_uid, series_uid, sop_uid, path FROM instances WHERE store=? "
           "ORDER BY pk")
    return resource_filter.select(state.catalog.read(sql, (pk,)), filters)


def _one(args: tuple[str, str, Plan]) -> str | None:
    """Runs in a worker process: de-identify one file; a failure reason or None."""
    src, dst, plan = args
    try:
        deidentify_file(src, dst, plan)
    except (UnreadableInstance, DeidentifyError) as exc:
        return str(exc)
    except OSError as exc:
        return f"could not read or write the instance ({exc.strerror})"
    return None


def _plan(state: ServerState, body: dict) -> Plan:
    try:
        return build_plan(_config(body), server_key(state.data_dir))
    except ConfigError as exc:
        raise errors.invalid(str(exc)) from None


def _run(state: ServerState, progress: operations.Progress, pool: workers.Pool,
         plan: Plan, rows: list, dest_pk: int, where: str = "") -> None:
    """De-identify ``rows`` into the store ``dest_pk``, a batch at a time: every row ends
    as one success or one failure (``where`` prefixes the failure's resource name).

    A batch's counts are written in the transaction that indexes its instances, so
    after a crash the success counter is exactly what the destination holds."""
    for i in range(0, len(rows), _BATCH):
        progress.check_cancel()
        batch = rows[i : i + _BATCH]
        temps = []
        for _ in batch:
            tmp = state.blobs.new_temp()
            tmp.close()
            temps.append(tmp.name)
        try:
            reasons = pool.map(_one, [(str(state.blobs.path(r["path"])), t, plan)
                                      for r, t in zip(batch, temps, strict=True)],
                               progress.check_cancel)
        except BaseException:
            for tmp in temps:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            raise
        outcomes, failures = [], []
        for row, tmp, reason in zip(batch, temps, reasons, strict=True):
            resource = (f"{where}studies/{row['study_uid']}/series/{row['series_uid']}"
                        f"/instances/{row['sop_uid']}")
            if reason is not None:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                failures.append((resource, reason))
                continue
            outcomes.append((resource, ingest.prepare(state, tmp)))
        ingest.store(state, dest_pk, [o for _, o in outcomes],
                     then=functools.partial(_account, progress, outcomes, failures))


def _account(progress: operations.Progress, outcomes: list[tuple[str, ingest.Outcome]],
             failures: list[tuple[str, str]], db: sqlite3.Connection) -> None:
    """Count a batch inside the transaction that stores it (``ingest.store``'s ``then``)."""
    stored = sum(1 for _, o in outcomes if o.ok)
    progress.tally(stored, failures + [(r, o.reason) for r, o in outcomes if not o.ok])
    progress.flush(db)


def start(state: ServerState, source: StoreName, body: dict) -> dict:
    body = body or {}
    try:
        validate(body, "DeidentifyDicomStoreRequest", "request")
    except ConfigError as exc:
        raise errors.invalid(str(exc)) from None
    src_pk = store_pk(state, source)
    dest = body.get("destinationStore")
    if not dest:
        raise errors.invalid("destinationStore is required")
    m = _STORE.fullmatch(dest.strip("/"))
    if not m:
        raise errors.invalid("destinationStore must be projects/{project}/locations/"
                             "{location}/datasets/{dataset}/dicomStores/{store}")
    dest_name = store_name(*m.groups())
    if (m[1], m[2]) != (source.dataset.project, source.dataset.location):
        raise errors.invalid("the destination store must be in the source's location")
    dest_pk = store_pk(state, dest_name)  # 404 if it does not exist
    if dest_pk == src_pk:
        raise errors.invalid("the destination store must differ from the source store")
    plan = _plan(state, body)
    filters = resource_filter.read_filter(body)

    def job(progress: operations.Progress) -> dict:
        rows = _rows(state, src_pk, filters)
        progress.expect(len(rows))
        with workers.Pool() as pool:
            _run(state, progress, pool, plan, rows, dest_pk)
        return {"@type": RESPONSE}

    return operations.start(state, source.dataset, METHOD, job, target=str(dest_name))


def start_dataset(state: ServerState, source: DatasetName, body: dict) -> dict:
    """``datasets.deidentify``: every DICOM store of ``source`` into a store of the same
    ID in a new dataset, as one operation whose counters and failure log cover all of
    them. FHIR and HL7v2 stores, which Google's method also copies, do not exist on this
    server. The destination dataset and its empty stores are created before the
    operation starts, so a second request for the same destination is refused at once
    (409) rather than racing the first."""
    body = body or {}
    try:
        validate(body, "DeidentifyDatasetRequest", "request")
    except ConfigError as exc:
        raise errors.invalid(str(exc)) from None
    source_row = resources.get_dataset(state, source)  # 404 if it does not exist
    dest = (body.get("destinationDataset") or "").strip("/")
    if not dest:
        raise errors.invalid("destinationDataset is required")
    m = _DATASET.fullmatch(dest)
    if not m:
        raise errors.invalid("destinationDataset must be projects/{project}/locations/"
                             "{location}/datasets/{dataset}")
    dest_name = dataset_name(*m.groups())
    if (dest_name.project, dest_name.location) != (source.project, source.location):
        raise errors.invalid("the destination dataset must be in the source dataset's "
                             "location: de-identifying across locations is not supported")
    plan = _plan(state, body)
    stores = state.catalog.read("SELECT pk, name FROM stores WHERE dataset=? ORDER BY name",
                                (str(source),))
    resources.create_dataset(state, dest_name,
                             {"timeZone": source_row["timeZone"]}
                             if "timeZone" in source_row else {})  # 409 if it exists
    pairs = []
    try:
        for row in stores:
            store_id = row["name"].rsplit("/", 1)[1]
            resources.create_store(state, StoreName(dest_name, store_id), {})
            pairs.append((row["pk"], store_pk(state, StoreName(dest_name, store_id)),
                          store_id))
    except BaseException:
        # All or nothing: a half-made destination would make the retry a 409.
        resources.delete_dataset(state, dest_name)
        raise

    def job(progress: operations.Progress) -> dict:
        work = [(_rows(state, src, None), dst, store_id) for src, dst, store_id in pairs]
        progress.expect(sum(len(rows) for rows, _, _ in work))
        with workers.Pool() as pool:
            for rows, dst, store_id in work:
                _run(state, progress, pool, plan, rows, dst,
                     where=f"dicomStores/{store_id}/dicomWeb/")
        return {"@type": RESPONSE}

    try:
        return operations.start(state, source, DATASET_METHOD, job, target=str(dest_name))
    except BaseException:
        resources.delete_dataset(state, dest_name)
        raise
