"""``dicomStores.deidentify``: the engine applied to a store, as a long-running operation.

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
import json
import multiprocessing
import os
import re
import secrets
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path

from google.api_core import exceptions as gexc

from ..api_schema import ConfigError, validate
from ..engine.instance import DeidentifyError, deidentify_file
from ..engine.plan import Plan, build_plan
from ..engine.reading import UnreadableInstance
from . import errors, ingest, operations
from .names import StoreName, store_name
from .resources import store_pk
from .state import ServerState
from .transfer import client, split_uri

METHOD = "google.cloud.healthcare.v1.dicom.DicomService.DeidentifyDicomStore"
RESPONSE = "type.googleapis.com/google.cloud.healthcare.v1.deidentify.DeidentifySummary"
_STORE = re.compile(r"projects/([^/]+)/locations/([^/]+)/datasets/([^/]+)/dicomStores/([^/]+)")
_PATH = re.compile(r"/?studies/([0-9.]+)(?:/series/([0-9.]+)(?:/instances/([0-9.]+))?)?/?")
_BATCH = 32


@lru_cache(maxsize=8)
def server_key(data_dir: Path) -> bytes:
    """The server's secret for UIDs and default date shifts, created once per data dir."""
    path = data_dir / "deid.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    return base64.b64decode(path.read_text().strip())


def _gcs_text(uri: str, field: str) -> str:
    bucket_name, path = split_uri(uri, field)
    try:
        return client().bucket(bucket_name).blob(path).download_as_text()
    except gexc.NotFound:
        raise errors.not_found(f"{field}: object not found") from None
    except gexc.GoogleAPIError:
        raise errors.invalid(f"{field}: the object could not be read") from None


def _config(body: dict) -> dict:
    if "config" in body and "gcsConfigUri" in body:
        raise errors.invalid("only one of config and gcsConfigUri can be specified")
    if "gcsConfigUri" not in body:
        return body.get("config") or {}
    try:
        config = json.loads(_gcs_text(body["gcsConfigUri"], "gcsConfigUri"))
    except ValueError:
        raise errors.invalid("gcsConfigUri: the object is not JSON") from None
    return config


def _filters(uri: str) -> list[tuple[str, str | None, str | None]]:
    out = []
    for n, line in enumerate(_gcs_text(uri, "filterConfig.resourcePathsGcsUri").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        m = _PATH.fullmatch(line)
        if not m:
            raise errors.invalid(f"filterConfig.resourcePathsGcsUri: line {n} is not "
                                 "/studies/{uid}[/series/{uid}[/instances/{uid}]]")
        out.append((m[1], m[2], m[3]))
    return out


def _rows(state: ServerState, pk: int, filters: list | None) -> list:
    sql = ("SELECT pk, study_uid, series_uid, sop_uid, path FROM instances WHERE store=? "
           "ORDER BY pk")
    rows = state.catalog.read(sql, (pk,))
    if filters is None:
        return rows
    studies = {f[0] for f in filters if f[1] is None}
    series = {(f[0], f[1]) for f in filters if f[1] is not None and f[2] is None}
    instances = {f for f in filters if f[2] is not None}
    return [r for r in rows if r["study_uid"] in studies
            or (r["study_uid"], r["series_uid"]) in series
            or (r["study_uid"], r["series_uid"], r["sop_uid"]) in instances]


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
    config = _config(body)
    try:
        plan = build_plan(config, server_key(state.data_dir))
    except ConfigError as exc:
        raise errors.invalid(str(exc)) from None
    uri = (body.get("filterConfig") or {}).get("resourcePathsGcsUri")
    filters = _filters(uri) if uri else None

    def job(progress: operations.Progress) -> dict:
        rows = _rows(state, src_pk, filters)
        progress.expect(len(rows))
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(os.cpu_count() or 1, mp_context=context) as pool:
            for i in range(0, len(rows), _BATCH):
                progress.check_cancel()
                batch = rows[i : i + _BATCH]
                temps = []
                for _ in batch:
                    tmp = state.blobs.new_temp()
                    tmp.close()
                    temps.append(tmp.name)
                reasons = list(pool.map(
                    _one, [(str(state.blobs.path(r["path"])), t, plan)
                           for r, t in zip(batch, temps, strict=True)]))
                outcomes = []
                for row, tmp, reason in zip(batch, temps, reasons, strict=True):
                    resource = (f"studies/{row['study_uid']}/series/{row['series_uid']}"
                                f"/instances/{row['sop_uid']}")
                    if reason is not None:
                        if os.path.exists(tmp):
                            os.unlink(tmp)
                        progress.failed(resource, reason)
                        continue
                    outcomes.append((resource, ingest.prepare(state, tmp)))
                ingest.store(state, dest_pk, [o for _, o in outcomes])
                for resource, out in outcomes:
                    if out.ok:
                        progress.ok()
                    else:
                        progress.failed(resource, out.reason)
        return {"@type": RESPONSE}

    return operations.start(state, source.dataset, METHOD, job)
