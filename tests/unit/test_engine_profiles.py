"""The tag filter profiles on an instance with a unique marker in every E.1-1 attribute.

The marker corpus plants a marker in every table attribute a composite IOD can carry,
at the top level and inside nested sequences, in private elements and inside free
text. The output bytes are searched for every marker, and each table attribute's fate
is checked against its row.
"""

from __future__ import annotations

import io

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from dicom_deid import IMPLEMENTATION_CLASS_UID
from dicom_deid.corpus.ct import ct_corpus
from dicom_deid.corpus.markers import SAFE_PRIVATE, MarkedInstance, marked_instance
from dicom_deid.engine.dates import shift_days
from dicom_deid.engine.decisions import Context, required_by, resolve, uid_tags
from dicom_deid.engine.instance import deidentify_bytes
from dicom_deid.engine.plan import build_plan
from dicom_deid.engine.uids import new_uid

KEY = b"k" * 32
BASIC = {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}}
CONTENTS = {"dicom": {"filterProfile": "DEIDENTIFY_TAG_CONTENTS"}}
MINIMAL = {"dicom": {"filterProfile": "MINIMAL_KEEP_LIST_PROFILE"}}
KEEP_ALL = {"dicom": {"filterProfile": "KEEP_ALL_PROFILE"}}
DATE_KEY = "c2hpZnQtZGF0ZXMtYnkta2V5LTAxMjM0NTY3ODlhYmM="  # 32 bytes, base64

CLINICAL = ("Modality", "BodyPartExamined", "Rows", "Columns", "PixelSpacing", "SliceThickness",
            "ImagePositionPatient", "ImageOrientationPatient", "WindowCenter", "WindowWidth",
            "RescaleIntercept", "RescaleSlope", "BitsAllocated", "BitsStored",
            "PhotometricInterpretation", "SamplesPerPixel", "PixelRepresentation")


@pytest.fixture(scope="module")
def marked() -> MarkedInstance:
    return marked_instance(seed=3)


def run(config: dict, data: bytes, **kw: object) -> tuple[bytes, Dataset]:
    out, _ = deidentify_bytes(data, build_plan(config, KEY, **kw))
    return out, dcmread(io.BytesIO(out))


def leftovers(marked: MarkedInstance, out: bytes, kinds: tuple[str, ...]) -> list[str]:
    return [f"{p.kind} {p.path} {p.marker}" for p in marked.plants
            if p.kind in kinds and p.searchable and p.marker.encode() in out]


def at(ds: Dataset, path: tuple[int, ...]) -> object:
    node = ds
    for tag in path[:-1]:
        if tag not in node or not node[tag].value:
            return None
        node = node[tag].value[0]
    return node.get(path[-1]) if path[-1] in node else None


def test_basic_profile_leaves_no_marker_anywhere(marked: MarkedInstance) -> None:
    out, ds = run(BASIC, marked.to_bytes())
    assert leftovers(marked, out, ("table", "nested", "private", "free_text")) == []
    assert ds.PatientIdentityRemoved == "YES"
    codes = [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
    assert codes == ["113100"]
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"


def test_basic_profile_applies_each_row_action(marked: MarkedInstance) -> None:
    _, ds = run(BASIC, marked.to_bytes())
    # the row's action as the instance's IOD requires it (a Type 1 attribute is not
    # removed or emptied but dummied, a Type 2 one not removed but emptied)
    ctx = Context(build_plan(BASIC, KEY), sop_class=str(ds.SOPClassUID))
    assert ctx.iod
    checked = 0
    for plant in marked.plants:
        if plant.kind != "table" or len(plant.path) != 1 or plant.path[0] >> 16 in (
                0x5000, 0x5002, 0x6000, 0x6002):
            continue
        tag = plant.path[0]
        action = required_by(resolve(plant.action, tag, ctx.iod), tag, ctx, 0)
        elem = ds.get(tag)
        where = f"{plant.path} {plant.action}"
        if action == "X":
            assert elem is None, where
        elif action == "Z":
            assert elem is not None and elem.is_empty, where
        elif action == "D":
            assert elem is not None and not elem.is_empty, where
            if elem.VR == "UI":
                assert elem.value == new_uid(_original(marked, tag), KEY), where
        elif action == "U":
            assert elem is not None, where
            if elem.VR == "UI":
                assert elem.value == new_uid(_original(marked, tag), KEY), where
        checked += 1
    assert checked > 400
    for group in (0x5000, 0x5002, 0x6000, 0x6002):  # wildcard rows: curves, overlays
        assert not any(elem.tag.group == group for elem in ds)


def _original(marked: MarkedInstance, tag: int) -> str:
    return str(marked.dataset[tag].value)


def test_uids_consistent_and_references_resolvable(marked: MarkedInstance) -> None:
    _, ds = run(BASIC, marked.to_bytes())
    src = marked.dataset
    assert ds.StudyInstanceUID == new_uid(src.StudyInstanceUID, KEY)
    assert ds.SOPInstanceUID == new_uid(src.SOPInstanceUID, KEY)
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID == src.SOPClassUID
    assert ds.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert ds.FrameOfReferenceUID == new_uid(src.FrameOfReferenceUID, KEY)
    ref = ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID
    assert ref == new_uid(src.ReferencedImageSequence[0].ReferencedSOPInstanceUID, KEY)
    for tag in uid_tags():
        if tag in ds and ds[tag].VR == "UI" and not ds[tag].is_empty:
            assert str(ds[tag].value).startswith("2.25."), hex(tag)


def test_same_key_same_bytes_other_key_other_uids(marked: MarkedInstance) -> None:
    first, a = run(BASIC, marked.to_bytes())
    again, _ = run(BASIC, marked.to_bytes())
    assert first == again
    other, b = deidentify_bytes(marked.to_bytes(), build_plan(BASIC, b"o" * 32))
    assert dcmread(io.BytesIO(other)).SOPInstanceUID != a.SOPInstanceUID


def test_skip_id_redaction_keeps_every_uid(marked: MarkedInstance) -> None:
    config = {"dicom": {**BASIC["dicom"], "skipIdRedaction": True}}
    _, ds = run(config, marked.to_bytes())
    assert ds.SOPInstanceUID == marked.dataset.SOPInstanceUID
    assert ds.StudyInstanceUID == marked.dataset.StudyInstanceUID
    assert "113110" in [i.CodeValue for i in ds.DeidentificationMethodCodeSequence]


def test_minimal_profile_leaves_no_marker(marked: MarkedInstance) -> None:
    out, ds = run(MINIMAL, marked.to_bytes())
    assert leftovers(marked, out, ("table", "nested", "private", "free_text")) == []
    for keyword in CLINICAL:
        assert ds.get(keyword) == marked.dataset.get(keyword), keyword
    assert ds.PatientName == "" and "PatientName" in ds  # type 2: kept, emptied


def test_tag_contents_removes_free_text_markers_and_keeps_descriptions(
        marked: MarkedInstance) -> None:
    out, ds = run(CONTENTS, marked.to_bytes())
    assert leftovers(marked, out, ("free_text", "private")) == []
    # Every PN, ID and address-like value is transformed, at any depth.
    src = marked.dataset
    assert ds.PatientName == "[PERSON_NAME]"
    assert ds.PatientID == "[MEDICAL_RECORD_NUMBER]"[:64]
    for keyword in ("StudyDescription", "SeriesDescription", "ImageComments"):
        assert keyword in ds and ds.get(keyword), keyword  # cleaned, not dropped
        assert ds.get(keyword) != src.get(keyword)
    for keyword in CLINICAL:
        assert ds.get(keyword) == src.get(keyword), keyword


def test_keep_all_keeps_values_but_replaces_uids(marked: MarkedInstance) -> None:
    _, ds = run(KEEP_ALL, marked.to_bytes())
    src = marked.dataset
    assert ds.PatientName == src.PatientName
    assert ds.SOPInstanceUID == new_uid(src.SOPInstanceUID, KEY)
    assert "PatientIdentityRemoved" not in ds or ds.PatientIdentityRemoved == src.get(
        "PatientIdentityRemoved")


def test_keep_and_remove_lists_override_the_profile(marked: MarkedInstance) -> None:
    config = {"dicom": {**BASIC["dicom"], "keepList": {"tags": ["PatientSex", "00101010"]},
                        "removeList": {"tags": ["Modality"]}}}
    _, ds = run(config, marked.to_bytes())
    assert ds.PatientSex == marked.dataset.PatientSex
    assert ds.PatientAge == marked.dataset.PatientAge
    assert "Modality" not in ds


def test_safe_private_option_keeps_only_ctp_safe_elements(marked: MarkedInstance) -> None:
    out, ds = run(BASIC, marked.to_bytes(), retain_safe_private=True)
    creator, group, offset = SAFE_PRIVATE[:3]
    safe_tag = group << 16 | 0x1000 | offset
    safe = [p for p in marked.plants if p.kind == "private" and p.path == (safe_tag,)]
    assert safe and safe[0].marker.encode() in out
    assert ds.get_private_item(group, offset, creator).value == safe[0].marker
    assert [p for p in marked.plants if p.kind == "private" and p.path != (safe_tag,)
            and p.marker.encode() in out] == []
    assert "113111" in [i.CodeValue for i in ds.DeidentificationMethodCodeSequence]


def test_date_shift_same_per_patient_and_intervals_kept() -> None:
    config = {"dicom": BASIC["dicom"],
              "text": {"additionalTransformations": [
                  {"infoTypes": ["DATE"], "dateShiftConfig": {"cryptoKey": DATE_KEY}}]}}
    plan = build_plan(config, KEY)
    corpus = ct_corpus(total=8, seed=5, studies=2, series_per_study=2, rows=16, columns=16)
    shifts = {}
    for inst in corpus:
        src = dcmread(io.BytesIO(inst.data))
        out, _ = deidentify_bytes(inst.data, plan)
        ds = dcmread(io.BytesIO(out))
        assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
        delta = (_date(ds.StudyDate) - _date(src.StudyDate)).days
        assert delta != 0 and abs(delta) <= 100
        assert delta == shift_days(src.PatientID, plan.date_key)
        shifts.setdefault(src.PatientID, set()).add(delta)
    assert all(len(v) == 1 for v in shifts.values())  # one shift per patient


def _date(value: str):  # noqa: ANN202
    from datetime import date

    return date(int(value[:4]), int(value[4:6]), int(value[6:8]))


@pytest.mark.parametrize("config", [BASIC, CONTENTS, MINIMAL], ids=["basic", "contents",
                                                                      "minimal"])
def test_clinical_attributes_and_structure_kept(config: dict) -> None:
    plan = build_plan(config, KEY)
    corpus = ct_corpus(total=12, seed=9, studies=2, series_per_study=3, rows=32, columns=32)
    src_tree, out_tree = {}, {}
    for inst in corpus:
        src = dcmread(io.BytesIO(inst.data))
        out, outcome = deidentify_bytes(inst.data, plan)
        ds = dcmread(io.BytesIO(out))
        for keyword in CLINICAL:
            assert ds.get(keyword) == src.get(keyword), keyword
        assert ds.PixelData == src.PixelData  # byte-identical pixels
        src_tree.setdefault(inst.study_uid, {}).setdefault(inst.series_uid, set()).add(inst.sop_uid)
        out_tree.setdefault(outcome.study_uid, {}).setdefault(outcome.series_uid, set()).add(
            outcome.sop_uid)
    assert sorted(len(s) for s in src_tree.values()) == sorted(len(s) for s in out_tree.values())
    assert sorted(len(i) for s in src_tree.values() for i in s.values()) == sorted(
        len(i) for s in out_tree.values() for i in s.values())


def test_private_element_in_keep_list_keeps_its_creator(marked: MarkedInstance) -> None:
    tag = next(int(e.tag) for e in marked.dataset if e.tag.is_private and e.tag.element >= 0x1000)
    config = {"dicom": {**BASIC["dicom"], "keepList": {"tags": [f"{tag:08X}"]}}}
    _, ds = run(config, marked.to_bytes())
    assert ds[tag].value == marked.dataset[tag].value
    creator = (tag & 0xFFFF0000) | ((tag & 0xFFFF) >> 8)
    assert ds[creator].value == marked.dataset[creator].value


# -- keepList / removeList without a filterProfile: the API's documented meaning ------

#: The tags of the keep list in Google's dataset de-identification sample (file meta
#: keywords among them: the file meta is always rebuilt, whatever a list says).
GOOGLE_SAMPLE_KEEP = ["Columns", "NumberOfFrames", "PixelRepresentation",
                      "MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "Rows",
                      "SamplesPerPixel", "BitsAllocated", "HighBit",
                      "PhotometricInterpretation", "BitsStored", "PatientID",
                      "TransferSyntaxUID", "SOPInstanceUID", "StudyInstanceUID",
                      "SeriesInstanceUID", "PixelData"]


def test_keep_list_alone_keeps_only_the_listed_tags(marked: MarkedInstance) -> None:
    """"List of tags to keep. Remove all other tags." Nothing else stays: not the
    minimal profile's attributes, not the IOD's required ones, not the marks a profile
    adds; only SOP Class and Instance UIDs, which the file meta must repeat."""
    config = {"dicom": {"keepList": {"tags": GOOGLE_SAMPLE_KEEP}}}
    out, ds = run(config, marked.to_bytes())
    src = marked.dataset
    listed = {kw for kw in GOOGLE_SAMPLE_KEEP if not kw.startswith(("MediaStorage", "Transfer"))}
    present = {kw for kw in listed if kw in src}
    assert {e.keyword for e in ds} == present | {"SOPClassUID", "SOPInstanceUID"}
    assert ds.PatientID == src.PatientID  # listed: kept as it was
    # Kept UIDs are still replaced: skipIdRedaction is the API's way to keep them.
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert ds[kw].value == new_uid(src[kw].value, KEY)
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID == src.SOPClassUID
    kept_markers = {str(src[kw].value) for kw in present if kw != "PixelData"}
    leaked = [line for line in leftovers(marked, out, ("table", "nested", "private",
                                                       "free_text"))
              if line.rsplit(" ", 1)[1] not in kept_markers]
    assert leaked == []


def test_keep_list_alone_with_skip_id_redaction_keeps_uids(marked: MarkedInstance) -> None:
    config = {"dicom": {"keepList": {"tags": GOOGLE_SAMPLE_KEEP}, "skipIdRedaction": True}}
    _, ds = run(config, marked.to_bytes())
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert ds[kw].value == marked.dataset[kw].value


def test_keep_list_that_drops_what_a_store_needs_says_so(marked: MarkedInstance) -> None:
    from dicom_deid.engine.instance import DeidentifyError

    config = {"dicom": {"keepList": {"tags": ["PatientID", "PixelData"]}}}
    with pytest.raises(DeidentifyError) as info:
        run(config, marked.to_bytes())
    message = str(info.value)
    assert "keepList does not list StudyInstanceUID and SeriesInstanceUID" in message
    assert "keeps only the tags it lists" in message
    assert marked.dataset.PatientID not in message


def test_remove_list_alone_removes_those_and_keeps_the_rest(marked: MarkedInstance) -> None:
    """"List of tags to remove. Keep all other tags." (UIDs still replaced.)"""
    config = {"dicom": {"removeList": {"tags": ["PatientName", "StudyDescription"]}}}
    _, ds = run(config, marked.to_bytes())
    src = marked.dataset
    assert "PatientName" not in ds and "StudyDescription" not in ds
    assert ds.PatientID == src.PatientID and ds.Modality == src.Modality
    assert ds.SOPInstanceUID == new_uid(src.SOPInstanceUID, KEY)


def _with_references() -> bytes:
    """A CT whose sequences refer to its own study and to another image by UID."""
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    study = Dataset()
    study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    study.ReferencedSOPInstanceUID = ds.StudyInstanceUID
    study.StudyDescription = "kept inside a listed sequence"
    image = Dataset()
    image.ReferencedSOPClassUID = ds.SOPClassUID
    image.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.2.1125.77.1"
    ds.ReferencedStudySequence = [study]
    ds.ReferencedImageSequence = [image]
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.mark.parametrize("config", [
    {"dicom": {"keepList": {"tags": ["StudyInstanceUID", "SeriesInstanceUID",
                                     "ReferencedStudySequence", "ReferencedImageSequence"]}}},
    {"dicom": {**BASIC["dicom"], "keepList": {"tags": ["ReferencedStudySequence",
                                                       "ReferencedImageSequence"]}}},
], ids=["keep-list-alone", "with-basic"])
def test_a_listed_sequence_is_kept_whole_with_its_uids_replaced(config: dict) -> None:
    """A listed sequence stays as it is, but the UIDs inside are replaced like the
    top-level ones: a reference to the study still resolves, none is left pointing at
    an original UID."""
    data = _with_references()
    src = dcmread(io.BytesIO(data))
    _, ds = run(config, data)
    (study,) = ds.ReferencedStudySequence
    assert study.ReferencedSOPInstanceUID == ds.StudyInstanceUID == new_uid(
        src.StudyInstanceUID, KEY)
    assert study.StudyDescription == "kept inside a listed sequence"
    (image,) = ds.ReferencedImageSequence
    assert image.ReferencedSOPInstanceUID == new_uid("1.2.826.0.1.3680043.2.1125.77.1", KEY)
    assert image.ReferencedSOPClassUID == src.SOPClassUID
    kept = run({"dicom": {**config["dicom"], "skipIdRedaction": True}}, data)[1]
    assert kept.ReferencedStudySequence[0].ReferencedSOPInstanceUID == src.StudyInstanceUID
