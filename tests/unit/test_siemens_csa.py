"""Siemens CSA headers under Retain Safe Private: geometry kept, everything else gone.

Real headers come from nibabel's Siemens test files (read back with nibabel's own CSA
reader, which this project did not write); crafted ones plant a patient weight and a
marker string that must not survive, and malformed ones must be removed, not parsed
past their bounds.
"""

from __future__ import annotations

import io
import struct

import pytest
from pydicom import dcmread

from dicom_deid.corpus import realworld
from dicom_deid.engine import siemens_csa
from dicom_deid.engine.instance import deidentify_bytes
from dicom_deid.engine.plan import build_plan

csareader = pytest.importorskip("nibabel.nicom.csareader")
MARKER = b"CSAMARKER^PATIENT"


def _siemens() -> list:
    return [f for f in realworld.files(sources=("nibabel",)) if f.name.endswith("0.dcm")]


def _entry(name: str, vr: str, items: list[bytes]) -> bytes:
    out = struct.pack("<64si4s3i", name.encode(), len(items), vr.encode(), 0, len(items), 77)
    for item in items:
        out += struct.pack("<4i", len(item), len(item), 77, len(item)) + item
        out += b"\0" * (-len(item) % 4)
    return out


def _header(*entries: bytes) -> bytes:
    return struct.pack("<4s4sII", b"SV10", b"\4\3\2\1", len(entries), 77) + b"".join(entries)


def test_real_headers_keep_only_geometry_entries_with_their_values() -> None:
    files = _siemens()
    assert files, "nibabel's Siemens test files are missing"
    for f in files:
        ds = dcmread(f.path)
        block = ds.private_block(0x0029, siemens_csa.CREATOR)
        value = block[0x10].value
        kept = siemens_csa.keep_geometry(value)
        assert kept is not None, f.name
        before, after = csareader.read(value)["tags"], csareader.read(kept)["tags"]
        assert set(after) == set(before) & siemens_csa.KEEP, f.name
        assert "NumberOfImagesInMosaic" in after and "SliceNormalVector" in after
        assert all(after[k]["items"] == before[k]["items"] for k in after), f.name


def test_patient_values_and_text_entries_are_dropped() -> None:
    value = _header(_entry("UsedPatientWeight", "DS", [b"72.5"]),
                    _entry("ImaCoilString", "LO", [MARKER]),
                    _entry("SliceNormalVector", "FD", [b"0.0", b"0.0", b"1.0"]))
    kept = siemens_csa.keep_geometry(value)
    tags = csareader.read(kept)["tags"]
    assert list(tags) == ["SliceNormalVector"]
    assert MARKER not in kept and b"72.5" not in kept


@pytest.mark.parametrize("value", [
    b"", b"SV10", _header()[:-1], b"NOTCSA" * 10,
    _header(_entry("SliceNormalVector", "FD", [b"1.0"]))[:-6],  # cut inside an item
    struct.pack("<4s4sII", b"SV10", b"\4\3\2\1", 10**6, 77),  # absurd entry count
    _header(_entry("UsedPatientWeight", "DS", [b"72.5"])),  # nothing to keep
], ids=["empty", "magic-only", "short", "not-csa", "cut", "huge-count", "nothing-kept"])
def test_malformed_or_useless_headers_are_removed(value: bytes) -> None:
    assert siemens_csa.keep_geometry(value) is None


def test_the_option_keeps_the_geometry_and_the_basic_profile_alone_removes_it() -> None:
    [f] = _siemens()[:1]
    data = f.path.read_bytes()
    config = {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}}
    plain = dcmread(io.BytesIO(deidentify_bytes(data, build_plan(
        config, b"k" * 32))[0]))
    assert not any(elem.tag.group == 0x0029 for elem in plain)
    out = dcmread(io.BytesIO(deidentify_bytes(data, build_plan(
        config, b"k" * 32, retain_safe_private=True))[0]))
    block = out.private_block(0x0029, siemens_csa.CREATOR)
    tags = csareader.read(block[0x10].value)["tags"]
    assert set(tags) <= siemens_csa.KEEP and "NumberOfImagesInMosaic" in tags
