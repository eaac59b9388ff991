"""Inflating Deflated Explicit VR Little Endian bodies, never past a size limit.

A deflated body of ~1 MB can inflate to ~1 GB (deflate reaches about 1000:1 on
zeros), so the size of an upload says nothing about the memory its reading takes.
Every inflate in the process goes through :func:`inflate`, which first measures the
inflated size with a streaming inflater that keeps nothing and stops one chunk past
the limit: a refused body costs a chunk of memory, an accepted one what it always
cost (one inflated copy).

pydicom inflates a deflated body whole, with ``zlib.decompress``, inside ``dcmread``.
Importing this module points pydicom's reader at a guarded ``zlib`` (see
:func:`_guard_pydicom`), so every ``dcmread`` in the process, the server's and the
engine's, is held to the same limit without each caller having to remember it.

The limit is a process setting, read from ``DICOM_DEID_MAX_INFLATED_MB`` (which
``dicom-deid serve --max-inflated-mb`` sets), so that it reaches the server's forked
workers and the processes that de-identify, and pydicom's reads inside them.
"""

from __future__ import annotations

import os
import types
import zlib

import pydicom.filereader

LIMIT_ENV = "DICOM_DEID_MAX_INFLATED_MB"
#: 512 MiB: far above what the syntax is used for (reports, small images), while
#: reading one costs twice its inflated size and a transcoding retrieve four times.
#: Not the request body limit: its default (4 GiB) would let a 4 MB upload cost 8 GB
#: on every read. ``serve`` lowers it to ``--max-body-mb`` when that is smaller.
DEFAULT_MAX_INFLATED_MB = 512
_CHUNK = 1 << 20
_MIB = 1 << 20


class InflateLimitExceeded(ValueError):
    """A deflated body that inflates beyond the limit; the message names the limit only."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the deflated dataset inflates beyond the limit of {_size(limit)}")
        self.limit = limit


def _size(n: int) -> str:
    return f"{n // _MIB} MiB" if n % _MIB == 0 else f"{n} bytes"


def max_inflated_bytes() -> int:
    """The process's limit: ``DICOM_DEID_MAX_INFLATED_MB`` if it is a positive whole
    number of MiB, else the default."""
    value = os.environ.get(LIMIT_ENV, "").strip()
    mb = int(value) if value.isascii() and value.isdigit() and int(value) > 0 \
        else DEFAULT_MAX_INFLATED_MB
    return mb * _MIB


def inflated_size(data: bytes | memoryview, limit: int | None = None,
                  wbits: int = -zlib.MAX_WBITS) -> int:
    """The size ``data`` inflates to, found keeping at most one chunk of output;
    :class:`InflateLimitExceeded` as soon as it passes ``limit``.

    A corrupt stream raises ``zlib.error`` as ``zlib.decompress`` would; bytes after
    the end of the stream (a writer's padding byte) are ignored, as it ignores them.
    """
    limit = max_inflated_bytes() if limit is None else limit
    inflater = zlib.decompressobj(wbits)
    pending: bytes | memoryview = data
    total = 0
    while not inflater.eof:
        out = inflater.decompress(pending, _CHUNK)
        total += len(out)
        if total > limit:
            raise InflateLimitExceeded(limit)
        pending = inflater.unconsumed_tail
        if not out and not pending:
            break  # all input consumed without reaching the end of the stream
    if not inflater.eof:  # what zlib.decompress says of a stream that stops early
        raise zlib.error("Error -5 while decompressing data: incomplete or truncated stream")
    return total


def inflate(data: bytes | memoryview, limit: int | None = None,
            wbits: int = -zlib.MAX_WBITS, bufsize: int = zlib.DEF_BUF_SIZE) -> bytes:
    """``data`` inflated, or :class:`InflateLimitExceeded` before any of it is kept.

    Measured first, then inflated in one call: twice the CPU of a single pass, but no
    memory beyond the result, and deflated instances are rare.
    """
    size = inflated_size(data, limit, wbits)
    return zlib.decompress(data, wbits, max(size, bufsize, 1))


def _guard_pydicom() -> None:
    """Make pydicom's reader inflate through :func:`inflate`.

    ``pydicom.filereader`` calls ``zlib.decompress`` through its module global
    ``zlib``; that global becomes a copy of the module whose ``decompress`` is
    :func:`inflate`. Failing loudly here is better than a reader left unguarded; if
    pydicom inflated some other way, tests/api/test_deflate_bomb.py would fail.
    """
    if not isinstance(getattr(pydicom.filereader, "zlib", None), types.ModuleType | _Guarded):
        raise ImportError("pydicom.filereader no longer inflates through its zlib global: "
                          "the inflate limit cannot be applied")
    pydicom.filereader.zlib = _Guarded()


def _decompress(data: bytes, wbits: int = zlib.MAX_WBITS,
                bufsize: int = zlib.DEF_BUF_SIZE) -> bytes:
    """``zlib.decompress``'s signature, with the process's limit."""
    return inflate(data, None, wbits, bufsize)


class _Guarded(types.SimpleNamespace):
    """``zlib`` as pydicom's reader sees it: the module, with a limited ``decompress``."""

    def __init__(self) -> None:
        super().__init__(**{k: v for k, v in vars(zlib).items() if not k.startswith("__")})
        self.decompress = _decompress


_guard_pydicom()
