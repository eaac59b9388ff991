"""An audit trail of every API call, written as Cloud Audit Logs entries.

On Google Cloud, who called which method on which resource, when, from where and with
what outcome is in Cloud Audit Logs; people who run the pipeline look there first when
a run is questioned. This server writes the same record, in the same shape (a
``LogEntry`` whose ``protoPayload`` is a ``google.cloud.audit.AuditLog``), so the same
questions are answered the same way on a laptop, and a filter written for one works on
the other (``operation.id="..."``, ``protoPayload.methodName="..."``).

What is written: one JSON line per API request the dispatcher answers (``app.Api.
dispatch``), errors and injected faults included: ``logName`` ``.../cloudaudit.
googleapis.com%2Factivity`` for writes of resource configuration and the operations
that create or copy stores (Admin Activity), ``%2Fdata_access`` for reads and data
writes (Data Access); ``methodName`` as Google's RPC name; ``resourceName``; a
``status`` with the google.rpc code and status name; the caller's IP and User-Agent;
and ``operation.id`` on the call that starts a long-running operation and on every call
that reads or cancels it.

What is never written, because the trail must be safe to read and to ship: no request
or response body (a de-identification config can hold its ``cryptoKey``), no query
string (QIDO keys are patient values), no error message (only the status name), no
Authorization header, and no DICOM UID: a DICOMweb call's ``resourceName`` is the
store's ``.../dicomWeb/`` followed by its path template (``studies/{studyUid}/series``).
Resource IDs appear only if they follow the API's ID rules.

Where: ``<data dir>/audit/cloudaudit.log``, appended across restarts and rotated by
size (``DICOM_DEID_AUDIT_MAX_BYTES``, default 10 MiB; ``DICOM_DEID_AUDIT_BACKUPS``
files kept, default 5, as ``cloudaudit.log.1`` (newest) to ``.5``). The server's worker
processes share the file: each line is one ``write`` to a descriptor opened with
``O_APPEND`` (so lines never interleave), taken under a shared ``flock`` on
``cloudaudit.log.lock``; rotation takes it exclusively, so no line is written while
files are renamed and each line lands whole in exactly one file. Writing never fails a
request: an ``OSError`` is logged once (its errno name only) and the call goes on.

Reading, a local-only convenience: ``GET /v1/auditLogs/entries?filter=operation.id%3D
%22<operation name>%22`` (or ``?operation=<operation name>``; no parameter lists every
entry) answers ``{"entries": [...]}``, oldest first, from every rotated file, at most
1,000 entries and 64 MiB read (``"truncated": true`` when a bound was reached). It
lets the Airflow run report link to one operation's entries without reading the
server's disk. On Google the equivalent is Cloud Logging's ``entries.list`` (the Logs
Explorer), with the same filter.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response

from . import errors
from .names import check_id

log = logging.getLogger("dicom_deid.server.audit")

SERVICE = "healthcare.googleapis.com"
LOGGING_SERVICE = "logging.googleapis.com"
AUDIT_LOG_TYPE = "type.googleapis.com/google.cloud.audit.AuditLog"
ACTIVITY = "cloudaudit.googleapis.com%2Factivity"
DATA_ACCESS = "cloudaudit.googleapis.com%2Fdata_access"

# Prefixes of Google's RPC names, per service of the Cloud Healthcare API v1. DICOMweb
# methods are ``dicomweb.DicomWebService``'s, as Google's audit logs name them (its
# image lifecycle tooling filters Data Access logs on exactly these names).
DATASETS = "google.cloud.healthcare.v1.dataset.DatasetService."
DICOM = "google.cloud.healthcare.v1.dicom.DicomService."
DICOMWEB = "google.cloud.healthcare.v1.dicomweb.DicomWebService."
OPERATIONS = "google.longrunning.Operations."
#: Reading logs (an operation's failures, this trail): Cloud Logging's method on Google.
LIST_LOG_ENTRIES = "google.logging.v2.LoggingServiceV2.ListLogEntries"

MAX_BYTES_ENV = "DICOM_DEID_AUDIT_MAX_BYTES"
BACKUPS_ENV = "DICOM_DEID_AUDIT_BACKUPS"
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5
MAX_ENTRIES = 1000
MAX_READ_BYTES = 64 * 1024 * 1024
_MAX_USER_AGENT = 256
_LOG_NAME = "cloudaudit.log"

#: google.rpc.Code by name: ``status.code`` of an entry.
RPC_CODES = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12,
    "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}
#: The status a request has when the client went away before it was answered.
CLIENT_CLOSED = 499


@dataclass(frozen=True)
class Rpc:
    """What the audit trail calls a route: Google's RPC name and the log it goes to.

    ``admin``: Admin Activity (writes of resource configuration, and the operations
    that create or copy stores); else Data Access. ``starts_operation``: the answer is
    a long-running Operation, whose name becomes the entry's ``operation.id``."""

    name: str
    admin: bool = False
    starts_operation: bool = False
    service: str = SERVICE


def data(name: str, *, starts_operation: bool = False) -> Rpc:
    """A Data Access method: reads, searches, retrievals, STOW, DICOMweb deletes."""
    return Rpc(name, admin=False, starts_operation=starts_operation)


def admin(name: str, *, starts_operation: bool = False) -> Rpc:
    """An Admin Activity method: create, patch, delete, setIamPolicy, import, export,
    de-identify, cancel."""
    return Rpc(name, admin=True, starts_operation=starts_operation)


#: Reading logs: an operation's failures (``metadata.logsUrl``) or this trail.
READ_LOGS = Rpc(LIST_LOG_ENTRIES, service=LOGGING_SERVICE)


# -- what a call is about -------------------------------------------------------------

_GROUP = "([^/:]+)"
_COLLECTIONS = ("projects", "locations", "datasets", "dicomStores")
_LABELS = {"projects": "project_id", "locations": "location", "datasets": "dataset_id",
           "dicomStores": "dicom_store_id"}
#: Path parameters of DICOMweb, by the collection word before them: never their values.
_WEB_PARAMS = {"studies": "{studyUid}", "series": "{seriesUid}",
               "instances": "{instanceUid}", "frames": "{frameList}"}
_CREATED_ID = {"datasets": "datasetId", "dicomStores": "dicomStoreId"}
_PREFIX = re.compile(r"projects/([^/:]+)(?:/locations/([^/:]+)(?:/datasets/([^/:]+)"
                     r"(?:/dicomStores/([^/:]+))?)?)?")


@dataclass(frozen=True)
class Target:
    """The method and resource of one call, as its entry names them."""

    rpc: Rpc
    resource_name: str
    ids: tuple[tuple[str, str], ...]  # (collection, ID) from projects down, valid IDs only
    operation: str | None = None  # the operation a call reads or cancels

    @property
    def project(self) -> str:
        return self.ids[0][1] if self.ids else "-"

    def resource(self) -> dict:
        """The monitored resource Cloud Logging files the entry under."""
        labels = {_LABELS[c]: v for c, v in self.ids}
        if self.rpc.service == SERVICE and "dicom_store_id" in labels:
            kind = "healthcare_dicom_store"
        elif self.rpc.service == SERVICE and "dataset_id" in labels:
            kind = "healthcare_dataset"
        else:
            kind = "audited_resource"
            labels = {"project_id": self.project, "service": self.rpc.service,
                      "method": self.rpc.name}
        return {"type": kind, "labels": labels}


def _valid(value: str | None) -> bool:
    try:
        check_id(value, "ID")
    except errors.ApiError:
        return False
    return True


def _word(piece: str) -> str:
    """``".../studies/"`` -> ``"studies"``: the collection a path parameter belongs to."""
    return piece.rstrip("/").rsplit("/", 1)[-1]


def _ids(values: Mapping[str, str]) -> list[tuple[str, str]]:
    """The resource IDs from projects down, up to the first one missing or invalid (a
    value that breaks the ID rules is refused by the handler and never logged)."""
    out = []
    for collection in _COLLECTIONS:
        value = values.get(collection)
        if value is None or not _valid(value):
            break
        out.append((collection, value))
    return out


def _name(ids: list[tuple[str, str]]) -> str:
    return "/".join(f"{c}/{v}" for c, v in ids)


def _web_template(pattern: str) -> str:
    """The DICOMweb path of a route with each parameter as its template:
    ``studies/([^/:]+)/series`` -> ``studies/{studyUid}/series``."""
    pieces = pattern.split("dicomWeb/", 1)[1].split(_GROUP)
    return "".join(p + _WEB_PARAMS.get(_word(p), "{param}") for p in pieces[:-1]) + pieces[-1]


def for_route(rpc: Rpc, http_method: str, pattern: str, args: list[str],
              query: Mapping[str, str]) -> Target:
    """The target of a call the route table matched: ``pattern`` is the route's regex
    source and ``args`` its decoded groups, each named by the collection before it."""
    pieces = pattern.split(_GROUP)
    values = {_word(p): v for p, v in zip(pieces[:-1], args, strict=False)}
    ids = _ids(values)
    name = _name(ids)
    operation = None
    if "operations" in values and len(ids) == 3 and _valid(values["operations"]):
        operation = f"{name}/operations/{values['operations']}"
        name = operation
    elif "dicomWeb/" in pattern and len(ids) == 4:
        name = f"{name}/dicomWeb/{_web_template(pattern)}"
    elif http_method == "POST" and _word(pieces[-1]) in _CREATED_ID \
            and len(ids) == len(values):
        collection = _word(pieces[-1])
        created = query.get(_CREATED_ID[collection])
        if _valid(created):
            ids.append((collection, created))
            name = _name(ids)
    if rpc.service == LOGGING_SERVICE and operation is None:
        wanted = _operation_param(query)
        project = wanted.split("/")[1] if wanted else None
        ids = [("projects", project)] if _valid(project) else []
        name = _name(ids)
    return Target(rpc, name, tuple(ids), operation)


def unrouted(method_id: str | None, path: str) -> Target:
    """The target of a call no route serves (404, 405, 501): the discovery method it
    names, if any, and the resources its path names, no deeper than a DICOM store."""
    m = _PREFIX.match(path)
    values = {}
    if m:
        values = {c: unquote(v) for c, v in zip(_COLLECTIONS, m.groups(), strict=True) if v}
    ids = _ids(values)
    return Target(data(method_id or "unknown"), _name(ids), tuple(ids))


# -- the entry ---------------------------------------------------------------------------


def timestamp(at: datetime | None = None) -> str:
    """RFC 3339 in UTC with microseconds, as Cloud Logging writes ``timestamp``."""
    return (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Caller:
    """Who called: the peer address and the User-Agent it sent (nothing else of the
    request: no Authorization header, no body, no query)."""

    ip: str
    user_agent: str

    @classmethod
    def of(cls, request: Request) -> Caller:
        client = request.client
        return cls(client.host if client else "",
                   request.headers.get("user-agent", "")[:_MAX_USER_AGENT])


def _status_name(code: int, response: Response | None) -> str:
    """The google.rpc status name of an HTTP error: the one the error body names (409
    can be ALREADY_EXISTS or ABORTED), else the one the server maps the code to."""
    if code == CLIENT_CLOSED:
        return "CANCELLED"
    body = getattr(response, "body", None)
    if isinstance(body, bytes) and len(body) <= 65536 \
            and (response.media_type or "").startswith("application/json"):
        try:
            named = json.loads(body)["error"]["status"]
        except (ValueError, KeyError, TypeError):
            named = None
        if isinstance(named, str) and named in RPC_CODES:
            return named
    try:
        return errors.ApiError(code, "").status
    except ValueError:  # a code http.HTTPStatus does not know
        return "UNKNOWN"


def _started(target: Target, code: int, response: Response | None) -> str | None:
    """The name of the Operation a successful LRO start answered with."""
    if not target.rpc.starts_operation or code >= 400:
        return None
    body = getattr(response, "body", None)
    if not isinstance(body, bytes):
        return None
    try:
        name = json.loads(body).get("name")
    except (ValueError, AttributeError):
        return None
    if isinstance(name, str) and "/operations/" in name and len(name) <= 1024:
        return name
    return None


def entry(target: Target, caller: Caller, received: datetime, code: int,
          response: Response | None = None) -> dict:
    """The LogEntry of one call answered with HTTP ``code`` (``response`` is read only
    for an error's status name and a started operation's name)."""
    rpc = target.rpc
    if code >= 400:
        name = _status_name(code, response)
        status = {"code": RPC_CODES.get(name, 2), "message": name}
        severity = "ERROR"
    else:
        status = {}
        severity = "NOTICE" if rpc.admin else "INFO"
    body: dict = {
        "logName": f"projects/{target.project}/logs/{ACTIVITY if rpc.admin else DATA_ACCESS}",
        "timestamp": timestamp(received),
        "receiveTimestamp": timestamp(),
        "severity": severity,
        "insertId": secrets.token_hex(10),
        "resource": target.resource(),
        "protoPayload": {
            "@type": AUDIT_LOG_TYPE,
            "serviceName": rpc.service,
            "methodName": rpc.name,
            "resourceName": target.resource_name,
            "status": status,
            "authenticationInfo": {"principalEmail": "anonymous"},
            "requestMetadata": {"callerIp": caller.ip,
                                "callerSuppliedUserAgent": caller.user_agent},
        },
    }
    started = _started(target, code, response)
    if started:
        body["operation"] = {"id": started, "producer": SERVICE, "first": True}
    elif target.operation:
        body["operation"] = {"id": target.operation, "producer": SERVICE}
    return body


# -- the file ------------------------------------------------------------------------------


def _env_int(name: str, default: int, lowest: int) -> int:
    text = os.environ.get(name)
    if not text:
        return default
    if not text.strip().isdigit() or int(text) < lowest:
        raise ValueError(f"{name} must be an integer of at least {lowest}")
    return int(text)


class AuditLog:
    """``cloudaudit.log`` and its rotated files in one directory, shared by processes."""

    def __init__(self, directory: Path, max_bytes: int = DEFAULT_MAX_BYTES,
                 backups: int = DEFAULT_BACKUPS) -> None:
        if max_bytes < 1 or backups < 1:
            raise ValueError("the audit log needs max_bytes >= 1 and backups >= 1")
        self.directory = Path(directory)
        self.path = self.directory / _LOG_NAME
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock_path = self.directory / f"{_LOG_NAME}.lock"
        self._mutex = threading.Lock()
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._ident: tuple[int, int] | None = None
        self._warned = False

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> AuditLog:
        """``<data_dir>/audit/``, sized by the environment (``DICOM_DEID_AUDIT_*``)."""
        return cls(Path(data_dir) / "audit",
                   _env_int(MAX_BYTES_ENV, DEFAULT_MAX_BYTES, 1),
                   _env_int(BACKUPS_ENV, DEFAULT_BACKUPS, 1))

    # writing

    def record(self, build: Callable[[], dict]) -> None:
        """Build one entry and append it as one line. Never raises: the request it
        records has been answered, and an audit failure must not turn it into an error."""
        try:
            line = json.dumps(build(), separators=(",", ":"), ensure_ascii=True) + "\n"
            self._append(line.encode("ascii"))
        except OSError as exc:
            self._close()
            self._warn(errno.errorcode.get(exc.errno or 0, type(exc).__name__))
        except Exception as exc:
            self._warn(errors.describe(exc))

    def _warn(self, why: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("audit log entry not written (%s); requests are still served, "
                        "later failures are not reported", why)

    def _lock(self) -> int:
        if self._lock_fd is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                                    0o600)
        return self._lock_fd

    def _current(self) -> int:
        """The descriptor of the file now at ``path``: reopened if another process has
        rotated it away since this one last wrote (call under the shared lock)."""
        try:
            st = os.stat(self.path)
            ident: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            ident = None
        if self._fd is not None and ident == self._ident:
            return self._fd
        self._close_file()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        st = os.fstat(fd)
        self._fd, self._ident = fd, (st.st_dev, st.st_ino)
        return fd

    def _append(self, line: bytes) -> None:
        with self._mutex:
            lock = self._lock()
            fcntl.flock(lock, fcntl.LOCK_SH)
            try:
                fd = self._current()
                written = os.write(fd, line)  # one write with O_APPEND: one whole line
                size = os.fstat(fd).st_size
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
            if written != len(line):
                raise OSError(errno.ENOSPC, "short write")
            if size >= self.max_bytes:
                self._rotate(lock)

    def _rotate(self, lock: int) -> None:
        """``cloudaudit.log`` -> ``.1`` -> ... -> ``.{backups}`` (the oldest dropped),
        under the exclusive lock: no process writes meanwhile, and a process that finds
        the file already rotated (smaller than the cap) leaves it."""
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            try:
                if os.stat(self.path).st_size < self.max_bytes:
                    return
            except FileNotFoundError:
                return
            for n in range(self.backups - 1, 0, -1):
                older = self.directory / f"{_LOG_NAME}.{n}"
                if older.exists():
                    os.replace(older, self.directory / f"{_LOG_NAME}.{n + 1}")
            os.replace(self.path, self.directory / f"{_LOG_NAME}.1")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)

    def _close_file(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd, self._ident = None, None

    def _close(self) -> None:
        """Drop both descriptors after an error, so the next entry starts afresh."""
        self._close_file()
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None

    # reading

    def files(self) -> list[Path]:
        """The trail's files, oldest first (``.N`` ... ``.1``, then the current one)."""
        numbered = []
        for p in self.directory.glob(f"{_LOG_NAME}.*"):
            suffix = p.name[len(_LOG_NAME) + 1:]
            if suffix.isdigit():
                numbered.append((int(suffix), p))
        return [p for _, p in sorted(numbered, reverse=True)] + [self.path]

    def _open_all(self) -> list:
        """Every file of the trail, opened between two rotations (under the shared lock:
        a rotation renames files, and an open file reads the same after it)."""
        handles = []
        lock = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_SH)
            for path in self.files():
                try:
                    handles.append(open(path, "rb"))  # noqa: SIM115 - the caller closes
                except FileNotFoundError:
                    continue
        except OSError:
            for handle in handles:
                handle.close()
            raise
        finally:
            os.close(lock)
        return handles

    def list_entries(self, params: Mapping[str, str]) -> dict:
        """``GET /v1/auditLogs/entries``: see the module's docstring."""
        operation = _operation_param(params, strict=True)
        needle = b'"id":' + json.dumps(operation).encode() if operation else None
        try:
            handles = self._open_all()
        except FileNotFoundError:  # nothing written yet
            return {"entries": []}
        except OSError:
            raise errors.ApiError(503, "the audit log cannot be read now") from None
        entries: list[dict] = []
        truncated = False
        read = 0
        try:
            for handle in handles:
                for line in handle:
                    read += len(line)
                    if read > MAX_READ_BYTES:
                        truncated = True
                        break
                    if needle is not None and needle not in line:
                        continue
                    try:
                        found = json.loads(line)
                    except ValueError:  # a line a crash cut short
                        continue
                    if operation and (found.get("operation") or {}).get("id") != operation:
                        continue
                    if len(entries) == MAX_ENTRIES:
                        truncated = True
                        break
                    entries.append(found)
                if truncated:
                    break
        finally:
            for handle in handles:
                handle.close()
        body: dict = {"entries": entries}
        if truncated:
            body["truncated"] = True
        return body


_FILTER = re.compile(r'\s*operation\.id\s*=\s*"([^"\\]{1,1024})"\s*')
_OPERATION = re.compile(r"projects/[^/]+/locations/[^/]+/datasets/[^/]+/operations/[^/]+")


def _operation_param(params: Mapping[str, str], strict: bool = False) -> str | None:
    """The operation name a read of the trail asks for: ``operation=NAME`` or
    ``filter=operation.id="NAME"``; None for all entries. ``strict``: raise 400 for any
    other filter (never quoting it), else answer None."""
    wanted = params.get("operation")
    flt = params.get("filter")
    if wanted is None and flt:
        m = _FILTER.fullmatch(flt)
        if not m:
            if strict:
                raise errors.invalid('filter supports only operation.id="OPERATION_NAME"')
            return None
        wanted = m[1]
    if wanted is None:
        return None
    if not _OPERATION.fullmatch(wanted) or not all(_valid(p) for p in wanted.split("/")):
        if strict:
            raise errors.invalid("operation must be an operation name, projects/PROJECT/"
                                 "locations/LOCATION/datasets/DATASET/operations/ID")
        return None
    return wanted
