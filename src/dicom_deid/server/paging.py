"""``pageSize`` / ``pageToken`` paging as the API's list methods do it, and the strict
integer parsing every query parameter shares."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from . import errors

MAX_PAGE = 1000
INT64_MAX = 2**63 - 1
# ASCII digits only: Python's int() also takes "1_000", " 7 " and other scripts' digits,
# which no Google API accepts; 20 digits is more than any 64-bit value needs.
_INTEGER = re.compile(r"[+-]?[0-9]{1,20}")


def parse_int(value: str, name: str, lo: int, hi: int) -> int:
    """``value`` as an integer in ``[lo, hi]``, else 400 naming ``name`` and the range.
    Checked here, in Python, so a value past 64 bits never reaches SQLite (which raises
    OverflowError for it)."""
    if not _INTEGER.fullmatch(value) or not lo <= int(value) <= hi:
        raise errors.invalid(f"{name} must be an integer from {lo} to {hi}")
    return int(value)


def page(params: dict, rows: Sequence, key: str, render: Callable) -> dict:
    """One page of ``rows`` under ``key``; the token is an opaque offset."""
    size = min(parse_int(params.get("pageSize") or "100", "pageSize", 1, INT64_MAX), MAX_PAGE)
    start = parse_int(params.get("pageToken") or "0", "pageToken", 0, INT64_MAX)
    body: dict = {key: [render(r) for r in rows[start : start + size]]}
    if start + size < len(rows):
        body["nextPageToken"] = str(start + size)
    return body
