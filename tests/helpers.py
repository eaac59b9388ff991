"""Small helpers shared by the API tests."""

from __future__ import annotations

import time
import uuid

import requests


def wait_operation(healthcare, name: str, timeout: float = 120.0) -> dict:
    """Poll ``operations.get`` until done, as a client of the real API would."""
    ops = healthcare.projects().locations().datasets().operations()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        op = ops.get(name=name).execute()
        if op.get("done"):
            return op
        time.sleep(0.1)
    raise TimeoutError(f"operation {name} not done after {timeout}s")


def stow_raw(base_url: str, parts: list[bytes], content_types: list[str] | None = None,
             study: str | None = None) -> requests.Response:
    """POST raw bytes as a multipart/related STOW-RS body (for byte-exact and bad parts)."""
    boundary = uuid.uuid4().hex
    body = bytearray()
    for i, data in enumerate(parts):
        kind = content_types[i] if content_types else "application/dicom"
        body += f"--{boundary}\r\nContent-Type: {kind}\r\n\r\n".encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    url = f"{base_url}/studies" + (f"/{study}" if study else "")
    return requests.post(url, data=bytes(body), headers={
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})


def retrieve_raw(base_url: str, study: str, series: str, sop: str,
                 accept: str = 'multipart/related; type="application/dicom"; transfer-syntax=*'
                 ) -> list[bytes]:
    """GET an instance and split the multipart body into its parts' bytes."""
    r = requests.get(f"{base_url}/studies/{study}/series/{series}/instances/{sop}",
                     headers={"Accept": accept})
    r.raise_for_status()
    boundary = r.headers["content-type"].split("boundary=")[1].strip('"')
    parts = []
    for chunk in r.content.split(f"--{boundary}".encode())[1:-1]:
        head, _, data = chunk.partition(b"\r\n\r\n")
        parts.append(data[:-2])
    return parts
