"""The vendored IOD attribute types are the installed highdicom's, and decisions use them.

``dicom_deid.engine.iod_types`` reads PS3.3 attribute types copied from the standard's
tables highdicom ships (so the engine need not import highdicom). A highdicom upgrade
that changes them must fail here, not drift silently.
"""

from __future__ import annotations

import importlib.util
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import highdicom
import pytest
from pydicom.datadict import tag_for_keyword

from dicom_deid.engine import iod_types
from dicom_deid.engine.decisions import Context, decide, decision, pointed_to
from dicom_deid.engine.plan import BASIC, KEEP_ALL, MINIMAL, TAG_CONTENTS, build_plan

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "vendor_iod_types.py"
REGENERATE = ("the vendored IOD attribute types differ from the installed highdicom's "
              "({installed}, vendored from {vendored}): regenerate them with "
              "`.venv/bin/python tools/vendor_iod_types.py`, review the diff of "
              "src/dicom_deid/engine/{path} and commit it")

ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
US_RETIRED = "1.2.840.10008.5.1.4.1.1.6"
RT_STRUCT = "1.2.840.10008.5.1.4.1.1.481.3"
UNKNOWN = "1.2.3.4"


def _tool():
    spec = importlib.util.spec_from_file_location("vendor_iod_types", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tag(keyword: str) -> int:
    return int(tag_for_keyword(keyword))


def test_vendored_types_equal_what_the_tool_derives_from_installed_highdicom() -> None:
    derived = _tool().derive()
    vendored = iod_types.document()
    message = REGENERATE.format(installed=highdicom.__version__,
                                vendored=vendored.get("highdicom"), path=iod_types.VENDORED)
    assert vendored["highdicom"] == highdicom.__version__, message
    for part in ("sopClasses", "iods", "modules", "nested"):
        assert sorted(vendored[part]) == sorted(derived[part]), f"{part}: {message}"
        for key, value in derived[part].items():
            assert vendored[part][key] == value, f"{part} {key}: {message}"
    assert vendored == derived, message


def test_the_vendored_file_is_packaged_and_small() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["dicom_deid.engine"]
    assert any(fnmatch(iod_types.VENDORED, p) for p in patterns)
    size = (ROOT / "src/dicom_deid/engine" / iod_types.VENDORED).stat().st_size
    assert size < 256 * 1024


@pytest.mark.parametrize("sop_class, keyword, kind", [
    (ENHANCED_MR, "ContentDate", "1"),  # Multi-frame Functional Groups
    (CT, "ContentDate", "2C"),  # General Image
    (ENHANCED_MR, "DeviceSerialNumber", "1"),  # Enhanced General Equipment
    (CT, "DeviceSerialNumber", None),  # Type 3 in General Equipment
    (ENHANCED_MR, "AcquisitionDateTime", "1C"),
    (CT, "PatientSexNeutered", "2C"),
    (US_RETIRED, "ReferringPhysicianName", "2"),  # mapped to the US Image IOD
])
def test_strongest_type_over_the_iods_modules(sop_class: str, keyword: str,
                                              kind: str | None) -> None:
    iod = iod_types.iod_of(sop_class)
    assert iod is not None
    assert iod_types.types_of(iod).get(_tag(keyword)) == kind


def test_sr_content_is_recursive() -> None:
    iod = iod_types.iod_of("1.2.840.10008.5.1.4.1.1.88.11")  # Basic Text SR
    assert iod_types.nested_types_of(iod).get(_tag("ObservationDateTime")) == "1C"


def _ctx(profile: str, sop_class: str) -> Context:
    return Context(build_plan({"dicom": {"filterProfile": profile}}, b"k" * 32),
                   sop_class=sop_class)


@pytest.mark.parametrize("profile, sop_class, keyword, action", [
    (BASIC, ENHANCED_MR, "ContentDate", "D"),  # Z/D, Type 1
    (BASIC, CT, "ContentDate", "Z"),  # Z/D, Type 2C
    (BASIC, ENHANCED_MR, "DeviceSerialNumber", "D"),  # X/Z/D, Type 1
    (BASIC, CT, "DeviceSerialNumber", "X"),  # X/Z/D, Type 3
    (BASIC, ENHANCED_MR, "AcquisitionDateTime", "D"),  # X/Z/D, Type 1C
    (BASIC, CT, "PatientSexNeutered", "Z"),  # X/Z, Type 2C
    (BASIC, CT, "ResponsiblePerson", "Z"),  # X, Type 2C
    (BASIC, CT, "PatientName", "Z"),  # Z, Type 2: unchanged
    (BASIC, CT, "OtherPatientIDs", "X"),  # X, not in the IOD
    (BASIC, UNKNOWN, "ContentDate", "Z"),  # the minimal keep list's type 2
    (BASIC, UNKNOWN, "DeviceSerialNumber", "X"),
    (MINIMAL, ENHANCED_MR, "ContentDate", "D"),
    (MINIMAL, CT, "ResponsiblePerson", "Z"),
    (MINIMAL, RT_STRUCT, "ROIContourSequence", "K"),  # the IOD's content, no table row
    (MINIMAL, RT_STRUCT, "StructureSetROISequence", "K"),
    (MINIMAL, RT_STRUCT, "StructureSetLabel", "D"),  # Type 1, the table dummies it
    (MINIMAL, UNKNOWN, "ROIContourSequence", "X"),  # no IOD: the list alone
    (MINIMAL, CT, "OtherPatientIDsSequence", "X"),  # patient module: not content
    (MINIMAL, CT, "ContrastBolusAgentSequence", "K"),
    (TAG_CONTENTS, ENHANCED_MR, "ContentDate", "D"),  # its date would be emptied
    (TAG_CONTENTS, CT, "ContentDate", "T"),
    (KEEP_ALL, ENHANCED_MR, "ContentDate", "K"),
])
def test_top_level_decisions_follow_the_iod(profile: str, sop_class: str, keyword: str,
                                            action: str) -> None:
    assert decide(_tag(keyword), _ctx(profile, sop_class), 0) == action


def test_nested_decisions_follow_the_iod() -> None:
    ctx = _ctx(BASIC, "1.2.840.10008.5.1.4.1.1.481.5")  # RT Plan
    assert decide(_tag("TreatmentMachineName"), ctx, 1) == "Z"  # X/Z, Type 2 in Beams
    assert decide(_tag("TreatmentMachineName"), _ctx(BASIC, UNKNOWN), 1) == "X"


def test_decisions_are_remembered_per_iod() -> None:
    plan = build_plan({"dicom": {"filterProfile": BASIC}}, b"k" * 32)
    tag = _tag("ContentDate")
    enhanced = Context(plan, decisions=plan.decisions, sop_class=ENHANCED_MR)
    ct = Context(plan, decisions=plan.decisions, sop_class=CT)
    assert decision(tag, enhanced, 0, False) == "D"
    assert decision(tag, ct, 0, False) == "Z"
    assert decision(tag, enhanced, 0, False) == "D"
    assert len(plan.decisions) == 2


def test_minimal_keeps_what_the_frame_increment_pointer_names() -> None:
    plan = build_plan({"dicom": {"filterProfile": MINIMAL}}, b"k" * 32)
    frame_time, serial = _tag("EnergyWindowVector"), _tag("DeviceSerialNumber")
    keep = pointed_to([frame_time, serial])
    assert keep == {frame_time}  # the table's rows are never kept this way
    assert pointed_to(frame_time) == {frame_time}
    ctx = Context(plan, decisions=plan.decisions, sop_class=UNKNOWN, keep=keep)
    other = Context(plan, decisions=plan.decisions, sop_class=UNKNOWN)
    assert decision(frame_time, ctx, 0, False) == "K"
    assert decision(frame_time, other, 0, False) == "X"
