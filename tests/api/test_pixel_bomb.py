"""Compressed pixel data decodes only up to a limit: the codec variant of a deflate bomb.

A black 1024x1024 JPEG frame is ~12 kB; its header (Rows, Columns, NumberOfFrames)
says what decoding it costs. An instance claiming many such frames is a small upload
that decodes to gigabytes when transcoded, rendered or redacted. Here a server runs
with ``--max-decoded-mb 8`` and holds 16 such frames (16 MiB decoded): a single frame
still renders, transcoding the whole instance is refused with 406 naming the limit,
and text redaction fails that instance alone with the limit as its reason.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, generate_uid

from dicom_deid.devstack import ServerProcess, free_port, healthcare_client, wait_for_operation
from dicom_deid.engine.pixels.decode import DECODED_LIMIT_ENV, check_decoded_size
from dicom_deid.engine.pixels.messages import PixelError
from tests.helpers import PARENT, stores_api, stow_raw

FRAMES, SIDE = 16, 1024
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"


def _bomb() -> tuple[Dataset, bytes]:
    frame = io.BytesIO()
    Image.new("L", (SIDE, SIDE)).save(frame, format="JPEG", quality=75)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = US_MULTIFRAME
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientName, ds.PatientID = "US", "Bomb^Pixel", "PB-1"
    ds.Rows = ds.Columns = SIDE
    ds.NumberOfFrames = FRAMES
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = encapsulate([frame.getvalue()] * FRAMES)
    ds["PixelData"].VR = "OB"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return ds, buf.getvalue()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "data", free_port(), tmp_path / "server.log",
                         args=["--max-decoded-mb", "8"]).start()
    yield proc
    proc.stop()


def test_the_limit_is_checked_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    ds, data = _bomb()
    assert len(data) < 300_000  # a small upload (~12 kB a frame)...
    monkeypatch.setenv(DECODED_LIMIT_ENV, "8")
    check_decoded_size(ds, 1)  # one frame: 1 MiB
    with pytest.raises(PixelError, match="decode to 16 MiB, beyond the limit of 8 MiB"):
        check_decoded_size(ds)  # ...that decodes to 16 MiB


def test_server_refuses_to_decode_beyond_the_limit(server: ServerProcess) -> None:
    ds, data = _bomb()
    client = healthcare_client(server.url)
    client.projects().locations().datasets().create(
        parent=PARENT, datasetId="px", body={}).execute()
    for store_id in ("src", "dst"):
        stores_api(client).create(parent=f"{PARENT}/datasets/px", dicomStoreId=store_id,
                                  body={}).execute()
    src = f"{PARENT}/datasets/px/dicomStores/src"
    web = f"{server.url}/v1/{src}/dicomWeb"
    assert stow_raw(web, [data]).status_code == 200
    base = (f"{web}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}")

    one = requests.get(f"{base}/frames/3/rendered", headers={"Accept": "image/png"},
                       timeout=60)
    assert one.status_code == 200 and one.content.startswith(b"\x89PNG")
    whole = requests.get(base, timeout=60, headers={
        "Accept": "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"})
    assert whole.status_code == 406, whole.text[:300]
    assert "beyond the limit of 8 MiB" in whole.json()["error"]["message"]
    as_stored = requests.get(base, timeout=60, headers={
        "Accept": "application/dicom; transfer-syntax=*"})
    assert as_stored.status_code == 200 and as_stored.content == data

    op = stores_api(client).deidentify(sourceStore=src, body={
        "destinationStore": f"{PARENT}/datasets/px/dicomStores/dst",
        "config": {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"},
                   "image": {"textRedactionMode": "REDACT_ALL_TEXT"}}}).execute()
    done = wait_for_operation(client, op["name"], timeout=60)
    assert done["metadata"]["counter"] == {"failure": "1"}, done
    failures = requests.get(done["metadata"]["logsUrl"], timeout=10).json()["failures"]
    assert len(failures) == 1 and "beyond the limit of 8 MiB" in failures[0]["reason"]
