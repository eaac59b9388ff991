"""multipart/related bodies: streaming parse of uploads, streaming build of responses.

Uploads go straight from the socket to temp files, part by part, so memory stays
flat whatever the size of a STOW request.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

import anyio
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from . import errors
from .blobs import BlobStore

CHUNK = 1024 * 1024


def content_type(header: str | None) -> tuple[str, dict[str, str]]:
    """Split a Content-Type or Accept item into its type and parameters (lower-case keys)."""
    kind, params = parse_options_header(header or "")
    return (
        kind.decode("latin-1").strip().lower(),
        {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in params.items()},
    )


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
            boundary,
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


async def stream_files(
    boundary: str, items: Iterable[tuple[str, Path]]
) -> AsyncIterator[bytes]:
    """Yield a multipart/related body made of whole files, read in chunks."""
    for kind, path in items:
        yield f"--{boundary}\r\nContent-Type: {kind}\r\n\r\n".encode("latin-1")
        async with await anyio.open_file(path, "rb") as f:
            while chunk := await f.read(CHUNK):
                yield chunk
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode("latin-1")


async def stream_bytes(
    boundary: str, items: Iterable[tuple[str, bytes]]
) -> AsyncIterator[bytes]:
    for kind, data in items:
        yield f"--{boundary}\r\nContent-Type: {kind}\r\n\r\n".encode("latin-1") + data + b"\r\n"
    yield f"--{boundary}--\r\n".encode("latin-1")


def file_size(path: Path) -> int:
    return os.stat(path).st_size
