"""Small helpers shared by the tests that drive the local server through its clients.

Starting the stack, building the discovery client and waiting for an operation are
``dicom_deid.devstack``'s (the demo and the benches use the same); what is only the
tests' lives here.
"""

from __future__ import annotations

import io
import uuid
import warnings

import requests
from googleapiclient.discovery import Resource
from pydicom import dcmread

PROJECT, LOCATION = "test-project", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"


def stores_api(healthcare: Resource) -> Resource:
    """``projects.locations.datasets.dicomStores`` of a discovery client."""
    return healthcare.projects().locations().datasets().dicomStores()


def new_store(healthcare: Resource, dataset: str, prefix: str = "s") -> str:
    """A new, empty DICOM store ``<prefix>-<random>`` in ``dataset``; its name. Random
    IDs, so tests sharing the session's dataset never meet each other's stores."""
    store_id = f"{prefix}-{uuid.uuid4().hex[:12]}"
    stores_api(healthcare).create(parent=dataset, dicomStoreId=store_id, body={}).execute()
    return f"{dataset}/dicomStores/{store_id}"


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


def pixel_format(source: str | bytes) -> tuple | None:
    """What the decode, paint and encode path depends on: the syntax and the pixel
    module's shape, not what the image shows (a path or a file's bytes; None when
    pydicom cannot read the header). Tests that run one file per format use it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = dcmread(io.BytesIO(source) if isinstance(source, bytes) else source,
                         force=True, stop_before_pixels=True)
        except Exception:
            return None
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        frames = 1
    meta = getattr(ds, "file_meta", None)
    return (str(getattr(meta, "TransferSyntaxUID", None)), ds.get("PhotometricInterpretation"),
            ds.get("BitsAllocated"), ds.get("BitsStored"), ds.get("PixelRepresentation"),
            ds.get("SamplesPerPixel"), ds.get("PlanarConfiguration"), frames > 1)


def engine_inputs() -> list[bytes]:
    """Inputs the engine's two paths are compared on: a marker-planted instance, two
    Enhanced MR and two MR from the generators, and every real file the registry
    packages ship (``corpus.realworld``)."""
    from dicom_deid.corpus import realworld
    from dicom_deid.corpus.markers import marked_instance
    from dicom_deid.corpus.mr import iter_mr_corpus
    from dicom_deid.corpus.multiframe import iter_multiframe_corpus

    data = [marked_instance(seed=31).to_bytes()]
    data += [i.data for i in iter_multiframe_corpus(2, seed=3)]
    data += [i.data for i in iter_mr_corpus(2, seed=3)]
    for f in realworld.files():
        if f.path.suffix in (".dcm", ""):
            data.append(f.path.read_bytes())
    return data
