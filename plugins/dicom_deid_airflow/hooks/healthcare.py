"""Cloud Healthcare API v1 hook: datasets, DICOM stores, long-running operations, DICOMweb.

Why it is built this way:

- **One contract, two backends.** The hook speaks Cloud Healthcare API v1 through the
  discovery client, ``build("healthcare", "v1", static_discovery=True)``: the discovery
  document ships with google-api-python-client, so building the client needs no network.
  The endpoint decides who answers: the hook's ``api_endpoint`` argument, else the
  connection's ``api_endpoint`` extra, else ``https://healthcare.googleapis.com``. The
  project's local server speaks the same REST and DICOMweb contract.
- **Anonymous credentials for a non-Google endpoint.** GoogleBaseHook resolves credentials
  from the connection or from Application Default Credentials; on a laptop or in CI with no
  cloud account that lookup fails, and the local server does no authentication anyway. So
  when the endpoint is not a ``googleapis.com`` host the hook uses
  ``google.auth.credentials.AnonymousCredentials`` (no ``Authorization`` header is sent)
  and takes the project id from the connection's ``project`` extra. A Google endpoint gets
  GoogleBaseHook's usual credentials (key file, ADC, ``impersonation_chain``).
- **Retries.** Every API call runs with ``.execute(num_retries=N)`` (N: the hook argument,
  else the connection's ``num_retries`` extra, default 5), which retries 429, 5xx and
  dropped connections with exponential backoff and jitter, and never another 4xx: a bad
  request stays bad and fails at once. DICOMweb calls go through a requests session whose
  adapter retries the same statuses and connection failures.
- **Errors.** An ``HttpError`` becomes a :class:`HealthcareApiError` (an
  ``AirflowException``) saying what was attempted, with the API's status and message from
  Google's error shape ``{"error": {"code", "message", "status"}}``. Request headers are
  never part of it, so no bearer token reaches a log or the UI.
- **No PHI.** Logs name resources and operations and give counts; never DICOM values.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import httplib2
import requests
from airflow.providers.google.common.hooks.base_google import GoogleBaseHook
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from dicom_deid.gcs import GcsUriError, parse_gs_uri

if TYPE_CHECKING:
    from dicomweb_client.api import DICOMwebClient
    from google.auth.credentials import Credentials
    from googleapiclient.discovery import Resource
    from googleapiclient.http import HttpRequest

DEFAULT_ENDPOINT = "https://healthcare.googleapis.com"
#: Statuses worth retrying: throttling and server-side faults. Any other 4xx is final.
RETRYABLE_STATUS = (429, 500, 502, 503, 504)
_MAX_MESSAGE = 500


def is_google_endpoint(endpoint: str) -> bool:
    """True for ``https://healthcare.googleapis.com`` and other ``*.googleapis.com`` hosts."""
    host = (urlparse(endpoint).hostname or "").lower()
    return host == "googleapis.com" or host.endswith(".googleapis.com")


def dataset_of(name: str) -> str:
    """The dataset part of a store or operation name (``projects/P/locations/L/datasets/D``)."""
    parts = name.strip("/").split("/")
    if len(parts) < 6 or parts[0] != "projects" or parts[2] != "locations" \
            or parts[4] != "datasets":
        raise ValueError(
            f"not a Cloud Healthcare API resource name: {name!r} "
            "(expected projects/P/locations/L/datasets/D/...)")
    return "/".join(parts[:6])


def operation_counter(operation: dict) -> dict[str, int]:
    """``metadata.counter`` as ints (the API sends int64 as strings and omits zeros)."""
    raw = (operation.get("metadata") or {}).get("counter") or {}
    return {key: int(raw.get(key) or 0) for key in ("success", "failure", "pending")}


def poll_waits(poll_interval: float) -> Iterator[float]:
    """Seconds to wait between polls of an operation: 1, 2, 4 ... up to
    ``poll_interval``, so a small job is seen done within about a second of finishing
    and a long one is not polled more often than it needs."""
    wait = min(1.0, poll_interval)
    while True:
        yield wait
        wait = min(wait * 2, poll_interval)


def operation_event(operation: dict) -> dict[str, Any]:
    """What a finished (or failed) operation comes down to, as a small XCom-safe dict.

    Used as the trigger's event payload and, in non-deferrable mode, built from the last
    poll, so both paths end in the same ``execute_complete`` checks. It holds the
    operation's name, counts, ``logsUrl`` and the API's error: no DICOM data.
    """
    name = operation.get("name", "")
    counter = operation_counter(operation)
    event: dict[str, Any] = {"status": "success", "operation": name, "counter": counter}
    logs_url = (operation.get("metadata") or {}).get("logsUrl")
    if logs_url:
        event["logs_url"] = logs_url
    error = operation.get("error")
    if error:
        event["status"] = "error"
        event["error"] = {"code": error.get("code"), "message": error.get("message", "")}
        event["message"] = (f"operation {name} failed: {error.get('message', '')} "
                            f"(code {error.get('code')})")
    else:
        event["message"] = (f"operation {name} finished: {counter['success']} succeeded, "
                            f"{counter['failure']} failed")
    return event


class HealthcareApiError(AirflowException):
    """A Cloud Healthcare API call failed.

    ``code`` is the HTTP status (``None`` when the endpoint never answered), ``status``
    the API's status name (``NOT_FOUND``, ``ALREADY_EXISTS``...) and ``api_message`` its
    message. Callers branch on ``code`` (409 means "already exists").
    """

    def __init__(self, action: str, *, code: int | None = None, status: str | None = None,
                 message: str = "") -> None:
        self.action = action
        self.code = code
        self.status = status
        self.api_message = message[:_MAX_MESSAGE]
        detail = " ".join(str(p) for p in (code, status) if p) or "no response"
        super().__init__(f"{action} failed: {self.api_message} ({detail})")

    @property
    def retryable(self) -> bool:
        """Throttling, a server fault or no answer: worth another try later."""
        return self.code is None or self.code in RETRYABLE_STATUS

    @classmethod
    def from_response(cls, action: str, code: int, content: bytes | str | None,
                      reason: str = "") -> HealthcareApiError:
        """From a Google-shaped JSON error body (falls back to the HTTP reason phrase).

        A status that is not worth retrying gives a :class:`HealthcareRequestError`, which
        Airflow fails at once: a missing store stays missing on the next try.
        """
        status, message = None, reason
        try:
            text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
            error = json.loads(text or "{}").get("error") or {}
            if isinstance(error, dict):
                status = error.get("status") or None
                message = str(error.get("message") or reason)
        except (ValueError, AttributeError):
            pass
        kind = cls if int(code) in RETRYABLE_STATUS else HealthcareRequestError
        return kind(action, code=int(code), status=status, message=message)

    @classmethod
    def from_http_error(cls, action: str, exc: HttpError) -> HealthcareApiError:
        return cls.from_response(action, exc.resp.status, exc.content,
                                 getattr(exc.resp, "reason", "") or "")


class HealthcareRequestError(HealthcareApiError, AirflowFailException):
    """The API refused the request itself (400, 403, 404, 409...): retrying sends the same
    request and gets the same answer, so the task fails at once, without its retries,
    with the API's status and message."""

    @property
    def retryable(self) -> bool:
        return False


def _dicomweb_action(request: requests.PreparedRequest) -> str:
    """What a DICOMweb request did, naming the store and the kind of resource but no UID:
    a source study UID identifies a patient's visit."""
    path = urlparse(request.url or "").path
    store, _, rest = path.partition("/dicomWeb")
    store = store.split("/v1/", 1)[-1].strip("/")
    kinds = [part for part in rest.split("/") if part in _DICOMWEB_KINDS]
    target = "/".join(kinds) or "store"
    return f"DICOMweb {request.method} {target} of DICOM store {store}"


_DICOMWEB_KINDS = ("studies", "series", "instances", "frames", "metadata", "rendered")


def raise_for_dicomweb_status(response: requests.Response, *args: Any,
                              **kwargs: Any) -> None:
    """A requests response hook: a DICOMweb error answer becomes a HealthcareApiError
    carrying the API's status and message (not requests' ``HTTPError ... for url``, which
    quotes UIDs), final for a 4xx and retryable for 429/5xx."""
    if response.status_code >= 400:
        raise HealthcareApiError.from_response(
            _dicomweb_action(response.request), response.status_code, response.content,
            response.reason or "")


class MetricsNotReady(AirflowException):
    """A store's metrics say it is empty while a search finds instances: they lag behind
    writes. Count with ``HealthcareHook.count_instances_by_search`` instead."""

    def __init__(self, store_name: str) -> None:
        self.store_name = store_name
        super().__init__(f"metrics of DICOM store {store_name} are not ready (they report "
                         "0 instances while a search finds some)")


class HealthcareHook(GoogleBaseHook):
    """Cloud Healthcare API v1 (datasets, DICOM stores, operations) and DICOMweb.

    :param gcp_conn_id: Airflow connection of type ``google_cloud_platform``. Extras used:
        ``api_endpoint`` (default ``https://healthcare.googleapis.com``), ``project``,
        ``num_retries``, and GoogleBaseHook's credential fields for a Google endpoint.
    :param impersonation_chain: service account(s) to impersonate (Google endpoint only).
    :param api_endpoint: overrides the connection's ``api_endpoint`` extra.
    :param num_retries: overrides the connection's ``num_retries`` extra.
    """

    conn_name_attr = "gcp_conn_id"
    default_conn_name = "google_cloud_default"
    conn_type = "google_cloud_platform"
    hook_name = "Google Cloud Healthcare API"

    def __init__(self, gcp_conn_id: str = default_conn_name,
                 impersonation_chain: str | Sequence[str] | None = None, *,
                 api_endpoint: str | None = None, num_retries: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(gcp_conn_id=gcp_conn_id, impersonation_chain=impersonation_chain,
                         **kwargs)
        endpoint = api_endpoint or self._get_field("api_endpoint", None) or DEFAULT_ENDPOINT
        self.api_endpoint: str = str(endpoint).rstrip("/")
        self._num_retries = num_retries
        self._conn: Resource | None = None

    # -- connection -------------------------------------------------------------------

    @property
    def is_google(self) -> bool:
        """Whether the endpoint is Google's (real credentials) or another server (anonymous)."""
        return is_google_endpoint(self.api_endpoint)

    @property
    def num_retries(self) -> int:
        """Retries for 429/5xx/connection errors: the hook argument, else the connection's."""
        if self._num_retries is not None:
            return self._num_retries
        return super().num_retries

    def get_credentials_and_project_id(self) -> tuple[Credentials, str | None]:
        """Google credentials for a Google endpoint; anonymous ones for any other.

        The local server does no authentication, and looking up Application Default
        Credentials on a machine without a cloud account would fail, so it is skipped.
        """
        if self.is_google:
            return super().get_credentials_and_project_id()
        return AnonymousCredentials(), self._get_field("project", None)

    def get_conn(self) -> Resource:
        """The discovery client for Cloud Healthcare API v1 at ``api_endpoint`` (cached).

        Built like the Google provider's discovery hooks: over GoogleBaseHook's
        authorized HTTP (its ``airflow/<version>`` user agent, the hook's credentials,
        anonymous ones for a non-Google endpoint) with its client options (the universe
        domain, or the endpoint as an override).
        """
        if self._conn is None:
            self._conn = build(
                "healthcare", "v1", static_discovery=True, cache_discovery=False,
                http=self._authorize(), client_options=self._client_options())
        return self._conn

    def _client_options(self) -> ClientOptions:
        """The endpoint for another server; on Google, the provider's client options (a
        universe domain applies unless an endpoint other than the default was asked for)."""
        if not self.is_google:
            return ClientOptions(api_endpoint=self.api_endpoint)
        override = None if self.api_endpoint == DEFAULT_ENDPOINT else self.api_endpoint
        return self.get_client_options(api_endpoint_override=override)

    def _datasets(self) -> Any:
        return self.get_conn().projects().locations().datasets()

    def _stores(self) -> Any:
        return self._datasets().dicomStores()

    def _execute(self, request: HttpRequest, action: str) -> dict:
        """Run one API request with retries; turn failures into HealthcareApiError."""
        try:
            return request.execute(num_retries=self.num_retries)
        except HttpError as exc:
            raise HealthcareApiError.from_http_error(action, exc) from exc
        except (OSError, httplib2.HttpLib2Error) as exc:
            raise HealthcareApiError(
                action, message=f"{self.api_endpoint} did not answer after "
                f"{self.num_retries} retries ({type(exc).__name__})") from exc

    def _project(self, project: str | None) -> str:
        project = project or self.project_id
        if not project:
            raise AirflowException(
                f"no project id: pass one or set the 'project' extra of connection "
                f"{self.gcp_conn_id!r}")
        return project

    # -- datasets and stores ----------------------------------------------------------

    def create_dataset(self, project: str | None, location: str, dataset_id: str) -> dict:
        """Create a dataset, or return it if it exists (409 is not an error here).

        Idempotent so that a retried DAG run, or two runs sharing a dataset, do not fail
        on a dataset an earlier attempt made.
        """
        parent = f"projects/{self._project(project)}/locations/{location}"
        name = f"{parent}/datasets/{dataset_id}"
        try:
            created = self._execute(
                self._datasets().create(parent=parent, datasetId=dataset_id, body={}),
                f"create dataset {name}")
        except HealthcareApiError as exc:
            if exc.code != 409:
                raise
            self.log.info("Dataset %s already exists; reusing it", name)
            return self.get_dataset(name)
        if "/operations/" in str(created.get("name", "")):
            # Google answers datasets.create with a long-running operation.
            operation = self.wait_for_operation(created["name"], poll_interval=1.0)
            if operation.get("error"):
                raise AirflowException(operation_event(operation)["message"])
        self.log.info("Created dataset %s", name)
        return self.get_dataset(name)

    def get_dataset(self, name: str) -> dict:
        return self._execute(self._datasets().get(name=name), f"get dataset {name}")

    def get_dicom_store(self, name: str) -> dict:
        return self._execute(self._stores().get(name=name), f"get DICOM store {name}")

    def create_dicom_store(self, dataset_name: str, store_id: str, *, overwrite: bool = False,
                           labels: dict[str, str] | None = None) -> dict:
        """Create a DICOM store; an existing *empty* store is reused.

        A retry or a re-run finds the store its earlier attempt created: if it is empty
        nothing is lost by reusing it. A store holding instances is refused with an
        AirflowException, because de-identifying into it would mix two runs' outputs,
        unless ``overwrite=True``, which deletes and recreates it.
        """
        return self.ensure_dicom_store(dataset_name, store_id, overwrite=overwrite,
                                       labels=labels)[0]

    def ensure_dicom_store(self, dataset_name: str, store_id: str, *,
                           overwrite: bool = False, labels: dict[str, str] | None = None,
                           reuse_nonempty: bool = False) -> tuple[dict, bool]:
        """:meth:`create_dicom_store`, also saying whether this call created the store
        (``True``) or reused an empty one: a run deletes only a store it created.
        ``reuse_nonempty`` reuses a store that holds instances too (an incremental
        destination)."""
        name = f"{dataset_name}/dicomStores/{store_id}"
        body = {"labels": labels} if labels else {}

        def create() -> dict:
            return self._execute(
                self._stores().create(parent=dataset_name, dicomStoreId=store_id, body=body),
                f"create DICOM store {name}")

        try:
            store = create()
            self.log.info("Created DICOM store %s", name)
            return store, True
        except HealthcareApiError as exc:
            if exc.code != 409:
                raise
        try:
            count = self.count_instances(name)
        except MetricsNotReady:
            count = None
        if count == 0 or reuse_nonempty:
            self.log.info("DICOM store %s already exists and %s; reusing it", name,
                          "is empty" if count == 0 else "is the run's long-lived destination")
            return self.get_dicom_store(name), False
        held = f"{count} instances" if count else "instances (found by search)"
        if not overwrite:
            raise AirflowFailException(
                f"DICOM store {name} already exists and holds {held}; refusing to reuse a "
                "non-empty store (set overwrite=True to delete and recreate it)")
        self.log.warning("DICOM store %s holds %s; overwrite=True: deleting and recreating it",
                         name, held)
        self.delete_dicom_store(name)
        store = create()
        self.log.info("Recreated DICOM store %s", name)
        return store, True

    def delete_dicom_store(self, name: str, *, missing_ok: bool = False) -> None:
        """Delete a DICOM store and its instances; ``missing_ok`` makes a 404 a no-op."""
        try:
            self._execute(self._stores().delete(name=name), f"delete DICOM store {name}")
        except HealthcareApiError as exc:
            if not (missing_ok and exc.code == 404):
                raise
            self.log.info("DICOM store %s does not exist; nothing to delete", name)
            return
        self.log.info("Deleted DICOM store %s", name)

    def get_store_metrics(self, name: str) -> dict:
        """``dicomStores.getDICOMStoreMetrics``: study, series and instance counts, sizes."""
        return self._execute(self._stores().getDICOMStoreMetrics(name=name),
                             f"get metrics of DICOM store {name}")

    def get_series_metrics(self, store_name: str, study_uid: str, series_uid: str) -> dict:
        """``dicomWeb.studies.series.getSeriesMetrics``: a series' instance count and
        sizes (int64 as strings). The action names the store, not the UIDs."""
        name = f"{store_name}/dicomWeb/studies/{study_uid}/series/{series_uid}"
        return self._execute(
            self._stores().dicomWeb().studies().series().getSeriesMetrics(series=name),
            f"get metrics of a series of DICOM store {store_name}")

    def count_instances(self, name: str) -> int:
        """Instances in a store, from ``getDICOMStoreMetrics``.

        Raises :class:`MetricsNotReady` when the metrics say 0 but a search finds an
        instance: metrics lag behind writes (on Google for minutes), and a 0 then would
        reuse a non-empty store or fail a gate that is fine. Callers that need the
        number anyway count with :meth:`count_instances_by_search`.
        """
        count = int(self.get_store_metrics(name).get("instanceCount") or 0)
        if count == 0 and self._search_instances(name, limit=1):
            raise MetricsNotReady(name)
        return count

    def count_instances_by_search(self, name: str, *, page: int = 5000) -> int:
        """Instances in a store, counted with QIDO-RS page by page: slower than the
        metrics, but never behind."""
        total = 0
        while True:
            found = self._search_instances(name, limit=page, offset=total)
            total += found
            if found < page:
                return total

    def instance_count(self, name: str) -> int:
        """The metrics' count, or a search's when the metrics are not ready."""
        try:
            return self.count_instances(name)
        except MetricsNotReady:
            self.log.info("Metrics of %s are not ready; counting instances by search", name)
            return self.count_instances_by_search(name)

    def _search_instances(self, store_name: str, *, limit: int, offset: int = 0) -> int:
        """How many instances one QIDO page returns (204 No Content: none)."""
        action = f"search instances of DICOM store {store_name}"
        params = {"limit": str(limit), "includefield": "00080018"}
        if offset:
            params["offset"] = str(offset)
        try:
            response = self.dicomweb_session().get(
                f"{self.dicomweb_url(store_name)}/instances", params=params,
                headers={"Accept": "application/dicom+json"}, timeout=60)
        except requests.RequestException as exc:
            raise HealthcareApiError(action, message=type(exc).__name__) from exc
        if response.status_code == 204:
            return 0
        if response.status_code >= 400:
            raise HealthcareApiError.from_response(action, response.status_code,
                                                   response.content, response.reason)
        return len(response.json() or [])

    # -- long-running operations ------------------------------------------------------

    def deidentify_dicom_store(self, source: str, destination: str, config: dict | str, *,
                               filter_uri: str | None = None) -> str:
        """Start ``dicomStores.deidentify`` from ``source`` into ``destination``.

        ``config`` is a DeidentifyConfig dict, or a ``gs://`` URI of one (sent as
        ``gcsConfigUri``). ``filter_uri`` is ``filterConfig.resourcePathsGcsUri``: a file
        of ``/studies/...`` paths restricting what is de-identified. The destination
        store must exist (current v1 API). Returns the operation's name.
        """
        body: dict[str, Any] = {"destinationStore": destination}
        if isinstance(config, str):
            try:
                body["gcsConfigUri"] = str(parse_gs_uri(config, "config", require_name=True))
            except GcsUriError:
                raise ValueError("config must be a DeidentifyConfig dict or a gs:// URI "
                                 "of one") from None
        else:
            body["config"] = config
        if filter_uri:
            body["filterConfig"] = {"resourcePathsGcsUri": filter_uri}
        operation = self._execute(
            self._stores().deidentify(sourceStore=source, body=body),
            f"de-identify DICOM store {source} into {destination}")
        self.log.info("Started de-identification %s: %s -> %s", operation["name"], source,
                      destination)
        return operation["name"]

    def export_dicom_store(self, name: str, uri_prefix: str, *,
                           mime_type: str | None = None, filter_uri: str | None = None) -> str:
        """Start ``dicomStores.export`` to ``gs://`` ``uri_prefix``; returns the operation name.

        ``mime_type`` picks the format (e.g. ``application/dicom; transfer-syntax=...``);
        the API's default is the stored DICOM. ``filter_uri`` is
        ``filterConfig.resourcePathsGcsUri``: only the resources it lists are exported.
        """
        destination: dict[str, Any] = {"uriPrefix": uri_prefix}
        if mime_type:
            destination["mimeType"] = mime_type
        body: dict[str, Any] = {"gcsDestination": destination}
        if filter_uri:
            body["filterConfig"] = {"resourcePathsGcsUri": filter_uri}
        operation = self._execute(
            self._stores().export(name=name, body=body),
            f"export DICOM store {name} to {uri_prefix}")
        self.log.info("Started export %s: %s -> %s", operation["name"], name, uri_prefix)
        return operation["name"]

    def import_dicom_store(self, name: str, uri: str) -> str:
        """Start ``dicomStores.import`` of ``gs://`` objects (wildcards allowed)."""
        operation = self._execute(
            self._stores().import_(name=name, body={"gcsSource": {"uri": uri}}),
            f"import {uri} into DICOM store {name}")
        self.log.info("Started import %s: %s -> %s", operation["name"], uri, name)
        return operation["name"]

    def get_operation(self, name: str) -> dict:
        """``operations.get``: ``done``, ``metadata.counter``, ``error`` or ``response``."""
        return self._execute(self._datasets().operations().get(name=name),
                             f"get operation {name}")

    def cancel_operation(self, name: str) -> None:
        """Ask the API to cancel an operation (it ends with an error, code 1 CANCELLED)."""
        self._execute(self._datasets().operations().cancel(name=name, body={}),
                      f"cancel operation {name}")
        self.log.info("Requested cancellation of operation %s", name)

    def list_operations(self, dataset_name: str, *, done: bool | None = None) -> list[dict]:
        """All operations of a dataset (every page), optionally only done or running ones."""
        kwargs: dict[str, Any] = {"name": dataset_name}
        if done is not None:
            kwargs["filter"] = f"done={str(done).lower()}"
        operations: list[dict] = []
        token = None
        while True:
            page = self._execute(
                self._datasets().operations().list(**kwargs, pageToken=token),
                f"list operations of {dataset_name}")
            operations += page.get("operations", [])
            token = page.get("nextPageToken")
            if not token:
                return operations

    def wait_for_operation(self, name: str, *, poll_interval: float = 5.0,
                           timeout: float | None = None) -> dict:
        """Poll ``operations.get`` until done (blocking: the non-deferrable path); polls
        start 1 s apart and double up to ``poll_interval``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        waits = poll_waits(poll_interval)
        while True:
            operation = self.get_operation(name)
            if operation.get("done"):
                return operation
            counter = operation_counter(operation)
            self.log.info("Operation %s running: %d succeeded, %d failed, %d pending", name,
                          counter["success"], counter["failure"], counter["pending"])
            if deadline is not None and time.monotonic() >= deadline:
                raise AirflowException(f"operation {name} not done after {timeout} s")
            time.sleep(next(waits))

    # -- DICOMweb ---------------------------------------------------------------------

    def dicomweb_url(self, store_name: str) -> str:
        """The store's DICOMweb base URL (``.../dicomStores/S/dicomWeb``)."""
        return f"{self.api_endpoint}/v1/{store_name}/dicomWeb"

    def dicomweb_session(self) -> requests.Session:
        """A requests session for DICOMweb, retrying 429/5xx and connection failures.

        Google: an ``AuthorizedSession`` with the hook's credentials. Other endpoints
        (the local server): a plain session, no credentials.
        """
        if self.is_google:
            from google.auth.transport.requests import AuthorizedSession

            session: requests.Session = AuthorizedSession(self.get_credentials())
        else:
            session = requests.Session()
        n = self.num_retries
        retry = Retry(total=n, connect=n, read=0, status=n, status_forcelist=RETRYABLE_STATUS,
                      allowed_methods=None, backoff_factor=0.5, raise_on_status=False,
                      respect_retry_after_header=True)
        adapter = HTTPAdapter(max_retries=retry)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.hooks["response"].append(raise_for_dicomweb_status)
        return session

    def dicomweb_client(self, store_name: str) -> DICOMwebClient:
        """A ``dicomweb_client.DICOMwebClient`` for the store, over :meth:`dicomweb_session`.

        The client's own retry loop is switched off: the session already retries, and two
        layers would multiply the attempts.
        """
        try:
            from dicomweb_client.api import DICOMwebClient
        except ImportError as exc:  # an optional dependency of the Airflow side
            raise AirflowException(
                "dicomweb-client is not installed (pip install dicomweb-client)") from exc
        client = DICOMwebClient(url=self.dicomweb_url(store_name),
                                session=self.dicomweb_session())
        client.set_http_retry_params(retry=False)
        return client
