"""The MR and multi-frame corpus generators: valid Part 10, deterministic, expected shapes."""

from __future__ import annotations

import io

import pydicom
from pydicom.uid import EnhancedMRImageStorage, MRImageStorage

from dicom_deid.corpus.ct import ct_dataset
from dicom_deid.corpus.mr import PRIVATE_CREATOR, iter_mr_corpus, mr_dataset
from dicom_deid.corpus.multiframe import frame_count, iter_multiframe_corpus


def _read(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data), force=False)


def test_mr_instances_are_valid_and_deterministic():
    first = list(iter_mr_corpus(7, seed=3, studies=2, series_per_study=2))
    again = list(iter_mr_corpus(7, seed=3, studies=2, series_per_study=2))
    assert [i.data for i in first] == [i.data for i in again]
    assert first[0].data != next(iter_mr_corpus(1, seed=4)).data
    assert len({i.sop_uid for i in first}) == 7
    assert len({i.series_uid for i in first}) == 4
    for inst in first:
        ds = _read(inst.data)
        assert ds.file_meta.MediaStorageSOPClassUID == MRImageStorage == ds.SOPClassUID
        assert ds.SOPInstanceUID == inst.sop_uid
        px = ds.pixel_array
        assert px.shape == (256, 256) and px.dtype.itemsize == 2
        assert 0 < int(px.max()) <= 4095
        # PHI-shaped values where a de-identifier has to reach: nested and private.
        assert ds.RequestAttributesSequence[0].AccessionNumber == ds.AccessionNumber
        assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID
        block = ds.private_block(0x0029, PRIVATE_CREATOR)
        assert str(ds.PatientName).encode() in block[0x10].value


def test_mr_patient_is_the_ct_patient_of_the_same_study():
    ct = ct_dataset(9, 1, 0, 0, 1, rows=16, columns=16)
    mr = mr_dataset(9, 1, 0, 0, 1, rows=16, columns=16)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"):
        assert ct[keyword].value == mr[keyword].value
    assert ct.StudyInstanceUID != mr.StudyInstanceUID
    assert ct.StudyDate < mr.StudyDate


def test_multiframe_instances_are_valid_and_deterministic():
    kwargs = {"studies": 2, "frames": (3, 5), "rows": 64, "columns": 48}
    first = list(iter_multiframe_corpus(3, seed=5, **kwargs))
    again = list(iter_multiframe_corpus(3, seed=5, **kwargs))
    assert [i.data for i in first] == [i.data for i in again]
    assert len({i.sop_uid for i in first}) == 3
    for inst in first:
        ds = _read(inst.data)
        assert ds.SOPClassUID == EnhancedMRImageStorage
        n = int(ds.NumberOfFrames)
        assert 3 <= n <= 5
        assert ds.pixel_array.shape == (n, 64, 48)
        assert len(ds.PerFrameFunctionalGroupsSequence) == n
        frame = ds.PerFrameFunctionalGroupsSequence[n - 1].FrameContentSequence[0]
        assert list(frame.DimensionIndexValues) == [1, n]
        assert frame.FrameAcquisitionDateTime.startswith(ds.StudyDate)
        shared = ds.SharedFunctionalGroupsSequence[0]
        assert shared.ReferencedImageSequence[0].ReferencedSOPInstanceUID
        assert (ds.DimensionIndexSequence[0].DimensionOrganizationUID
                == ds.DimensionOrganizationSequence[0].DimensionOrganizationUID)


def test_default_frame_counts_span_30_to_60():
    counts = {frame_count(0, study, series, (30, 60)) for study in range(5)
              for series in range(20)}
    assert min(counts) >= 30 and max(counts) <= 60 and len(counts) > 10
