"""What the writer copies as it was read, and that what it writes re-reads the same."""

from __future__ import annotations

import io

from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset

from dicom_deid.corpus.ct import ct_corpus
from dicom_deid.engine.instance import deidentify_bytes
from dicom_deid.engine.plan import build_plan

BASIC = {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}}


def _with_sequences() -> bytes:
    ds = dcmread(io.BytesIO(ct_corpus(total=1, rows=16, columns=16)[0].data))
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = (
        "T-D3000", "SRT", "Chest")
    ds.AnatomicRegionSequence = [region]
    person = Dataset()
    person.PatientName = "QZ^SEQUENCE"
    person.CodeMeaning = "kept"
    ds.ReferencedPatientSequence = [person]
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def test_untouched_sequence_is_copied_byte_for_byte_and_changed_one_is_rewritten() -> None:
    data = _with_sequences()
    out, _ = deidentify_bytes(data, build_plan(BASIC, b"k" * 32))
    src, ds = dcmread(io.BytesIO(data)), dcmread(io.BytesIO(out))
    # The anatomic region has nothing the profile changes: same bytes, same values.
    raw = src.get_item(0x00082218)
    assert raw.value in out
    assert ds.AnatomicRegionSequence[0].CodeMeaning == "Chest"
    # The referenced patient sequence is removed (X in the table).
    assert "ReferencedPatientSequence" not in ds
    assert b"QZ^SEQUENCE" not in out
    assert ds.PixelData == src.PixelData
