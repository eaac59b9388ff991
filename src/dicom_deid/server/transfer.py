"""``dicomStores.import`` from and ``dicomStores.export`` to Cloud Storage.

Storage is reached with the real ``google-cloud-storage`` client, which talks to a
local emulator when ``STORAGE_EMULATOR_HOST`` is set (as in tests and the demo).
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor

import re2
from google.api_core import exceptions as gexc

from ..gcs import client, iter_objects
from . import errors, ingest, operations, pixels, resource_filter
from .names import StoreName
from .resource_filter import split_uri
from .resources import check_schema, store_pk
from .state import ServerState

IMPORT_METHOD = "google.cloud.healthcare.v1.dicom.DicomService.ImportDicomData"
EXPORT_METHOD = "google.cloud.healthcare.v1.dicom.DicomService.ExportDicomData"
_UPLOAD_THREADS = 4
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


def _pattern(path: str) -> re2._Regexp:
    """Cloud Healthcare wildcards: ``*`` within a path segment, ``**`` across, ``?`` one char.

    Compiled by RE2, which matches in time linear in the name: as a Python regex,
    ``*a*a*a...`` backtracked over every split of a long object name (the QIDO wildcard
    freeze, in the import operation)."""
    out = []
    i = 0
    while i < len(path):
        if path.startswith("**", i):
            out.append(".*")
            i += 2
        elif path[i] == "*":
            out.append("[^/]*")
            i += 1
        elif path[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(path[i]))
            i += 1
    return re2.compile("".join(out), _RE2_OPTIONS)


def start_import(state: ServerState, store: StoreName, body: dict) -> dict:
    pk = store_pk(state, store)
    body = check_schema(body, "ImportDicomDataRequest")
    uri = (body.get("gcsSource") or {}).get("uri")
    if not uri:
        raise errors.invalid("gcsSource.uri is required")
    bucket_name, path = split_uri(uri, "gcsSource.uri")
    wild = min([i for i in (path.find("*"), path.find("?")) if i >= 0], default=-1)

    def job(progress: operations.Progress) -> dict:
        gcs = client()
        bucket = gcs.bucket(bucket_name)
        try:
            if wild < 0:
                names = [path] if path and bucket.blob(path).exists() else []
                if not names and (not path or path.endswith("/")):
                    names = [n for n, _ in iter_objects(gcs, bucket_name, path)]
            else:
                pattern = _pattern(path)
                names = [n for n, _ in iter_objects(gcs, bucket_name, path[:wild])
                         if pattern.fullmatch(n)]
        except gexc.NotFound:
            raise errors.not_found(f"bucket {bucket_name} not found") from None
        names = [n for n in names if not n.endswith("/")]
        if not names:
            raise errors.not_found("no Cloud Storage objects match gcsSource.uri")
        progress.expect(len(names))
        for i in range(0, len(names), 32):
            progress.check_cancel()
            batch = []
            for name in names[i : i + 32]:
                tmp = state.blobs.new_temp()
                try:
                    bucket.blob(name).download_to_file(tmp)
                except gexc.GoogleAPIError:
                    tmp.close()
                    os.unlink(tmp.name)
                    progress.failed(f"gs://{bucket_name}/{name}", "could not read the object")
                    continue
                tmp.close()
                batch.append((name, ingest.prepare(state, tmp.name)))
            ingest.store(state, pk, [o for _, o in batch])
            for name, out in batch:
                if out.ok:
                    progress.ok()
                else:
                    progress.failed(f"gs://{bucket_name}/{name}", out.reason)
        return {"@type": "type.googleapis.com/google.cloud.healthcare.v1.dicom."
                         "ImportDicomDataResponse"}

    return operations.start(state, store.dataset, IMPORT_METHOD, job)


#: Object name extensions, as the discovery document's ``mimeType`` description lists
#: them: ``.../{instance_id}[/{frame_number}].{extension}``, the frame number only for
#: multi-frame instances.
EXTENSIONS = {"dicom": "dcm", "png": "png", "jpeg": "jpg"}


def _export_format(mime: str | None) -> tuple[str, str | None]:
    """(kind, transfer syntax) for an export mimeType; kind is dicom, png or jpeg."""
    if not mime:
        return "dicom", None
    kind, _, rest = mime.partition(";")
    kind = kind.strip().lower()
    if kind == "application/dicom":
        ts = None
        for param in rest.split(";"):
            k, _, v = param.partition("=")
            if k.strip().lower() == "transfer-syntax":
                ts = v.strip().strip('"')
        return "dicom", None if ts in (None, "", "*") else ts
    if kind in ("image/png", "image/jpeg"):
        return kind.split("/")[1], None
    raise errors.invalid(
        "gcsDestination.mimeType must be application/dicom[; transfer-syntax=...], "
        "image/png or image/jpeg"
    )


def start_export(state: ServerState, store: StoreName, body: dict) -> dict:
    pk = store_pk(state, store)
    body = check_schema(body, "ExportDicomDataRequest")
    if body.get("bigqueryDestination"):
        raise errors.ApiError(501, "export to BigQuery is not available on the local server")
    dest = body.get("gcsDestination") or {}
    prefix_uri = dest.get("uriPrefix")
    if not prefix_uri:
        raise errors.invalid("gcsDestination.uriPrefix is required")
    bucket_name, prefix = split_uri(prefix_uri, "gcsDestination.uriPrefix")
    prefix = prefix.rstrip("/")
    kind, ts = _export_format(dest.get("mimeType"))
    if ts is not None and ts not in pixels.UNCOMPRESSED:
        raise errors.invalid(f"export to transfer syntax {ts} is not supported")
    # The same filter as de-identification's: an incremental export writes only the
    # instances a run added, into the folder that holds the earlier runs' objects.
    filters = resource_filter.read_filter(body)

    def job(progress: operations.Progress) -> dict:
        gcs = client()
        bucket = gcs.bucket(bucket_name)
        try:
            if not bucket.exists():
                raise errors.not_found(f"bucket {bucket_name} not found")
        except gexc.Forbidden:
            raise errors.ApiError(403, f"no access to bucket {bucket_name}") from None
        rows = resource_filter.select(state.catalog.read(
            "SELECT pk, study_uid, series_uid, sop_uid, path, transfer_syntax, number_of_frames "
            "FROM instances WHERE store=? ORDER BY pk", (pk,)), filters)
        progress.expect(len(rows))

        def one(row: object) -> None:
            progress.check_cancel()
            stem = "/".join(p for p in (prefix, row["study_uid"], row["series_uid"],
                                        row["sop_uid"]) if p)
            resource = f"studies/{row['study_uid']}/series/{row['series_uid']}" \
                       f"/instances/{row['sop_uid']}"
            src = state.blobs.path(row["path"])
            try:
                if kind == "dicom" and (ts is None or ts == row["transfer_syntax"]):
                    bucket.blob(f"{stem}.dcm").upload_from_filename(
                        src, content_type="application/dicom")
                elif kind == "dicom":
                    bucket.blob(f"{stem}.dcm").upload_from_string(
                        pixels.transcode(src, ts), content_type="application/dicom")
                else:
                    frames = row["number_of_frames"] or 1
                    ext = EXTENSIONS[kind]
                    for n in range(1, frames + 1):
                        name = f"{stem}.{ext}" if frames == 1 else f"{stem}/{n}.{ext}"
                        bucket.blob(name).upload_from_string(
                            pixels.rendered(src, n, f"image/{kind}"),
                            content_type=f"image/{kind}")
            except errors.ApiError as exc:
                progress.failed(resource, exc.message)
                return
            except (gexc.GoogleAPIError, OSError) as exc:
                progress.failed(resource, f"could not write the object ({type(exc).__name__})")
                return
            progress.ok()

        with ThreadPoolExecutor(_UPLOAD_THREADS) as pool:
            list(pool.map(one, rows))
        return {"@type": "type.googleapis.com/google.cloud.healthcare.v1.dicom."
                         "ExportDicomDataResponse"}

    return operations.start(state, store.dataset, EXPORT_METHOD, job)
