"""The ASGI application: one dispatcher over Google-style resource paths.

Resource names carry ``:verb`` suffixes (``dicomStores/x:import``) that ordinary
path routing does not model well, so paths are matched against the table below on
the raw, still-encoded path and each segment is decoded on its own: an encoded
``/`` inside an ID is then refused by the ID rules instead of changing the route.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

from anyio import to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import (
    audit,
    deidentify,
    dicomweb,
    errors,
    iam,
    methods,
    operations,
    resources,
    transfer,
)
from .json_body import json_body
from .names import DatasetName, StoreName, dataset_name, location, store_name
from .recovery import recover
from .state import DEFAULT_MAX_BODY, ServerState
from .urls import base_url

log = logging.getLogger("dicom_deid.server")

_SEG = r"([^/:]+)"
_LOC = rf"projects/{_SEG}/locations/{_SEG}"
_DS = rf"{_LOC}/datasets/{_SEG}"
_ST = rf"{_DS}/dicomStores/{_SEG}"
_WEB = rf"{_ST}/dicomWeb"
_UID = r"([^/:]+)"

Handler = Callable[..., Awaitable[Response]]
ROUTES: list[tuple[str, re.Pattern, str]] = []
#: What the audit trail calls each handler (by name): Google's RPC name and its log.
RPCS: dict[str, audit.Rpc] = {}


def route(method: str, pattern: str, rpc: audit.Rpc) -> Callable[[Handler], Handler]:
    """Serve ``method`` on paths matching ``pattern``; ``rpc`` names the call in the
    audit trail (required, so no route is ever served unaudited or misnamed)."""
    def register(fn: Handler) -> Handler:
        ROUTES.append((method, re.compile(pattern), fn.__name__))
        RPCS[fn.__name__] = rpc
        return fn

    return register


def _params(request: Request) -> dict:
    return dict(request.query_params)


async def _sync(fn: Callable, *args: object) -> Response:
    return JSONResponse(await to_thread.run_sync(fn, *args))


def _ds(a: list[str]) -> DatasetName:
    return dataset_name(*a[:3])


def _st(a: list[str]) -> StoreName:
    return store_name(*a[:4])


def _base(request: Request) -> str:
    return base_url(request)


CREATE_DATASET = "google.cloud.healthcare.v1.dataset.DatasetService.CreateDataset"


def create_dataset(state: ServerState, name: DatasetName, body: dict) -> dict:
    """``datasets.create`` as Google answers it: a long-running operation (already done
    here) whose ``response`` is the dataset, so clients written against this server
    wait for the operation as they must on Google. Composed here, in the HTTP layer,
    because ``operations`` reads datasets from ``resources``: resources stays CRUD."""
    dataset = resources.create_dataset(state, name, body)
    return operations.finished(state, name, CREATE_DATASET,
                               {"@type": resources.DATASET_TYPE, **dataset})


#: ``CODE/N``: answer every Nth API request of each worker process with CODE.
FAULTS_ENV = "DICOM_DEID_SERVER_FAULTS"
_TRANSIENT = {429: "quota exceeded (injected)", 500: "internal error (injected)",
              503: "the service is unavailable (injected)"}


def parse_faults(spec: str | None) -> tuple[int, int] | None:
    """``"503/3"`` -> (503, 3). Injected errors are the transient ones Google answers
    (429 quota, 500, 503), so clients' retry paths can be exercised against this server."""
    if not spec:
        return None
    m = re.fullmatch(r"(\d{3})/(\d+)", spec.strip())
    if not m or int(m[1]) not in _TRANSIENT or int(m[2]) < 2:
        raise ValueError(f"{FAULTS_ENV}/--inject-errors must be CODE/N with CODE one of "
                         f"{sorted(_TRANSIENT)} and N >= 2, e.g. 503/3; got {spec!r}")
    return int(m[1]), int(m[2])


class Api:
    """Handlers, one per (method, path) row; ``a`` holds the decoded path segments."""

    def __init__(self, state: ServerState, faults: tuple[int, int] | None = None,
                 audit_log: audit.AuditLog | None = None) -> None:
        self.state = state
        self.faults = faults
        self.requests = 0
        self.audit = audit_log or audit.AuditLog.for_data_dir(state.data_dir)

    async def _body(self, r: Request) -> dict:
        return await json_body(r, self.state)

    # datasets
    @route("POST", rf"{_LOC}/datasets", audit.admin(CREATE_DATASET, starts_operation=True))
    async def create_dataset(self, r: Request, a: list[str]) -> Response:
        name = dataset_name(a[0], a[1], r.query_params.get("datasetId"))
        return await _sync(create_dataset, self.state, name, await self._body(r))

    @route("GET", rf"{_LOC}/datasets", audit.data(audit.DATASETS + "ListDatasets"))
    async def list_datasets(self, r: Request, a: list[str]) -> Response:
        return await _sync(resources.list_datasets, self.state, location(*a[:2]), _params(r))

    @route("GET", _DS, audit.data(audit.DATASETS + "GetDataset"))
    async def get_dataset(self, r: Request, a: list[str]) -> Response:
        return await _sync(resources.get_dataset, self.state, _ds(a))

    @route("PATCH", _DS, audit.admin(audit.DATASETS + "UpdateDataset"))
    async def patch_dataset(self, r: Request, a: list[str]) -> Response:
        return await _sync(resources.patch_dataset, self.state, _ds(a), await self._body(r),
                           _params(r))

    @route("DELETE", _DS, audit.admin(audit.DATASETS + "DeleteDataset"))
    async def delete_dataset(self, r: Request, a: list[str]) -> Response:
        return await _sync(resources.delete_dataset, self.state, _ds(a))

    @route("POST", rf"{_DS}:deidentify",
           audit.admin(deidentify.DATASET_METHOD, starts_operation=True))
    async def deidentify_dataset(self, r: Request, a: list[str]) -> Response:
        return await _sync(deidentify.start_dataset, self.state, _ds(a), await self._body(r))

    # IAM policies of datasets and DICOM stores: kept and returned, never enforced
    @route("GET", rf"{_DS}:getIamPolicy", audit.data(audit.DATASETS + "GetIamPolicy"))
    async def get_dataset_policy(self, r: Request, a: list[str]) -> Response:
        return await _sync(iam.get_policy, self.state, str(_ds(a)), _params(r))

    @route("POST", rf"{_DS}:setIamPolicy", audit.admin(audit.DATASETS + "SetIamPolicy"))
    async def set_dataset_policy(self, r: Request, a: list[str]) -> Response:
        return await _sync(iam.set_policy, self.state, str(_ds(a)), await self._body(r))

    @route("POST", rf"{_DS}:testIamPermissions", audit.data(audit.DATASETS + "TestIamPermissions"))
    async def test_dataset_permissions(self, r: Request, a: list[str]) -> Response:
        return await _sync(iam.held_permissions, self.state, str(_ds(a)), await self._body(r))

    @route("GET", rf"{_ST}:getIamPolicy", audit.data(audit.DICOM + "GetIamPolicy"))
    async def get_store_policy(self, r: Request, a: list[str]) -> Response:
        return await _sync(iam.get_policy, self.state, str(_st(a)), _params(r))

    @route("POST", rf"{_ST}:setIamPolicy", audit.admin(audit.DICOM + "SetIamPolicy"))
    async def set_store_policy(self, r: Request, a: list[str]) -> Response:
        return await _sync(iam.set_policy, self.state, str(_st(a)), await self._body(r))

    @route("POST", rf"{_ST}:testIamPermissions", audit.data(audit.DICOM + "TestIamPermissions"))
    async def test_store_permissions(self, r: Request, a: list[str]) -> Response:
        return await _sync(iam.held_permissions, self.state, str(_st(a)), await self._body(r))

    # DICOM stores
    @route("POST", rf"{_DS}/dicomStores", audit.admin(audit.DICOM + "CreateDicomStore"))
    async def create_store(self, r: Request, a: list[str]) -> Response:
        name = store_name(*a[:3], r.query_params.get("dicomStoreId"))
        return await _sync(resources.create_store, self.state, name, await self._body(r))

    @route("GET", rf"{_DS}/dicomStores", audit.data(audit.DICOM + "ListDicomStores"))
    async def list_stores(self, r: Request, a: list[str]) -> Response:
        return await _sync(resources.list_stores, self.state, _ds(a), _params(r))

    @route("GET", _ST, audit.data(audit.DICOM + "GetDicomStore"))
    async def get_store(self, r: Request, a: list[str]) -> Response:
        return await _sync(resources.get_store, self.state, _st(a))

    @route("PATCH", _ST, audit.admin(audit.DICOM + "UpdateDicomStore"))
    async def patch_store(self, r: Request, a: list[str]) -> Response:
        return await _sync(resources.patch_store, self.state, _st(a), await self._body(r),
                           _params(r))

    @route("DELETE", _ST, audit.admin(audit.DICOM + "DeleteDicomStore"))
    async def delete_store(self, r: Request, a: list[str]) -> Response:
        return await _sync(resources.delete_store, self.state, _st(a))

    @route("GET", rf"{_ST}:getDICOMStoreMetrics", audit.data(audit.DICOM + "GetDicomStoreMetrics"))
    async def store_metrics(self, r: Request, a: list[str]) -> Response:
        return await _sync(resources.store_metrics, self.state, _st(a))

    @route("POST", rf"{_ST}:import", audit.admin(transfer.IMPORT_METHOD, starts_operation=True))
    async def import_(self, r: Request, a: list[str]) -> Response:
        return await _sync(transfer.start_import, self.state, _st(a), await self._body(r))

    @route("POST", rf"{_ST}:deidentify", audit.admin(deidentify.METHOD, starts_operation=True))
    async def deidentify(self, r: Request, a: list[str]) -> Response:
        return await _sync(deidentify.start, self.state, _st(a), await self._body(r))

    @route("POST", rf"{_ST}:export", audit.admin(transfer.EXPORT_METHOD, starts_operation=True))
    async def export(self, r: Request, a: list[str]) -> Response:
        return await _sync(transfer.start_export, self.state, _st(a), await self._body(r))

    # operations
    @route("GET", rf"{_DS}/operations", audit.data(audit.OPERATIONS + "ListOperations"))
    async def list_operations(self, r: Request, a: list[str]) -> Response:
        return await _sync(operations.list_, self.state, _ds(a), _params(r), _base(r))

    @route("GET", rf"{_DS}/operations/{_SEG}", audit.data(audit.OPERATIONS + "GetOperation"))
    async def get_operation(self, r: Request, a: list[str]) -> Response:
        name = f"{_ds(a)}/operations/{a[3]}"
        return await _sync(operations.get, self.state, name, _base(r))

    @route("POST", rf"{_DS}/operations/{_SEG}:cancel",
           audit.admin(audit.OPERATIONS + "CancelOperation"))
    async def cancel_operation(self, r: Request, a: list[str]) -> Response:
        return await _sync(operations.cancel, self.state, f"{_ds(a)}/operations/{a[3]}")

    @route("GET", rf"{_DS}/operations/{_SEG}/failures", audit.READ_LOGS)
    async def operation_failures(self, r: Request, a: list[str]) -> Response:
        return await _sync(operations.failures, self.state, f"{_ds(a)}/operations/{a[3]}",
                           _params(r))

    # DICOMweb
    @route("POST", rf"{_WEB}/studies", audit.data(audit.DICOMWEB + "StoreInstances"))
    async def stow(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.stow(r, self.state, _st(a), None)

    @route("POST", rf"{_WEB}/studies/{_UID}", audit.data(audit.DICOMWEB + "StoreInstances"))
    async def stow_study(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.stow(r, self.state, _st(a), a[4])

    @route("GET", rf"{_WEB}/studies", audit.data(audit.DICOMWEB + "SearchForStudies"))
    async def search_studies(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.search(r, self.state, _st(a), "study")

    @route("GET", rf"{_WEB}/series", audit.data(audit.DICOMWEB + "SearchForSeries"))
    async def search_all_series(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.search(r, self.state, _st(a), "series")

    @route("GET", rf"{_WEB}/instances", audit.data(audit.DICOMWEB + "SearchForInstances"))
    async def search_all_instances(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.search(r, self.state, _st(a), "instance")

    @route("GET", rf"{_WEB}/studies/{_UID}/series", audit.data(audit.DICOMWEB + "SearchForSeries"))
    async def search_series(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.search(r, self.state, _st(a), "series", a[4])

    @route("GET", rf"{_WEB}/studies/{_UID}/instances",
           audit.data(audit.DICOMWEB + "SearchForInstances"))
    async def search_study_instances(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.search(r, self.state, _st(a), "instance", a[4])

    @route("GET", rf"{_WEB}/studies/{_UID}/series/{_UID}/instances",
           audit.data(audit.DICOMWEB + "SearchForInstances"))
    async def search_instances(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.search(r, self.state, _st(a), "instance", a[4], a[5])

    @route("GET", rf"{_WEB}/studies/{_UID}", audit.data(audit.DICOMWEB + "RetrieveStudy"))
    async def retrieve_study(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.retrieve(r, self.state, _st(a), a[4])

    @route("GET", rf"{_WEB}/studies/{_UID}/series/{_UID}",
           audit.data(audit.DICOMWEB + "RetrieveSeries"))
    async def retrieve_series(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.retrieve(r, self.state, _st(a), a[4], a[5])

    @route("GET", rf"{_WEB}/studies/{_UID}/series/{_UID}/instances/{_UID}",
           audit.data(audit.DICOMWEB + "RetrieveInstance"))
    async def retrieve_instance(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.retrieve(r, self.state, _st(a), a[4], a[5], a[6])

    @route("GET", rf"{_WEB}/studies/{_UID}/metadata",
           audit.data(audit.DICOMWEB + "RetrieveStudyMetadata"))
    async def study_metadata(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.metadata(r, self.state, _st(a), a[4])

    @route("GET", rf"{_WEB}/studies/{_UID}/series/{_UID}/metadata",
           audit.data(audit.DICOMWEB + "RetrieveSeriesMetadata"))
    async def series_metadata(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.metadata(r, self.state, _st(a), a[4], a[5])

    @route("GET", rf"{_WEB}/studies/{_UID}/series/{_UID}/instances/{_UID}/metadata",
           audit.data(audit.DICOMWEB + "RetrieveInstanceMetadata"))
    async def instance_metadata(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.metadata(r, self.state, _st(a), a[4], a[5], a[6])

    @route("GET", rf"{_WEB}/studies/{_UID}/series/{_UID}/instances/{_UID}/frames/([^/:]+)",
           audit.data(audit.DICOMWEB + "RetrieveFrames"))
    async def retrieve_frames(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.frames(r, self.state, _st(a), a[4], a[5], a[6], a[7])

    @route("GET", rf"{_WEB}/studies/{_UID}/series/{_UID}/instances/{_UID}/rendered",
           audit.data(audit.DICOMWEB + "RetrieveRenderedInstance"))
    async def instance_rendered(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.rendered(r, self.state, _st(a), a[4], a[5], a[6], None)

    @route("GET", rf"{_WEB}/studies/{_UID}/series/{_UID}/instances/{_UID}/frames/([^/:]+)/rendered",
           audit.data(audit.DICOMWEB + "RetrieveRenderedFrames"))
    async def frame_rendered(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.rendered(r, self.state, _st(a), a[4], a[5], a[6], a[7])

    @route("GET", rf"{_WEB}/studies/{_UID}:getStudyMetrics",
           audit.data(audit.DICOM + "GetStudyMetrics"))
    async def study_metrics(self, r: Request, a: list[str]) -> Response:
        return await _sync(resources.study_metrics, self.state, _st(a), a[4])

    @route("GET", rf"{_WEB}/studies/{_UID}/series/{_UID}:getSeriesMetrics",
           audit.data(audit.DICOM + "GetSeriesMetrics"))
    async def series_metrics(self, r: Request, a: list[str]) -> Response:
        return await _sync(resources.series_metrics, self.state, _st(a), a[4], a[5])

    @route("DELETE", rf"{_WEB}/studies/{_UID}",
           audit.data(audit.DICOMWEB + "DeleteStudy", starts_operation=True))
    async def delete_study(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.delete(r, self.state, _st(a), a[4])

    @route("DELETE", rf"{_WEB}/studies/{_UID}/series/{_UID}",
           audit.data(audit.DICOMWEB + "DeleteSeries", starts_operation=True))
    async def delete_series(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.delete(r, self.state, _st(a), a[4], a[5])

    @route("DELETE", rf"{_WEB}/studies/{_UID}/series/{_UID}/instances/{_UID}",
           audit.data(audit.DICOMWEB + "DeleteInstance"))
    async def delete_instance(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.delete(r, self.state, _st(a), a[4], a[5], a[6])

    # the audit trail, read back (a local stand-in for Cloud Logging's entries.list)
    @route("GET", r"auditLogs/entries", audit.READ_LOGS)
    async def audit_entries(self, r: Request, a: list[str]) -> Response:
        return await _sync(self.audit.list_entries, _params(r))

    async def dispatch(self, request: Request) -> Response:
        """Answer one API request and write its audit entry: the one place every request
        passes, so each gets exactly one entry, whatever answers it (a handler, an
        error, an injected fault)."""
        received = datetime.now(UTC)
        raw = request.scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0]
        path = raw[len("/v1/"):] if raw.startswith("/v1/") else ""
        found, allowed = _match(request.method, path)
        code = audit.CLIENT_CLOSED
        response: Response | None = None
        try:
            response = await self._answer(request, path, found, allowed)
            code = response.status_code
            return response
        finally:
            self.audit.record(lambda: audit.entry(
                _target(request, path, found), audit.Caller.of(request), received, code,
                response))

    async def _answer(self, request: Request, path: str, found: _Found | None,
                      allowed: bool) -> Response:
        if self.faults:
            self.requests += 1
            code, every = self.faults
            if self.requests % every == 0:
                log.warning("injected %d for request %d", code, self.requests)
                return JSONResponse(errors.ApiError(code, _TRANSIENT[code]).body(),
                                    status_code=code)
        try:
            if found is not None:
                return await getattr(self, found.name)(request, found.args)
            unserved = methods.find(request.method, path)
            if unserved is not None:
                raise errors.ApiError(
                    501, f"{unserved.id} is not implemented by the local Cloud Healthcare "
                    "API server (it serves datasets, DICOM stores, DICOMweb and operations)")
            if allowed or methods.path_known(path):
                raise errors.ApiError(405, f"method {request.method} is not allowed here")
            raise errors.not_found("no such resource or method on this server")
        except errors.ApiError as exc:
            return JSONResponse(exc.body(), status_code=exc.code)
        except Exception as exc:
            # Logged by kind and place only: a traceback's messages could quote DICOM
            # values, and uvicorn would print them if the exception escaped.
            log.error("internal error: %s", errors.describe(exc))
            return JSONResponse(errors.ApiError(500, "internal error").body(), status_code=500)


@dataclass(frozen=True)
class _Found:
    """The route a request matched: its handler's name, pattern and decoded segments."""

    name: str
    pattern: str
    args: list[str]


def _match(http_method: str, path: str) -> tuple[_Found | None, bool]:
    """The route serving ``http_method`` on ``path``, and whether any route has the path
    (under some verb: 405 rather than 404)."""
    allowed = False
    for method, pattern, name in ROUTES:
        m = pattern.fullmatch(path)
        if not m:
            continue
        allowed = True
        if method == http_method:
            return _Found(name, pattern.pattern, [unquote(g) for g in m.groups()]), True
    return None, allowed


def _target(request: Request, path: str, found: _Found | None) -> audit.Target:
    if found is None:
        unserved = methods.find(request.method, path)
        return audit.unrouted(unserved.id if unserved else None, path)
    return audit.for_route(RPCS[found.name], request.method, found.pattern, found.args,
                           request.query_params)


def create_app(data_dir: Path, max_body_bytes: int = DEFAULT_MAX_BODY,
               run_recovery: bool = True) -> Starlette:
    """The server for one process; recovery only where no sibling worker is running."""
    state = ServerState(Path(data_dir), max_body_bytes=max_body_bytes)
    if run_recovery:
        recover(state)
    api = Api(state, parse_faults(os.environ.get(FAULTS_ENV)))

    async def health(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def handle_500(_request: Request, exc: Exception) -> Response:
        log.error("internal error: %s", errors.describe(exc))
        return JSONResponse(errors.ApiError(500, "internal error").body(), status_code=500)

    app = Starlette(
        routes=[
            Route("/healthz", health),
            Route("/v1/{path:path}", api.dispatch,
                  methods=["GET", "POST", "PATCH", "DELETE", "PUT"]),
        ],
        exception_handlers={Exception: handle_500},
    )
    app.state.server = state
    app.state.audit = api.audit
    return app
