"""DICOMweb under ``.../dicomStores/{store}/dicomWeb/``: STOW-RS, QIDO-RS, WADO-RS.

Blocking work (parsing, fsync, SQLite, pixel decoding) runs in worker threads so
the event loop keeps serving other requests.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from anyio import to_thread
from pydicom.uid import ExplicitVRLittleEndian
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse

from . import errors, ingest, operations, pixels, qido
from .dicomjson import header
from .multipart import (
    Part,
    RelatedParser,
    content_type,
    files_length,
    new_boundary,
    stream_bytes,
    stream_sized_files,
)
from .names import StoreName, check_uid
from .resources import store_pk
from .state import ServerState
from .urls import base_url

DICOM_JSON = "application/dicom+json"
_MAX_REASON = 64


def _json(body: object, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status_code=status,
                    media_type=DICOM_JSON, headers=headers)


def _base(request: Request, store: StoreName) -> str:
    return f"{base_url(request)}/v1/{store}/dicomWeb"


# -- STOW-RS ------------------------------------------------------------------------


async def stow(request: Request, state: ServerState, store: StoreName,
               study_uid: str | None) -> Response:
    """STOW-RS in the forms Google's conformance statement accepts: a multipart/related
    body of Part 10 files, or one Part 10 file sent as the whole body with
    ``Content-Type: application/dicom`` (what Google's own samples send)."""
    pk = await to_thread.run_sync(store_pk, state, store)
    if study_uid is not None:
        check_uid(study_uid, "StudyInstanceUID")
    kind, params = content_type(request.headers.get("content-type"))
    if kind == "application/dicom":
        parts_of = _single_part
    elif kind == "multipart/related" and "boundary" in params:
        if params.get("type", "application/dicom").lower() != "application/dicom":
            raise errors.ApiError(415, "only application/dicom parts can be stored")
        parts_of = _multipart
    else:
        raise errors.ApiError(
            415, "STOW-RS needs Content-Type: application/dicom (one instance) or "
            'multipart/related; type="application/dicom"; boundary=...'
        )
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() \
            and int(declared) > state.max_body_bytes:
        raise errors.ApiError(413, f"request body is larger than {state.max_body_bytes} bytes")
    outcomes = await parts_of(request, state, params, study_uid)
    outcomes = await to_thread.run_sync(ingest.store, state, pk, outcomes)
    return _stow_response(request, store, outcomes)


async def _body_chunks(request: Request, state: ServerState) -> AsyncIterator[bytes]:
    """The request body as it arrives, refused with 413 once past ``--max-body-mb``."""
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > state.max_body_bytes:
            raise errors.ApiError(
                413, f"request body is larger than {state.max_body_bytes} bytes")
        yield chunk


async def _single_part(request: Request, state: ServerState, params: dict,
                       study_uid: str | None) -> list[ingest.Outcome]:
    """The whole body is one instance: written to a temp file as it streams in, then
    checked like one part of a multipart body."""
    temp = state.blobs.new_temp()
    try:
        with temp:
            async for chunk in _body_chunks(request, state):
                temp.write(chunk)
        if os.path.getsize(temp.name) == 0:
            raise errors.invalid("the request body is empty: send one DICOM Part 10 file")
    except BaseException:
        Path(temp.name).unlink(missing_ok=True)
        raise
    part = Part(temp.name, "application/dicom", complete=True)
    return [await to_thread.run_sync(_check_part, state, part, study_uid)]


async def _multipart(request: Request, state: ServerState, params: dict,
                     study_uid: str | None) -> list[ingest.Outcome]:
    """Each part is checked as soon as it is complete, while later parts still arrive."""
    parser = RelatedParser(params["boundary"], state.blobs)
    checks: list[asyncio.Future] = []  # one per part, started as soon as it is complete

    def check_completed() -> None:
        while len(checks) < len(parser.parts) and parser.parts[len(checks)].complete:
            checks.append(asyncio.ensure_future(
                to_thread.run_sync(_check_part, state, parser.parts[len(checks)], study_uid)))

    try:
        async for chunk in _body_chunks(request, state):
            parser.feed(chunk)
            check_completed()
        parts = parser.finish()
        if not parts:
            raise errors.invalid("the multipart/related body has no parts")
        check_completed()
        for part in parts[len(checks):]:  # cut off by the end of the body
            checks.append(asyncio.ensure_future(
                to_thread.run_sync(_check_part, state, part, study_uid)))
        return list(await asyncio.gather(*checks))
    except BaseException:
        await asyncio.gather(*checks, return_exceptions=True)
        parser.discard()
        raise


def _check_part(state: ServerState, part: Part, study_uid: str | None) -> ingest.Outcome:
    if not part.complete:
        return ingest.Outcome(part.temp_path).fail(
            ingest.CANNOT_UNDERSTAND, "incomplete part: the body ended early")
    if part.content_type != "application/dicom":
        return ingest.Outcome(part.temp_path).fail(
            ingest.CANNOT_UNDERSTAND, "part media type is not application/dicom")
    return ingest.prepare(state, part.temp_path, study_uid)


def _stow_response(request: Request, store: StoreName,
                   outcomes: list[ingest.Outcome]) -> Response:
    base = _base(request, store)
    stored, failed = [], []
    studies = set()
    for out in outcomes:
        item: dict = {}
        if out.sop_class_uid:
            item["00081150"] = {"vr": "UI", "Value": [out.sop_class_uid]}
        if out.sop_uid:
            item["00081155"] = {"vr": "UI", "Value": [out.sop_uid]}
        if out.ok:
            studies.add(out.study_uid)
            item["00081190"] = {"vr": "UR", "Value": [
                f"{base}/studies/{out.study_uid}/series/{out.row['series_uid']}"
                f"/instances/{out.sop_uid}"]}
            stored.append(item)
        else:
            item["00081197"] = {"vr": "US", "Value": [out.failure_code]}
            item["00000902"] = {"vr": "LO", "Value": [out.reason[:_MAX_REASON]]}
            failed.append(item)
    body: dict = {}
    if len(studies) == 1:
        body["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{studies.pop()}"]}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": stored}
    status = 200 if not failed else 202 if stored else 409
    return _json(body, status)


# -- QIDO-RS ------------------------------------------------------------------------


async def search(request: Request, state: ServerState, store: StoreName, level: str,
                 study_uid: str | None = None, series_uid: str | None = None) -> Response:
    for uid, what in ((study_uid, "StudyInstanceUID"), (series_uid, "SeriesInstanceUID")):
        if uid is not None:
            check_uid(uid, what)

    def work() -> tuple[list[dict], bool]:
        pk = store_pk(state, store)
        q = qido.parse(level, pk, list(request.query_params.multi_items()),
                       study_uid, series_uid)
        rows, paths, more = qido.run(state.catalog, q)
        if q.extra_tags or (q.include_all and level == "instance"):
            for row, rel in zip(rows, paths, strict=True):
                extra = header(state.blobs.path(rel), None if q.include_all and
                               level == "instance" else q.extra_tags)
                for tag, elem in extra.items():
                    row.setdefault(tag, elem)
        return [dict(sorted(r.items())) for r in rows], more

    rows, more = await to_thread.run_sync(work)
    if not rows:
        # PS3.18 and Google's conformance statement: a search that matches nothing
        # answers 204 No Content, not 200 with an empty array.
        return Response(status_code=204)
    headers = {}
    if more:
        headers["Warning"] = (
            '299 healthcare.googleapis.com "There are additional results that can be '
            'requested. Use offset to page through them."'
        )
    return _json(rows, 200, headers)


# -- WADO-RS ------------------------------------------------------------------------


def _instances(state: ServerState, store: StoreName, study: str, series: str | None,
               sop: str | None) -> list:
    pk = store_pk(state, store)
    sql = "SELECT * FROM instances WHERE store=? AND study_uid=?"
    args: list = [pk, study]
    if series is not None:
        sql += " AND series_uid=?"
        args.append(series)
    if sop is not None:
        sql += " AND sop_uid=?"
        args.append(sop)
    rows = state.catalog.read(sql + " ORDER BY pk", args)
    if not rows:
        what = "instance" if sop else "series" if series else "study"
        raise errors.not_found(f"{what} not found in DICOM store {store.store}")
    return rows


AS_STORED = "*"
# Stored syntaxes that DICOMweb does not use on the wire (PS3.18 8.7.3): without an
# explicit transfer-syntax they are sent as Explicit VR Little Endian.
_NOT_ON_THE_WEB = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}


def _by_preference(accept: str) -> list[tuple[str, dict[str, str]]]:
    """The items of an Accept header, most preferred first (RFC 9110 ``q``, client order
    among equals), without those the client refuses (``q=0``)."""
    items = []
    for item in accept.split(","):
        kind, params = content_type(item)
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            q = 1.0
        if q > 0:
            items.append((-q, len(items), kind, params))
    return [(kind, params) for _, _, kind, params in sorted(items)]


@dataclass(frozen=True)
class Wanted:
    """What a retrieve's Accept header asks for: one bare Part 10 file (``single``, the
    ``application/dicom`` form Google accepts for an instance) or a multipart body, and
    the transfer syntax: a UID, ``*`` (as stored) or None (the default)."""

    single: bool
    syntax: str | None


def _accepted(accept: str | None, instance: bool) -> Wanted:
    """The first Accept item this server can answer, in the client's order.

    Google's conformance statement: multipart/related; type="application/dicom" for
    studies, series and instances; the single-part application/dicom only for an
    instance ("not part of the official DICOMweb standard").
    """
    if not accept:
        return Wanted(False, None)
    single_refused = False
    for kind, params in _by_preference(accept):
        inner = params.get("type", "").lower()
        if kind in ("*/*", "multipart/related") and inner in ("", "application/dicom", "*/*"):
            return Wanted(False, params.get("transfer-syntax"))
        if kind == "application/dicom":
            if instance:
                return Wanted(True, params.get("transfer-syntax"))
            single_refused = True
    if single_refused:
        raise errors.ApiError(
            406, "Accept: application/dicom (a single part) is for one instance; a study "
            'or series is sent as multipart/related; type="application/dicom"')
    raise errors.ApiError(
        406, 'retrieve supports Accept: multipart/related; type="application/dicom"'
        + (" or application/dicom" if instance else "")
    )


def _target(asked: str | None, stored: str) -> str | None:
    """The syntax to send an instance in, or None to send the stored bytes."""
    if asked in (AS_STORED, stored):
        return None
    if asked is None:
        # The default is Explicit VR Little Endian; compressed instances are sent as
        # stored (the API would decompress them; that costs more than it gives here).
        return ExplicitVRLittleEndian if stored in _NOT_ON_THE_WEB else None
    return asked


async def retrieve(request: Request, state: ServerState, store: StoreName, study: str,
                   series: str | None = None, sop: str | None = None) -> Response:
    for uid in (study, series, sop):
        if uid is not None:
            check_uid(uid, "UID")
    wanted = _accepted(request.headers.get("accept"), instance=sop is not None)
    rows = await to_thread.run_sync(_instances, state, store, study, series, sop)
    targets = [_target(wanted.syntax, r["transfer_syntax"]) for r in rows]
    if wanted.single:
        return await _single_instance(state, rows[0], targets[0])
    boundary = new_boundary()
    media = f'multipart/related; type="application/dicom"; boundary={boundary}'
    if not any(targets):
        files = [(f"application/dicom; transfer-syntax={r['transfer_syntax']}",
                  state.blobs.path(r["path"]), r["size"]) for r in rows]
        return StreamingResponse(
            stream_sized_files(boundary, files), media_type=media,
            headers={"content-length": str(files_length(boundary, files))})

    def transcode_all() -> list[tuple[str, bytes]]:
        out = []
        for row, target in zip(rows, targets, strict=True):
            path = state.blobs.path(row["path"])
            if target is None:
                out.append((f"application/dicom; transfer-syntax={row['transfer_syntax']}",
                            path.read_bytes()))
            else:
                out.append((f"application/dicom; transfer-syntax={target}",
                            pixels.transcode(path, target)))
        return out

    parts = await to_thread.run_sync(transcode_all)
    return StreamingResponse(stream_bytes(boundary, parts), media_type=media)


async def _single_instance(state: ServerState, row: object, target: str | None) -> Response:
    """One instance as the whole body, a Part 10 file a client can save as ``.dcm``."""
    path = state.blobs.path(row["path"])
    if target is None:
        if not path.exists():  # deleted since it was looked up
            raise errors.not_found("instance not found")
        return FileResponse(path, media_type="application/dicom; transfer-syntax="
                            f"{row['transfer_syntax']}")
    data = await to_thread.run_sync(pixels.transcode, path, target)
    return Response(data, media_type=f"application/dicom; transfer-syntax={target}")


async def metadata(request: Request, state: ServerState, store: StoreName, study: str,
                   series: str | None = None, sop: str | None = None) -> Response:
    def work() -> list[dict]:
        rows = _instances(state, store, study, series, sop)
        return [header(state.blobs.path(r["path"])) for r in rows]

    return _json(await to_thread.run_sync(work))


async def frames(request: Request, state: ServerState, store: StoreName, study: str,
                 series: str, sop: str, spec: str) -> Response:
    def work() -> tuple[str, list[bytes]]:
        row = _instances(state, store, study, series, sop)[0]
        return pixels.frames(state.blobs.path(row["path"]), spec)

    kind, data = await to_thread.run_sync(work)
    boundary = new_boundary()
    return StreamingResponse(
        stream_bytes(boundary, [(kind, d) for d in data]),
        media_type=f'multipart/related; type="{kind}"; boundary={boundary}',
    )


def _render_type(accept: str | None) -> str:
    for kind, _ in _by_preference(accept or "image/jpeg"):
        if kind in ("image/png", "image/jpeg"):
            return kind
        if kind in ("*/*", "image/*"):
            return "image/jpeg"
    raise errors.ApiError(406, "rendered images are available as image/jpeg or image/png")


async def rendered(request: Request, state: ServerState, store: StoreName, study: str,
                   series: str, sop: str, frame: str | None) -> Response:
    kind = _render_type(request.headers.get("accept"))
    try:
        number = int(frame) if frame is not None else 1
    except ValueError:
        raise errors.invalid("frame number must be an integer") from None

    def work() -> bytes:
        row = _instances(state, store, study, series, sop)[0]
        return pixels.rendered(state.blobs.path(row["path"]), number, kind)

    return Response(await to_thread.run_sync(work), media_type=kind)


# -- delete ---------------------------------------------------------------------------


async def delete(request: Request, state: ServerState, store: StoreName, study: str,
                 series: str | None = None, sop: str | None = None) -> Response:
    """Study and series deletes are long-running on the API; an instance delete is not."""
    rows = await to_thread.run_sync(_instances, state, store, study, series, sop)
    pks = [r["pk"] for r in rows]
    paths = [r["path"] for r in rows]

    def remove(progress: operations.Progress | None = None) -> dict:
        with state.catalog.write() as db:
            db.executemany("DELETE FROM instances WHERE pk=?", [(p,) for p in pks])
        state.blobs.remove(paths)
        if progress is not None:
            progress.ok(len(pks))
        return {}

    if sop is not None:
        await to_thread.run_sync(remove)
        return JSONResponse({})
    method = "DeleteSeries" if series else "DeleteStudy"
    op = await to_thread.run_sync(operations.start, state, store.dataset, method, remove)
    return JSONResponse(op)


