"""QIDO-RS results a page at a time.

dicomweb-client's ``get_remaining=True`` keeps every page's DICOM JSON until the last
one has arrived: at 20,000 instances the manifest's search held hundreds of MiB of
dicts that the caller turned into a few MiB of rows. Here each page is handed over and
dropped before the next is asked for, so a caller that keeps what it needs keeps
memory to one page plus its own rows, whatever the store's size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["QIDO_PAGE", "search_pages"]

#: Results asked for per request: well under Google's instance limit (50,000), large
#: enough that paging costs one request per thousand instances.
QIDO_PAGE = 1000


def search_pages(search: Callable[..., list[dict]], *, page: int = QIDO_PAGE,
                 **kwargs: Any) -> Iterator[list[dict]]:
    """Call ``search(limit=page, offset=n, **kwargs)`` for n = 0, page, ... and yield
    each non-empty result. It stops at the first empty page, as dicomweb-client does:
    a server may answer fewer than ``limit`` results and still have more."""
    offset = 0
    while True:
        rows = search(limit=page, offset=offset, **kwargs)
        if not rows:
            return
        yield rows
        offset += len(rows)
