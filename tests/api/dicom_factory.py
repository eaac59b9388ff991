"""Small DICOM instances built in the test, each with fresh UIDs.

Shared by the API tests in this package; nothing here talks to the server.
"""

from __future__ import annotations

import io

import numpy as np
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

CT = CTImageStorage
MR = "1.2.840.10008.5.1.4.1.1.4"
US = "1.2.840.10008.5.1.4.1.1.6.1"
SOP_CLASS = {"CT": CT, "MR": MR, "US": US}


def make_instance(
    study: str | None = None,
    series: str | None = None,
    sop: str | None = None,
    *,
    patient_name: str = "Doe^John",
    patient_id: str = "PID-1",
    study_date: str = "20200115",
    modality: str = "CT",
    rows: int = 4,
    columns: int = 6,
    frames: int = 1,
    bits: int = 16,
    instance_number: int = 1,
    seed: int = 0,
) -> Dataset:
    """A small uncompressed MONOCHROME2 image in Explicit VR Little Endian."""
    ds = Dataset()
    ds.SOPClassUID = SOP_CLASS.get(modality, CT)
    ds.SOPInstanceUID = sop or generate_uid()
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = series or generate_uid()
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.StudyID = "1"
    ds.AccessionNumber = "ACC1"
    ds.StudyDescription = "api test"
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance_number
    ds.PixelSpacing = [0.5, 0.25]
    ds.SliceThickness = 1.5
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    dtype = np.uint16 if bits == 16 else np.uint8
    count = rows * columns * frames
    pixels = ((np.arange(count) * 7 + seed * 13) % (2 ** min(bits, 12))).astype(dtype)
    ds.PixelData = pixels.astype(dtype).tobytes()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    return ds


def to_bytes(ds: Dataset) -> bytes:
    """The instance as a DICOM Part 10 file."""
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def from_bytes(data: bytes) -> Dataset:
    return dcmread(io.BytesIO(data))
