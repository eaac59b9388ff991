"""Errors in the shape Google APIs use, so clients handle them as they would on GCP.

Messages name resources by the IDs the caller chose and never echo DICOM values,
which may hold PHI.
"""

from __future__ import annotations

import traceback
from http import HTTPStatus

_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    406: "INVALID_ARGUMENT",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
}


#: The longest message an error carries: a message names a field and its rule, so one
#: longer than this has quoted something from the request; cut, the answer stays small.
MAX_MESSAGE = 1000


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message", "status"}}``."""

    def __init__(self, code: int, message: str, status: str | None = None) -> None:
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or _STATUS.get(code, HTTPStatus(code).phrase.upper().replace(" ", "_"))

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


def invalid(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


def already_exists(message: str) -> ApiError:
    return ApiError(409, message)


def too_large(limit: int) -> ApiError:
    """413, as Google answers a request over its size limit."""
    return ApiError(413, f"request body is larger than {limit} bytes")


def quote(value: str, limit: int = 64) -> str:
    """``value`` for an error message if it is short and printable, else only its length:
    a name the caller typed helps them, a long value is never sent back (it may be PHI,
    and it would make the answer as large as the request)."""
    if len(value) <= limit and value.isprintable():
        return value
    return f"(a value of {len(value)} characters)"


def describe(exc: BaseException) -> str:
    """Where and what kind of error, for logs: no message, since messages from DICOM
    libraries can quote the values they choked on."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    last = frames[-1]
    where = f"{last.filename.rsplit('/', 1)[-1]}:{last.lineno}"
    return f"{type(exc).__name__} at {where} in {last.name}"
