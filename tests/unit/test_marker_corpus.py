"""Marker instances: every planted value is unique, findable in the bytes, and stable."""

from __future__ import annotations

import io
import shutil
import subprocess
import warnings
from collections import Counter
from datetime import date, timedelta

import pytest
from pydicom import dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword

from dicom_deid.corpus.markers import (
    SAFE_PRIVATE,
    MarkedInstance,
    Plant,
    marked_instance,
    skipped_rows,
)
from dicom_deid.engine.ps315 import table

DCMDUMP = shutil.which("dcmdump") or "/usr/bin/dcmdump"


@pytest.fixture(scope="module")
def instance() -> MarkedInstance:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydicom warns on values invalid for their VR
        return marked_instance(0)


@pytest.fixture(scope="module")
def data(instance: MarkedInstance) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return instance.to_bytes()


def _element(ds, path: tuple[int, ...]):
    for tag in path[:-1]:
        ds = ds[tag].value[0]
    return ds[path[-1]]


def test_markers_are_unique_and_none_contains_another(instance):
    markers = [p.marker for p in instance.plants]
    assert len(markers) == len(set(markers))
    assert all(p.kind in {"table", "nested", "private", "free_text"} for p in instance.plants)
    ordered = sorted(markers, key=len)
    for i, short in enumerate(ordered):
        assert not any(short in longer for longer in ordered[i + 1:]), short


def test_every_searchable_marker_is_in_the_bytes_exactly_where_planted(instance, data):
    ds = instance.dataset
    twice = {str(ds.PatientName), str(ds.PatientID), str(ds.SOPInstanceUID)}
    searchable = [p for p in instance.plants if p.searchable]
    assert len(searchable) == len(instance.plants) - 1  # only GPS Altitude Ref (US)
    for plant in searchable:
        assert data.count(plant.marker.encode("ascii")) == (2 if plant.marker in twice else 1), \
            plant


def test_markers_sit_at_their_paths_with_their_vrs(instance):
    for plant in instance.plants:
        elem = _element(instance.dataset, plant.path)
        assert plant.vr == elem.VR, plant
        if plant.vr == "SQ":
            assert plant.marker in str(elem.value[0].CodeMeaning)
        elif plant.searchable:
            value = elem.value
            text = value.decode("ascii") if isinstance(value, bytes) else str(value)
            assert plant.marker in text, plant


def test_every_composite_iod_row_is_planted(instance):
    rows = [r for r in table().rules if r.in_composite_iod]
    table_plants = [p for p in instance.plants if p.kind == "table"]
    assert skipped_rows() == []
    assert len(table_plants) >= len(rows) - len(skipped_rows())
    top = {p.path[0]: p for p in table_plants if len(p.path) == 1}
    for rule in rows:
        if "X" in rule.tag.strip("()").replace(",", ""):
            continue  # (60xx,3000), checked below
        tag = int(rule.tag.strip("()").replace(",", ""), 16)
        assert tag in top, rule
        assert top[tag].action == rule.basic
        assert top[tag].vr == dictionary_VR(tag)
    for tag in (0x50000022, 0x50003000, 0x50020022, 0x50023000,
                0x60003000, 0x60004000, 0x60023000, 0x60024000):
        assert top[tag].action == "X" and top[tag].marker.startswith("QZ00")


def test_sequence_rows_and_nested_copies(instance):
    ds = instance.dataset
    by_path = {p.path: p for p in instance.plants}
    sequences = [p for p in instance.plants if p.vr == "SQ"]
    assert sequences and all(p.kind == "table" for p in sequences)
    references = {tag_for_keyword(k) for k in (
        "ReferencedStudySequence", "ReferencedPerformedProcedureStepSequence",
        "ReferencedPatientSequence", "ReferencedImageSequence", "SourceImageSequence")}
    for seq in sequences:
        # Items of reference sequences carry a Referenced SOP Instance UID (action U),
        # the others a Person Name (action D).
        leaf = by_path[(seq.path[0], 0x00081155 if seq.path[0] in references else 0x0040A123)]
        assert leaf.kind == "nested" and leaf.action in ("U", "D")
        assert seq.marker in str(_element(ds, seq.path).value[0].CodeMeaning)
    chain = (tag_for_keyword("RequestAttributesSequence"),
             tag_for_keyword("ReferencedStudySequence"))
    for keyword in ("PatientName", "PatientID", "AccessionNumber", "InstitutionName",
                    "ReferringPhysicianName", "StudyDate", "ReferencedSOPInstanceUID",
                    "OperatorsName"):
        tag = tag_for_keyword(keyword)
        top = by_path[(tag,)].marker
        depth1 = by_path[(chain[0], tag)]
        depth2 = by_path[(*chain, tag)]
        assert depth1.kind == depth2.kind == "nested"
        assert len({top, depth1.marker, depth2.marker}) == 3
        assert depth1.action == table().rule(tag).basic
    assert str(ds.RequestAttributesSequence[0].ReferencedStudySequence[0].PatientName) == \
        by_path[(*chain, tag_for_keyword("PatientName"))].marker
    assert not any(len(p.path) > 3 for p in instance.plants)


def test_nested_depth_controls_the_chain():
    def deepest(depth: int) -> int:
        return max(len(p.path) for p in marked_instance(0, nested_depth=depth).plants)

    assert deepest(0) == 2  # sequence rows' own leaves only
    assert deepest(1) == 2
    assert deepest(4) == 5
    with pytest.raises(ValueError):
        marked_instance(0, nested_depth=-1)


def test_private_and_free_text(instance):
    ds = instance.dataset
    private = [p for p in instance.plants if p.kind == "private"]
    assert len(private) >= 5 and all(p.action is None for p in private)
    assert all((p.path[-1] >> 16) % 2 == 1 for p in private)
    assert {p.vr for p in private} >= {"LO", "SH", "UN"}
    creator, group, offset, vr, _ = SAFE_PRIVATE
    safe = ds.private_block(group, creator).get_tag(offset)
    assert [p.vr for p in private if p.path == (safe,)] == [vr]

    free = [p for p in instance.plants if p.kind == "free_text"]
    assert {p.path[0] for p in free} >= {tag_for_keyword(k) for k in (
        "ImageComments", "AdditionalPatientHistory", "StudyDescription", "SeriesDescription")}
    assert all(p.action is None for p in free)
    comments = str(ds.ImageComments)
    assert str(ds.PatientName) in comments and str(ds.PatientID) in comments


def test_clinical_attributes_hold_no_markers(instance):
    ds = instance.dataset
    assert (ds.Modality, ds.BodyPartExamined, ds.PhotometricInterpretation) == \
        ("CT", "CHEST", "MONOCHROME2")
    assert (ds.Rows, ds.Columns, ds.BitsAllocated, ds.SamplesPerPixel) == (16, 16, 16, 1)
    assert ds.pixel_array.shape == (16, 16)
    clinical = ("Modality", "BodyPartExamined", "Rows", "Columns", "PixelSpacing",
                "SliceThickness", "ImagePositionPatient", "ImageOrientationPatient",
                "WindowCenter", "WindowWidth", "RescaleIntercept", "RescaleSlope",
                "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
                "PhotometricInterpretation", "SamplesPerPixel", "SOPClassUID", "PixelData")
    planted = {p.path[-1] for p in instance.plants}
    for keyword in clinical:
        assert tag_for_keyword(keyword) not in planted
        assert table().rule(tag_for_keyword(keyword)) is None
        value = ds[keyword].value
        text = value if isinstance(value, bytes) else str(value).encode("ascii")
        assert not any(p.marker.encode("ascii") in text for p in instance.plants), keyword


def test_round_trip_through_pydicom(instance, data):
    ds = dcmread(io.BytesIO(data))
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    for plant in instance.plants:
        assert plant.vr == _element(ds, plant.path).VR, plant
    assert MarkedInstance(ds, instance.plants).to_bytes() == data


@pytest.mark.skipif(not shutil.which(DCMDUMP), reason="dcmtk's dcmdump is not installed")
def test_dcmdump_parses_the_file(data, tmp_path):
    path = tmp_path / "marked.dcm"
    path.write_bytes(data)
    done = subprocess.run([DCMDUMP, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "E:" not in done.stderr and "W:" not in done.stderr
    assert "GEMS_PARM_01" in done.stdout and "DataSetTrailingPadding" in done.stdout


def test_deterministic_per_seed_and_distinct_across_seeds(data):
    assert marked_instance(0).to_bytes() == data
    one, two = marked_instance(1), marked_instance(2)
    first = {p.marker for p in one.plants}
    second = {p.marker for p in two.plants}
    assert not first & second
    assert not any(m.encode("ascii") in data for m in first | second)
    assert Counter(p.kind for p in one.plants) == Counter(p.kind for p in two.plants)
    with pytest.raises(ValueError):
        marked_instance(100)


def test_date_markers_survive_shifting(instance):
    """No shift of under 1009 days turns a DA or DT marker into another planted one."""
    markers = {p.marker for p in instance.plants}
    for plant in instance.plants:
        if plant.vr not in ("DA", "DT"):
            continue
        day = date(int(plant.marker[:4]), int(plant.marker[4:6]), int(plant.marker[6:8]))
        for shift in (*range(-1008, 0), *range(1, 1009)):
            moved = (day + timedelta(days=shift)).strftime("%Y%m%d") + plant.marker[8:]
            assert moved not in markers


def test_fast_enough():
    import time

    start = time.perf_counter()
    marked_instance(7).to_bytes()
    assert time.perf_counter() - start < 1.0


def test_plant_is_frozen():
    plant = Plant("QZ0000001", (0x00100010,), "PN", "Z", "table")
    with pytest.raises(AttributeError):
        plant.marker = "x"  # type: ignore[misc]
