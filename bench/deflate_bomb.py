"""What a deflate bomb costs the local server: peak memory of one STOW and reads.

A Part 10 file in Deflated Explicit VR Little Endian whose pixel data is zeros
deflates about 1000:1, so a 2 MB upload can claim 2 GB. This builds one that inflates
to ``--inflated-mb`` MiB, starts ``dicom-deid serve --workers 1`` on a temporary
directory, stores it with single-part STOW and, if it was accepted, reads its
metadata and retrieves it (default Accept, which transcodes); after each step it
prints the server's peak resident memory (VmHWM) and the time the step took.

    .venv/bin/python bench/deflate_bomb.py --inflated-mb 2048
"""

from __future__ import annotations

import argparse
import io
import struct
import tempfile
import time
import zlib
from pathlib import Path

import requests
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from dicom_deid.devstack import ServerProcess, free_port, healthcare_client

PARENT = "projects/bench/locations/local"


def bomb(mib: int) -> tuple[Dataset, bytes]:
    """A valid Part 10 file whose deflated body inflates to ``mib`` MiB of pixel zeros,
    deflated a MiB at a time so that building it costs no more than that."""
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = (
        generate_uid() for _ in range(3))
    ds.Modality, ds.SamplesPerPixel, ds.PhotometricInterpretation = "OT", 1, "MONOCHROME2"
    ds.NumberOfFrames, ds.Rows, ds.Columns = mib, 1024, 1024
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    head = body.getvalue() + b"\xe0\x7f\x10\x00OB\0\0" + struct.pack("<L", mib << 20)
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = squeeze.compress(head) + squeeze.flush(zlib.Z_FULL_FLUSH)
    block = squeeze.compress(bytes(1 << 20)) + squeeze.flush(zlib.Z_FULL_FLUSH)
    deflated = first + block * mib + squeeze.flush()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = (
        ds.SOPClassUID, ds.SOPInstanceUID)
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    out = io.BytesIO()
    out.write(b"\0" * 128 + b"DICM")
    meta_buf = DicomBytesIO()
    meta_buf.is_little_endian, meta_buf.is_implicit_VR = True, False
    write_file_meta_info(meta_buf, meta)
    out.write(meta_buf.getvalue() + deflated)
    return ds, out.getvalue()


def peak_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no VmHWM")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inflated-mb", type=int, default=2048)
    args = parser.parse_args()
    ds, data = bomb(args.inflated_mb)
    print(f"upload: {len(data) / 1e6:.1f} MB, inflates to {args.inflated_mb} MiB")
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data", free_port(), Path(tmp) / "log",
                               args=["--workers", "1"]).start()
        try:
            client = healthcare_client(server.url)
            client.projects().locations().datasets().create(
                parent=PARENT, datasetId="d", body={}).execute()
            client.projects().locations().datasets().dicomStores().create(
                parent=f"{PARENT}/datasets/d", dicomStoreId="s", body={}).execute()
            web = f"{server.url}/v1/{PARENT}/datasets/d/dicomStores/s/dicomWeb"
            pid = server.proc.pid
            print("| step | status | seconds | server peak RSS |")
            print("| --- | --- | --- | --- |")
            print(f"| idle | | | {peak_mib(pid)} MiB |")
            start = time.monotonic()
            r = requests.post(f"{web}/studies", data=data, timeout=600,
                              headers={"Content-Type": "application/dicom"})
            print(f"| STOW | {r.status_code} | {time.monotonic() - start:.1f} | "
                  f"{peak_mib(pid)} MiB |")
            if r.status_code != 200:
                return
            inst = (f"{web}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                    f"/instances/{ds.SOPInstanceUID}")
            for step, url, accept in (("metadata", f"{inst}/metadata", "application/dicom+json"),
                                      ("retrieve", inst, "application/dicom")):
                start = time.monotonic()
                r = requests.get(url, headers={"Accept": accept}, timeout=600)
                print(f"| {step} | {r.status_code} | {time.monotonic() - start:.1f} | "
                      f"{peak_mib(pid)} MiB |")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
