"""JSON request bodies of the REST methods, read as Google's front ends read them.

A body is counted while it arrives (413 past the limit, before the rest is read) and
parsed to Google's rules: UTF-8, an object, no NaN or Infinity, numbers in range,
bounded nesting, no unpaired surrogates. Anything else is a 400, never a 500, and the
answer never quotes the body.
"""

from __future__ import annotations

import json

from anyio import to_thread
from starlette.requests import Request

from . import errors
from .state import ServerState

#: Google's request size limit for every DICOM method but STOW ("Store transaction:
#: Unlimited. All other methods 10 MB", Cloud Healthcare API quotas and limits). A JSON
#: body is parsed in memory, so it is held to this, or to --max-body-mb if lower.
JSON_BODY_LIMIT = 10 * 1024 * 1024
#: How deep a JSON body may nest: the limit of protobuf's JSON parser, which Google's
#: front ends use. No request schema comes near; the validators recurse per level.
MAX_JSON_DEPTH = 100
#: The range of JSON integers: int64 and uint64 fields are the widest in the API.
_INT_RANGE = (-(2**63), 2**64 - 1)


class _Refused(ValueError):
    """Raised from inside the JSON parser's hooks: the message is the answer's."""


async def _read_json_bytes(request: Request, limit: int) -> bytes:
    """The body, counted as it arrives: 413 past ``limit``, before the rest is read (a
    declared Content-Length over it is refused before anything is read)."""
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise errors.too_large(limit)
    chunks, received = [], 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise errors.too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _constant(name: str) -> float:
    raise _Refused(f"request body has {name}, which JSON does not allow")


def _float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _Refused("request body has a number out of range")
    return value


def _int(text: str) -> int:
    value = int(text)  # ValueError past 4,300 digits: not valid JSON here either
    if not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
        raise _Refused("request body has an integer out of the 64-bit range")
    return value


def _check_tree(body: object) -> None:
    """Depth and strings of a parsed body, walked without recursion: deeper than
    :data:`MAX_JSON_DEPTH` or a string with an unpaired surrogate (``"\\ud800"``, which
    could be stored but never sent back as UTF-8) is a 400."""
    todo = [(body, 1)]
    while todo:
        value, depth = todo.pop()
        if isinstance(value, str):
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise errors.invalid("request body has a string with an unpaired "
                                         "surrogate escape") from None
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_JSON_DEPTH:
            raise errors.invalid(f"request body nests deeper than {MAX_JSON_DEPTH} levels")
        items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
        todo.extend((item, depth + 1) for item in items)


def parse_json_body(raw: bytes) -> dict:
    """A request body as Google's JSON parser takes it: UTF-8, an object, no NaN or
    Infinity, numbers in range, bounded nesting; anything else is a 400."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.invalid("request body is not UTF-8") from None
    try:
        body = json.loads(text, parse_constant=_constant, parse_float=_float,
                          parse_int=_int)
    except _Refused as exc:
        raise errors.invalid(str(exc)) from None
    except RecursionError:
        raise errors.invalid(f"request body nests deeper than {MAX_JSON_DEPTH} levels"
                             ) from None
    except ValueError:
        raise errors.invalid("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise errors.invalid("request body must be a JSON object")
    _check_tree(body)
    return body


async def json_body(request: Request, state: ServerState) -> dict:
    """The JSON body of a REST method (never STOW's, which streams to disk)."""
    raw = await _read_json_bytes(request, min(JSON_BODY_LIMIT, state.max_body_bytes))
    if not raw:
        return {}
    # Parsed off the event loop: 10 MB of JSON takes long enough to stall other requests.
    return await to_thread.run_sync(parse_json_body, raw)


