"""multipart/related bodies: streaming parse of uploads, streaming build of responses.

Uploads go straight from the socket to temp files, part by part, so memory stays
flat whatever the size of a STOW request.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

from anyio import to_thread
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from . import errors
from .blobs import BlobStore


def content_type(header: str | None) -> tuple[str, dict[str, str]]:
    """Split a Content-Type or Accept item into its type and parameters (lower-case keys)."""
    kind, params = parse_options_header(header or "")
    return (
        kind.decode("latin-1").strip().lower(),
        {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in params.items()},
    )


# RFC 2046 5.1.1: 1 to 70 of these characters, the last not a space. A longer one is not
# a boundary any client makes, and the parser's work per byte grows with its length.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")


def check_boundary(boundary: str) -> str:
    """``boundary`` if RFC 2046 allows it, else 400."""
    if not _BOUNDARY.fullmatch(boundary):
        raise errors.invalid("the multipart boundary must be 1 to 70 characters that "
                             "RFC 2046 allows")
    return boundary


@dataclass
class Part:
    temp_path: str
    content_type: str
    complete: bool


class RelatedParser:
    """Feed request chunks in; get back the parts, each already in its own temp file."""

    def __init__(self, boundary: str, blobs: BlobStore) -> None:
        self.parts: list[Part] = []
        self._blobs = blobs
        self._file = None
        self._headers: dict[str, str] = {}
        self._field = b""
        self._value = b""
        self._parser = MultipartParser(
            check_boundary(boundary),
            {
                "on_part_begin": self._begin,
                "on_header_field": self._on_field,
                "on_header_value": self._on_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_done,
                "on_part_data": self._data,
                "on_part_end": self._end,
            },
            max_header_count=32,
        )

    def _begin(self) -> None:
        self._headers = {}

    def _on_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _on_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").strip().lower()] = self._value.decode(
            "latin-1"
        ).strip()
        self._field = self._value = b""

    def _headers_done(self) -> None:
        self._file = self._blobs.new_temp()
        kind, _ = content_type(self._headers.get("content-type", "application/dicom"))
        self.parts.append(Part(self._file.name, kind, complete=False))

    def _data(self, data: bytes, start: int, end: int) -> None:
        self._file.write(data[start:end])

    def _end(self) -> None:
        self._file.close()
        self._file = None
        self.parts[-1].complete = True

    def feed(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except MultipartParseError:
            self.discard()
            raise errors.invalid("malformed multipart/related body") from None

    def finish(self) -> list[Part]:
        self._parser.finalize()
        if self._file is not None:
            self._file.close()
            self._file = None
        return self.parts

    def discard(self) -> None:
        """Remove every temp file (used when the request as a whole is refused)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        for part in self.parts:
            Path(part.temp_path).unlink(missing_ok=True)


def new_boundary() -> str:
    return secrets.token_hex(16)


def _part_prefix(boundary: str, kind: str) -> bytes:
    return f"--{boundary}\r\nContent-Type: {kind}\r\n\r\n".encode("latin-1")


def _read_part(prefix: bytes, path: Path, size: int) -> memoryview:
    """One whole part (headers, file, CRLF) in one buffer, read in one worker-thread call."""
    buf = bytearray(len(prefix) + size + 2)
    buf[: len(prefix)] = prefix
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        got = 0
        while got < size:
            n = f.readinto(view[len(prefix) + got : len(prefix) + size])
            if not n:
                raise OSError(f"{path} is shorter than its indexed size")
            got += n
    buf[-2:] = b"\r\n"
    return view


def files_length(boundary: str, items: list[tuple[str, Path, int]]) -> int:
    """Exact body length, so the response has a Content-Length and is not chunk-encoded."""
    return sum(len(_part_prefix(boundary, k)) + size + 2 for k, _, size in items) + len(
        f"--{boundary}--\r\n")


async def stream_sized_files(boundary: str, items: list[tuple[str, Path, int]],
                             ahead: int = 2) -> AsyncIterator[memoryview | bytes]:
    """A multipart/related body of whole files: one thread hop per file, ``ahead`` read early.

    Reading ahead overlaps the disk with the socket (and keeps more than one read in
    flight, which is what cold small-file reads need).
    """
    pending: deque[asyncio.Future] = deque()
    nxt = 0

    def start() -> None:
        nonlocal nxt
        kind, path, size = items[nxt]
        pending.append(asyncio.ensure_future(
            to_thread.run_sync(_read_part, _part_prefix(boundary, kind), path, size)))
        nxt += 1

    try:
        while nxt < min(ahead, len(items)):
            start()
        while pending:
            data = await pending.popleft()
            if nxt < len(items):
                start()
            yield data
        yield f"--{boundary}--\r\n".encode("latin-1")
    finally:
        for fut in pending:
            fut.cancel()


async def stream_bytes(
    boundary: str, items: Iterable[tuple[str, bytes]]
) -> AsyncIterator[bytes]:
    for kind, data in items:
        yield f"--{boundary}\r\nContent-Type: {kind}\r\n\r\n".encode("latin-1") + data + b"\r\n"
    yield f"--{boundary}--\r\n".encode("latin-1")
