"""Four hostile QIDO searches at once: does the server still answer everyone else?

Issue 16's bar: while four requests with backtracking wildcards run together (person
names, matched by the server's walk; other strings, by SQLite's GLOB), a plain
``datasets.list`` answers within 1 s. This stores ``--instances`` instances with a long
patient name into a fresh ``dicom-deid serve`` (default workers), starts the four
searches from four threads, lists datasets ten times meanwhile, and prints each
search's status and time and the slowest and median list.

    .venv/bin/python bench/hostile_qido.py --instances 1000
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from dicom_deid.devstack import ServerProcess, free_port, healthcare_client

PARENT = "projects/bench/locations/local"
NAME = "Mustermann-Schmidt^Maximilian Alexander^von" * 2
HOSTILE = {"PatientName": "*?" * 30 + "#", "StudyDescription": "*a" * 30 + "#",
           "PatientID": "?*" * 30 + "#", "ReferringPhysicianName": "*" + "?*" * 60 + "#"}


def _instance() -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = NAME, "X" * 60, "CT"
    ds.StudyDescription = "a" * 60
    ds.Rows = ds.Columns = 4
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.zeros((4, 4), np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _stow(web: str, parts: list[bytes]) -> None:
    boundary = uuid.uuid4().hex
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                    + p + b"\r\n" for p in parts) + f"--{boundary}--\r\n".encode()
    r = requests.post(f"{web}/studies", data=body, timeout=600, headers={
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})
    r.raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data", free_port(), Path(tmp) / "log").start()
        try:
            client = healthcare_client(server.url)
            client.projects().locations().datasets().create(
                parent=PARENT, datasetId="q", body={}).execute()
            client.projects().locations().datasets().dicomStores().create(
                parent=f"{PARENT}/datasets/q", dicomStoreId="s", body={}).execute()
            web = f"{server.url}/v1/{PARENT}/datasets/q/dicomStores/s/dicomWeb"
            for start in range(0, args.instances, 100):
                _stow(web, [_instance() for _ in range(min(100, args.instances - start))])

            def attack(key: str) -> tuple[str, int, float]:
                began = time.monotonic()
                r = requests.get(f"{web}/studies", params={key: HOSTILE[key]}, timeout=600)
                return key, r.status_code, time.monotonic() - began

            with ThreadPoolExecutor(len(HOSTILE)) as pool:
                attacks = [pool.submit(attack, key) for key in HOSTILE]
                lists = []
                for _ in range(10):
                    r = requests.get(f"{server.url}/v1/{PARENT}/datasets", timeout=30)
                    r.raise_for_status()
                    lists.append(r.elapsed.total_seconds())
                results = [a.result() for a in attacks]
        finally:
            server.stop()
    print(f"{args.instances} instances; four hostile searches at once")
    print("| key | pattern | status | seconds |")
    print("| --- | --- | --- | --- |")
    for key, status, seconds in results:
        print(f"| {key} | {len(HOSTILE[key])} characters | {status} | {seconds:.3f} |")
    print(f"datasets.list meanwhile: slowest {max(lists):.3f} s, "
          f"median {statistics.median(lists):.3f} s (bar: 1 s)")


if __name__ == "__main__":
    main()
