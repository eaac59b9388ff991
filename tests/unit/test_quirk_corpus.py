"""Every crafted quirk file (corpus/quirks.py) through every profile.

A quirk is in scope when a reference reader gets all of it: pydicom (every expected
attribute found, and convertible) or DCMTK's ``dcmdump`` (exit 0, every expected
top-level attribute listed). For those, the engine must either write a valid file
(pydicom re-reads every element, ``dcmdump +E`` reports no error) that lost no public
attribute under KEEP_ALL and no marker under the basic profile, or -- where the quirk
truly cannot be processed (``EXPECTED_ERRORS``) -- refuse it with a message naming the
tag and the step, and no value.

``XFAIL`` lists what fails today; remove an entry when its fix lands (strict xfail: a
fixed quirk left in the list fails the run).
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import warnings
import zlib
from functools import cache
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from dicom_deid.corpus.quirks import MARKERS, PRIVATE_MARKER, Quirk, quirks
from dicom_deid.engine.instance import DeidentifyError, deidentify_bytes
from dicom_deid.engine.plan import build_plan
from dicom_deid.engine.reading import UnreadableInstance

DCMDUMP = shutil.which("dcmdump")
pytestmark = pytest.mark.skipif(DCMDUMP is None, reason="dcmdump (DCMTK) is not installed")

BASIC = "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"
CONFIGS = {
    "keep-all": {"dicom": {"filterProfile": "KEEP_ALL_PROFILE"}},
    "minimal": {"dicom": {"filterProfile": "MINIMAL_KEEP_LIST_PROFILE"}},
    "basic": {"dicom": {"filterProfile": BASIC}},
    "tag-contents": {"dicom": {"filterProfile": "DEIDENTIFY_TAG_CONTENTS"}},
    "basic-all-text": {"dicom": {"filterProfile": BASIC},
                       "image": {"textRedactionMode": "REDACT_ALL_TEXT"}},
    "basic-sensitive-text": {"dicom": {"filterProfile": BASIC},
                             "image": {"textRedactionMode": "REDACT_SENSITIVE_TEXT"}},
}
BASIC_CONFIGS = ("basic", "basic-all-text", "basic-sensitive-text")
REDACTING = ("basic-all-text", "basic-sensitive-text")

# (quirk, config) -> (step, tag) the refusal must name, for quirks no engine can process:
# pixels that are not all there cannot be searched for burned-in text (an empty Pixel
# Data has no pixels to search and goes through; float pixel data is searched).
EXPECTED_ERRORS: dict[tuple[str, str], tuple[str, str]] = {
    **{("pixel-data-short", c): ("pixel decode", "(7FE0,0010)") for c in REDACTING},
}

# What fails today, (quirk, config or "*") -> reason. The lead removes entries as the
# engine is fixed.
XFAIL: dict[tuple[str, str], str] = {
    ("sequence-length-too-long", "keep-all"):
        "output copies the sequence's padding: dcmdump 'Parse error in sequence (0040,0275), "
        "found (0000,0000) instead of sequence delimiter'",
}

_TAG = re.compile(r"\([0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\)")
_STEPS = ("reading", "profile action", "pixel decode", "pixel encode")
_DUMP_LINE = re.compile(r"^( *)\(([0-9a-f]{4}),([0-9a-f]{4})\) (..)")
QUIRKS = quirks()


# -- reference readers -----------------------------------------------------------------

def _pydicom_paths(ds: Dataset, expected: frozenset, prefix: tuple = ()) -> set[tuple]:
    """Public paths of ``ds``; raises if an expected element does not convert."""
    out = set()
    for tag in list(ds.keys()):
        path = prefix + (int(tag),)
        try:
            elem = ds[tag]
            _ = elem.value
        except Exception:
            if path in expected:
                raise
            continue
        if not tag.is_private and tag.group != 2:
            out.add(path)
        if elem.VR == "SQ":
            for item in elem.value:
                out |= _pydicom_paths(item, expected, path)
    return out


def pydicom_reads(data: bytes, expected: frozenset) -> bool:
    """pydicom (force) parses the file and every expected attribute is there and converts."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(io.BytesIO(data), force=True)
            found = _pydicom_paths(ds, expected)
    except Exception:
        return False
    return expected <= found


def dcmdump(path: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([DCMDUMP, *options, str(path)], capture_output=True, timeout=60)


def _dump_top_level(out: bytes) -> set[int]:
    tags, in_data = set(), False
    for line in out.decode("latin-1").splitlines():
        if line.startswith("# Dicom-Data-Set") or line.startswith("# Dicom-Dataset"):
            in_data = True
        match = _DUMP_LINE.match(line)
        if match and not match.group(1) and (in_data or match.group(2) != "0002"):
            tags.add(int(match.group(2) + match.group(3), 16))
    return tags


def dcmdump_reads(path: Path, expected: frozenset) -> bool:
    run = dcmdump(path)
    top = {p[0] for p in expected if len(p) == 1}
    return run.returncode == 0 and top <= _dump_top_level(run.stdout)


@cache
def readable_by(quirk: Quirk, folder: Path) -> tuple[str, ...]:
    path = folder / f"{quirk.name}.dcm"
    path.write_bytes(quirk.build())
    expected = quirk.expected_paths()
    return tuple(name for name, ok in (
        ("pydicom", pydicom_reads(quirk.build(), expected)),
        ("dcmdump", dcmdump_reads(path, expected))) if ok)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("quirks")


@cache
def plan(config: str):
    return build_plan(CONFIGS[config], b"k" * 32)


# -- checks on the output ---------------------------------------------------------------

def _plain(out: bytes) -> bytes:
    """The output with a deflated body inflated, so a marker search sees its text."""
    ds = dcmread(io.BytesIO(out), stop_before_pixels=True, specific_tags=[0x00020010])
    if ds.file_meta.TransferSyntaxUID != "1.2.840.10008.1.2.1.99":
        return out
    start = 132 + 12 + int(ds.file_meta.FileMetaInformationGroupLength)
    return out[:start] + zlib.decompress(out[start:], -15)


def _check_valid(out: bytes, tmp_path: Path) -> Dataset:
    ds = dcmread(io.BytesIO(out))
    ds.walk(lambda _ds, elem: elem.value)
    for elem in ds.iterall():
        _ = elem.value
    path = tmp_path / "out.dcm"
    path.write_bytes(out)
    run = dcmdump(path, "+E")
    errors = [line for line in run.stderr.decode("latin-1").splitlines()
              if line.startswith(("E:", "F:"))]
    assert run.returncode == 0 and not errors, f"dcmdump +E: {errors[:5]}"
    return ds


def _check_refusal(exc: Exception, step: str, tag: str) -> None:
    message = str(exc)
    assert _TAG.search(message), f"no (gggg,eeee) tag in {message!r}"
    assert tag in message.upper(), f"tag {tag} not named in {message!r}"
    assert step in _STEPS and step in message, f"step {step!r} not named in {message!r}"
    assert not any(v in message for v in MARKERS.values()), message
    assert "QUIRK" not in message, message


def _cases():
    for quirk in QUIRKS:
        for config in CONFIGS:
            reason = XFAIL.get((quirk.name, config)) or XFAIL.get((quirk.name, "*"))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(quirk, config, id=f"{quirk.name}-{config}", marks=marks)


def test_quirk_names_are_unique_and_safe() -> None:
    names = [q.name for q in QUIRKS]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9-]*", n) for n in names)
    assert all(q.description and q.base for q in QUIRKS)


@pytest.mark.parametrize("quirk", QUIRKS, ids=lambda q: q.name)
def test_quirk_is_readable_by_a_reference_reader(quirk: Quirk, folder: Path) -> None:
    assert quirk.build() == quirk.make()[0], "not deterministic"
    assert readable_by(quirk, folder), "neither pydicom nor dcmdump reads it: out of scope"


@pytest.mark.parametrize(("quirk", "config"), list(_cases()))
def test_engine_handles_quirk(quirk: Quirk, config: str, tmp_path: Path) -> None:
    data = quirk.build()
    expected_error = EXPECTED_ERRORS.get((quirk.name, config))
    if expected_error is not None:
        with pytest.raises((UnreadableInstance, DeidentifyError)) as info:
            deidentify_bytes(data, plan(config))
        _check_refusal(info.value, *expected_error)
        return
    try:
        out, _ = deidentify_bytes(data, plan(config))
    except (UnreadableInstance, DeidentifyError) as exc:
        pytest.fail(f"refused: {type(exc).__name__}: {exc}")
    ds = _check_valid(out, tmp_path)
    if config in BASIC_CONFIGS:
        plain = _plain(out)
        left = [m for m in (*MARKERS.values(), PRIVATE_MARKER.decode(), "QUIRK")
                if m.encode() in plain]
        assert not left, f"markers left: {left}"
    if config == "keep-all":
        expected = quirk.expected_paths()
        lost = expected - _pydicom_paths(ds, frozenset())
        assert not lost, "lost: " + ", ".join(
            "/".join(f"({t >> 16:04X},{t & 0xFFFF:04X})" for t in p) for p in sorted(lost))
