"""``pageSize`` / ``pageToken`` paging as the API's list methods do it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from . import errors

MAX_PAGE = 1000


def page(params: dict, rows: Sequence, key: str, render: Callable) -> dict:
    """One page of ``rows`` under ``key``; the token is an opaque offset."""
    try:
        size = min(int(params.get("pageSize") or 100), MAX_PAGE)
        start = int(params.get("pageToken") or 0)
    except ValueError:
        raise errors.invalid("pageSize and pageToken must be integers") from None
    if size <= 0 or start < 0:
        raise errors.invalid("pageSize must be positive and pageToken valid")
    body: dict = {key: [render(r) for r in rows[start : start + size]]}
    if start + size < len(rows):
        body["nextPageToken"] = str(start + size)
    return body
