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
from pathlib import Path
from urllib.parse import unquote

from anyio import to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import deidentify, dicomweb, errors, iam, methods, operations, resources, transfer
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


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        ROUTES.append((method, re.compile(pattern), fn.__name__))
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

    def __init__(self, state: ServerState, faults: tuple[int, int] | None = None) -> None:
        self.state = state
        self.faults = faults
        self.requests = 0

    async def _body(self, r: Request) -> dict:
        return await json_body(r, self.state)

    # datasets
    @route("POST", rf"{_LOC}/datasets")
    async def create_dataset(self, r: Request, a: list[str]) -> Response:
        name = dataset_name(a[0], a[1], r.query_params.get("datasetId"))
        return await _sync(create_dataset, self.state, name, await self._body(r))

    @route("GET", rf"{_LOC}/datasets")
    async def list_datasets(self, r: Request, a: list[str]) -> Response:
        return await _sync(resources.list_datasets, self.state, location(*a[:2]), _params(r))

    @route("GET", _DS)
    async def get_dataset(self, r: Request, a: list[str]) -> Response:
        return await _sync(resources.get_dataset, self.state, _ds(a))

    @route("PATCH", _DS)
    async def patch_dataset(self, r: Request, a: list[str]) -> Response:
        return await _sync(resources.patch_dataset, self.state, _ds(a), await self._body(r),
                           _params(r))

    @route("DELETE", _DS)
    async def delete_dataset(self, r: Request, a: list[str]) -> Response:
        return await _sync(resources.delete_dataset, self.state, _ds(a))

    @route("POST", rf"{_DS}:deidentify")
    async def deidentify_dataset(self, r: Request, a: list[str]) -> Response:
        return await _sync(deidentify.start_dataset, self.state, _ds(a), await self._body(r))

    # IAM policies of datasets and DICOM stores: kept and returned, never enforced
    @route("GET", rf"{_DS}:getIamPolicy")
    async def get_dataset_policy(self, r: Request, a: list[str]) -> Response:
        return await _sync(iam.get_policy, self.state, str(_ds(a)), _params(r))

    @route("POST", rf"{_DS}:setIamPolicy")
    async def set_dataset_policy(self, r: Request, a: list[str]) -> Response:
        return await _sync(iam.set_policy, self.state, str(_ds(a)), await self._body(r))

    @route("POST", rf"{_DS}:testIamPermissions")
    async def test_dataset_permissions(self, r: Request, a: list[str]) -> Response:
        return await _sync(iam.held_permissions, self.state, str(_ds(a)), await self._body(r))

    @route("GET", rf"{_ST}:getIamPolicy")
    async def get_store_policy(self, r: Request, a: list[str]) -> Response:
        return await _sync(iam.get_policy, self.state, str(_st(a)), _params(r))

    @route("POST", rf"{_ST}:setIamPolicy")
    async def set_store_policy(self, r: Request, a: list[str]) -> Response:
        return await _sync(iam.set_policy, self.state, str(_st(a)), await self._body(r))

    @route("POST", rf"{_ST}:testIamPermissions")
    async def test_store_permissions(self, r: Request, a: list[str]) -> Response:
        return await _sync(iam.held_permissions, self.state, str(_st(a)), await self._body(r))

    # DICOM stores
    @route("POST", rf"{_DS}/dicomStores")
    async def create_store(self, r: Request, a: list[str]) -> Response:
        name = store_name(*a[:3], r.query_params.get("dicomStoreId"))
        return await _sync(resources.create_store, self.state, name, await self._body(r))

    @route("GET", rf"{_DS}/dicomStores")
    async def list_stores(self, r: Request, a: list[str]) -> Response:
        return await _sync(resources.list_stores, self.state, _ds(a), _params(r))

    @route("GET", _ST)
    async def get_store(self, r: Request, a: list[str]) -> Response:
        return await _sync(resources.get_store, self.state, _st(a))

    @route("PATCH", _ST)
    async def patch_store(self, r: Request, a: list[str]) -> Response:
        return await _sync(resources.patch_store, self.state, _st(a), await self._body(r),
                           _params(r))

    @route("DELETE", _ST)
    async def delete_store(self, r: Request, a: list[str]) -> Response:
        return await _sync(resources.delete_store, self.state, _st(a))

    @route("GET", rf"{_ST}:getDICOMStoreMetrics")
    async def store_metrics(self, r: Request, a: list[str]) -> Response:
        return await _sync(resources.store_metrics, self.state, _st(a))

    @route("POST", rf"{_ST}:import")
    async def import_(self, r: Request, a: list[str]) -> Response:
        return await _sync(transfer.start_import, self.state, _st(a), await self._body(r))

    @route("POST", rf"{_ST}:deidentify")
    async def deidentify(self, r: Request, a: list[str]) -> Response:
        return await _sync(deidentify.start, self.state, _st(a), await self._body(r))

    @route("POST", rf"{_ST}:export")
    async def export(self, r: Request, a: list[str]) -> Response:
        return await _sync(transfer.start_export, self.state, _st(a), await self._body(r))

    # operations
    @route("GET", rf"{_DS}/operations")
    async def list_operations(self, r: Request, a: list[str]) -> Response:
        return await _sync(operations.list_, self.state, _ds(a), _params(r), _base(r))

    @route("GET", rf"{_DS}/operations/{_SEG}")
    async def get_operation(self, r: Request, a: list[str]) -> Response:
        name = f"{_ds(a)}/operations/{a[3]}"
        return await _sync(operations.get, self.state, name, _base(r))

    @route("POST", rf"{_DS}/operations/{_SEG}:cancel")
    async def cancel_operation(self, r: Request, a: list[str]) -> Response:
        return await _sync(operations.cancel, self.state, f"{_ds(a)}/operations/{a[3]}")

    @route("GET", rf"{_DS}/operations/{_SEG}/failures")
    async def operation_failures(self, r: Request, a: list[str]) -> Response:
        return await _sync(operations.failures, self.state, f"{_ds(a)}/operations/{a[3]}",
                           _params(r))

    # DICOMweb
    @route("POST", rf"{_WEB}/studies")
    async def stow(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.stow(r, self.state, _st(a), None)

    @route("POST", rf"{_WEB}/studies/{_UID}")
    async def stow_study(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.stow(r, self.state, _st(a), a[4])

    @route("GET", rf"{_WEB}/studies")
    async def search_studies(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.search(r, self.state, _st(a), "study")

    @route("GET", rf"{_WEB}/series")
    async def search_all_series(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.search(r, self.state, _st(a), "series")

    @route("GET", rf"{_WEB}/instances")
    async def search_all_instances(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.search(r, self.state, _st(a), "instance")

    @route("GET", rf"{_WEB}/studies/{_UID}/series")
    async def search_series(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.search(r, self.state, _st(a), "series", a[4])

    @route("GET", rf"{_WEB}/studies/{_UID}/instances")
    async def search_study_instances(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.search(r, self.state, _st(a), "instance", a[4])

    @route("GET", rf"{_WEB}/studies/{_UID}/series/{_UID}/instances")
    async def search_instances(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.search(r, self.state, _st(a), "instance", a[4], a[5])

    @route("GET", rf"{_WEB}/studies/{_UID}")
    async def retrieve_study(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.retrieve(r, self.state, _st(a), a[4])

    @route("GET", rf"{_WEB}/studies/{_UID}/series/{_UID}")
    async def retrieve_series(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.retrieve(r, self.state, _st(a), a[4], a[5])

    @route("GET", rf"{_WEB}/studies/{_UID}/series/{_UID}/instances/{_UID}")
    async def retrieve_instance(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.retrieve(r, self.state, _st(a), a[4], a[5], a[6])

    @route("GET", rf"{_WEB}/studies/{_UID}/metadata")
    async def study_metadata(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.metadata(r, self.state, _st(a), a[4])

    @route("GET", rf"{_WEB}/studies/{_UID}/series/{_UID}/metadata")
    async def series_metadata(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.metadata(r, self.state, _st(a), a[4], a[5])

    @route("GET", rf"{_WEB}/studies/{_UID}/series/{_UID}/instances/{_UID}/metadata")
    async def instance_metadata(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.metadata(r, self.state, _st(a), a[4], a[5], a[6])

    @route("GET", rf"{_WEB}/studies/{_UID}/series/{_UID}/instances/{_UID}/frames/([^/:]+)")
    async def retrieve_frames(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.frames(r, self.state, _st(a), a[4], a[5], a[6], a[7])

    @route("GET", rf"{_WEB}/studies/{_UID}/series/{_UID}/instances/{_UID}/rendered")
    async def instance_rendered(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.rendered(r, self.state, _st(a), a[4], a[5], a[6], None)

    @route("GET",
           rf"{_WEB}/studies/{_UID}/series/{_UID}/instances/{_UID}/frames/([^/:]+)/rendered")
    async def frame_rendered(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.rendered(r, self.state, _st(a), a[4], a[5], a[6], a[7])

    @route("GET", rf"{_WEB}/studies/{_UID}:getStudyMetrics")
    async def study_metrics(self, r: Request, a: list[str]) -> Response:
        return await _sync(resources.study_metrics, self.state, _st(a), a[4])

    @route("GET", rf"{_WEB}/studies/{_UID}/series/{_UID}:getSeriesMetrics")
    async def series_metrics(self, r: Request, a: list[str]) -> Response:
        return await _sync(resources.series_metrics, self.state, _st(a), a[4], a[5])

    @route("DELETE", rf"{_WEB}/studies/{_UID}")
    async def delete_study(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.delete(r, self.state, _st(a), a[4])

    @route("DELETE", rf"{_WEB}/studies/{_UID}/series/{_UID}")
    async def delete_series(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.delete(r, self.state, _st(a), a[4], a[5])

    @route("DELETE", rf"{_WEB}/studies/{_UID}/series/{_UID}/instances/{_UID}")
    async def delete_instance(self, r: Request, a: list[str]) -> Response:
        return await dicomweb.delete(r, self.state, _st(a), a[4], a[5], a[6])

    async def dispatch(self, request: Request) -> Response:
        raw = request.scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0]
        path = raw[len("/v1/"):] if raw.startswith("/v1/") else ""
        if self.faults:
            self.requests += 1
            code, every = self.faults
            if self.requests % every == 0:
                log.warning("injected %d for request %d", code, self.requests)
                return JSONResponse(errors.ApiError(code, _TRANSIENT[code]).body(),
                                    status_code=code)
        try:
            allowed = False
            for method, pattern, name in ROUTES:
                m = pattern.fullmatch(path)
                if not m:
                    continue
                allowed = True
                if method != request.method:
                    continue
                args = [unquote(g) for g in m.groups()]
                return await getattr(self, name)(request, args)
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
    return app
