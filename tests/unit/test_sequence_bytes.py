"""The byte-level sequence rewriter gives the same datasets as the pydicom path.

Sequences of little-endian instances under the tag-driven profiles are rewritten as
bytes (engine.sequence_bytes), inside the dataset path and inside the byte path
(engine.instance_bytes, which walks the top level the same way); everything else
goes through pydicom datasets. Both must agree value for value on every input that
both can handle.
"""

from __future__ import annotations

import io

import pytest
from pydicom import dcmread

from dicom_deid.engine import instance_bytes, raw_elements
from dicom_deid.engine.instance import deidentify_bytes
from dicom_deid.engine.plan import build_plan
from dicom_deid.engine.reading import UnreadableInstance
from tests.helpers import engine_inputs

DATE_KEY = "c2hpZnQtZGF0ZXMtYnkta2V5LTAxMjM0NTY3ODlhYmM="
CONFIGS = {
    "basic": {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}},
    "basic-dates": {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"},
                    "text": {"additionalTransformations": [
                        {"infoTypes": ["DATE"], "dateShiftConfig": {"cryptoKey": DATE_KEY}}]}},
    "minimal": {"dicom": {"filterProfile": "MINIMAL_KEEP_LIST_PROFILE"}},
    "keep-all": {"dicom": {"filterProfile": "KEEP_ALL_PROFILE"}},
    # A keep list alone: these tags only, sequences kept whole (their UIDs replaced).
    "keep-list": {"dicom": {"keepList": {"tags": [
        "StudyInstanceUID", "SeriesInstanceUID", "PatientID", "Modality", "Rows", "Columns",
        "PixelData", "ReferencedImageSequence", "SourceImageSequence",
        "AnatomicRegionSequence", "RequestAttributesSequence", "ProcedureCodeSequence",
        "ReferencedStudySequence", "ReferencedPerformedProcedureStepSequence",
        "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"]}}},
}


INPUTS = engine_inputs()


def _both(data: bytes, config: dict, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN202
    plan = build_plan(config, b"k" * 32)
    try:
        fast, _ = deidentify_bytes(data, plan)
    except (UnreadableInstance, ValueError):
        return None
    with monkeypatch.context() as m:
        m.setattr(raw_elements, "rewrite_bytes", lambda *a: None)
        m.setattr(instance_bytes, "eligible", lambda plan: False)
        slow, _ = deidentify_bytes(data, build_plan(config, b"k" * 32))
    return dcmread(io.BytesIO(fast)), dcmread(io.BytesIO(slow))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_byte_path_equals_dataset_path(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rewritten = []
    real = raw_elements.rewrite_bytes

    def counting(*args: object) -> object:
        out = real(*args)
        rewritten.append(out is not None)
        return out

    monkeypatch.setattr(raw_elements, "rewrite_bytes", counting)
    real_sequence = instance_bytes.SequenceRewriter.sequence

    def counting_sequence(self: object, *args: object) -> object:
        rewritten.append(True)
        return real_sequence(self, *args)

    monkeypatch.setattr(instance_bytes.SequenceRewriter, "sequence", counting_sequence)
    compared = 0
    for data in INPUTS:
        pair = _both(data, CONFIGS[name], monkeypatch)
        if pair is None:
            continue
        fast, slow = pair
        assert fast == slow
        compared += 1
    assert compared > 40
    assert sum(rewritten) > 20  # the byte path did run, on many sequences
