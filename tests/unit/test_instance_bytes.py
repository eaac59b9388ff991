"""The byte path (engine.instance_bytes) gives what the dataset path gives, without pydicom.

Every real file the registry packages ship and the generated kinds go through both
paths; wherever the byte path takes an instance its output must read back as the same
dataset, file meta and identity as the dataset path's. What it does not take falls
back (and still fails with the dataset path's reasons). The command line's first file
must not import pydicom or numpy (what made its start-up slow).
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom import dcmread

from dicom_deid.corpus.ct import iter_ct_corpus
from dicom_deid.corpus.mr import iter_mr_corpus
from dicom_deid.corpus.multiframe import iter_multiframe_corpus
from dicom_deid.engine import instance_bytes
from dicom_deid.engine.instance import deidentify_bytes, deidentify_file
from dicom_deid.engine.instance_dataset import run
from dicom_deid.engine.outcome import UnreadableInstance
from dicom_deid.engine.plan import build_plan
from tests.helpers import engine_inputs

KEY = b"k" * 32
DATE_KEY = "c2hpZnQtZGF0ZXMtYnkta2V5LTAxMjM0NTY3ODlhYmM="
BASIC = {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}}
CONFIGS = {
    "basic": BASIC,
    "basic-dates": {**BASIC, "text": {"additionalTransformations": [
        {"infoTypes": ["DATE"], "dateShiftConfig": {"cryptoKey": DATE_KEY}}]}},
    "keep-all": {"dicom": {"filterProfile": "KEEP_ALL_PROFILE"}},
}
#: How many of the inputs the byte path takes per config, at least (measured: 222 of
#: 278 basic, 147 with date shifts, 223 keep-all; the rest lack a valid UID, are big
#: endian, deflated, need repairs, or have text the profile must clean).
TAKEN_AT_LEAST = {"basic": 200, "basic-dates": 130, "keep-all": 200}
INPUTS = engine_inputs()


def _dataset_path(data: bytes, plan_config: dict) -> tuple[bytes, object]:
    out = io.BytesIO()
    outcome = run(data, build_plan(plan_config, KEY), out)
    return out.getvalue(), outcome


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_byte_path_gives_the_dataset_path_s_datasets(name: str) -> None:
    plan = build_plan(CONFIGS[name], KEY)
    taken = 0
    for data in INPUTS:
        try:
            rendered = instance_bytes.render(data, plan)
        except instance_bytes.Fallback:
            continue
        fast = instance_bytes.joined(rendered, data)
        slow, outcome = _dataset_path(data, CONFIGS[name])
        a, b = dcmread(io.BytesIO(fast)), dcmread(io.BytesIO(slow))
        assert a == b
        assert a.file_meta == b.file_meta
        assert a.preamble == b.preamble
        assert rendered.outcome.size == len(fast)
        assert (rendered.outcome.study_uid, rendered.outcome.series_uid,
                rendered.outcome.sop_uid, rendered.outcome.sop_class_uid,
                rendered.outcome.transfer_syntax) == (
            outcome.study_uid, outcome.series_uid, outcome.sop_uid, outcome.sop_class_uid,
            outcome.transfer_syntax)
        taken += 1
    assert taken >= TAKEN_AT_LEAST[name]


@pytest.mark.parametrize("generate", [iter_ct_corpus, iter_mr_corpus],
                         ids=["CT", "MR"])
def test_generated_instances_come_out_byte_identical(generate: object) -> None:
    """Defined-length sequences throughout: the two paths write the very same bytes."""
    plan = build_plan(BASIC, KEY)
    for inst in generate(5, seed=7):
        fast = instance_bytes.joined(instance_bytes.render(inst.data, plan), inst.data)
        assert fast == _dataset_path(inst.data, BASIC)[0]


def test_file_path_copies_kept_pixel_data_in_the_kernel(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = build_plan(BASIC, KEY)
    calls = []
    real = os.copy_file_range

    def counting(*args: object) -> int:
        calls.append(args[2])
        return real(*args)

    monkeypatch.setattr(os, "copy_file_range", counting)
    insts = list(iter_ct_corpus(2, seed=5)) + list(iter_multiframe_corpus(2, seed=5))
    for i, inst in enumerate(insts):
        src, dst = tmp_path / f"in-{i}.dcm", tmp_path / f"out-{i}.dcm"
        src.write_bytes(inst.data)
        outcome = deidentify_file(str(src), str(dst), plan)
        expected, same = deidentify_bytes(inst.data, plan)
        assert dst.read_bytes() == expected
        assert outcome == same and outcome.size == len(expected)
    # every instance's pixel data went through the kernel, not through Python
    assert len(calls) >= len(insts) and min(calls) >= instance_bytes.RANGE_MIN
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".deid-")]


def _ct() -> bytes:
    return next(iter(iter_ct_corpus(1, seed=11))).data


def _nested(depth: int) -> bytes:
    """An undefined-length private sequence nested ``depth`` deep, at the end."""
    inner = b""
    for _ in range(depth):
        inner = (struct.pack("<HH2sHL", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF)
                 + b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + inner
                 + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00\xfe\xff\xdd\xe0\x00\x00\x00\x00")
    return struct.pack("<HH2sHL", 0x7FE1, 0x1010, b"SQ", 0, 0xFFFFFFFF) + inner[12:]


def _outcome_of(call: object) -> object:
    try:
        return call()[0]
    except (UnreadableInstance, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.mark.parametrize("mangle", [
    lambda d: d[:-100],
    lambda d: d + _nested(3000),
    lambda d: d[:128] + b"DICX" + d[132:],
], ids=["truncated", "nested 3000 deep", "no DICM prefix"])
def test_what_the_byte_path_refuses_the_dataset_path_decides(mangle: object) -> None:
    """Refused before a byte is written; then the result (or the reason) is the
    dataset path's own, whatever it is (deep nesting depends on the stack allowed)."""
    data = mangle(_ct())
    with pytest.raises(instance_bytes.Fallback):
        instance_bytes.render(data, build_plan(BASIC, KEY))
    got = _outcome_of(lambda: deidentify_bytes(data, build_plan(BASIC, KEY)))
    assert got == _outcome_of(lambda: _dataset_path(data, BASIC))


def test_a_truncated_file_is_refused_with_a_reason() -> None:
    with pytest.raises(UnreadableInstance, match="truncated"):
        deidentify_bytes(_ct()[:-100], build_plan(BASIC, KEY))


def _private_sequence_with_a_uid() -> bytes:
    """An undefined-length private sequence (after the pixel data) whose item holds a
    Referenced SOP Instance UID: keep-all leaves private elements whole."""
    uid = b"1.2.3.4.5.6.7.8"
    element = struct.pack("<HH2sH", 0x0008, 0x1155, b"UI", len(uid) + 1) + uid + b"\0"
    item = b"\xfe\xff\x00\xe0" + struct.pack("<L", len(element)) + element
    return (struct.pack("<HH2sHL", 0x7FE1, 0x1010, b"SQ", 0, 0xFFFFFFFF) + item
            + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")


def _sop_class_as_un(data: bytes) -> bytes:
    """The CT with its SOP Class UID's explicit VR written as UN (a long header)."""
    ds = dcmread(io.BytesIO(data))
    value = ds.SOPClassUID.encode() + b"\0" * (len(ds.SOPClassUID) % 2)
    short = struct.pack("<HH2sH", 0x0008, 0x0016, b"UI", len(value)) + value
    assert data.count(short) == 1
    return data.replace(short, struct.pack("<HH2sHL", 0x0008, 0x0016, b"UN", 0,
                                           len(value)) + value)


@pytest.mark.parametrize(("name", "mangle"), [
    ("keep-all", lambda d: d + _private_sequence_with_a_uid()),
    ("basic", lambda d: d + _private_sequence_with_a_uid()),
    ("basic", _sop_class_as_un),
], ids=["keep-all private sequence", "basic private sequence", "SOP Class UID as UN"])
def test_crafted_layouts_give_the_dataset_path_s_result(name: str, mangle: object) -> None:
    data = mangle(_ct())
    fast = _outcome_of(lambda: deidentify_bytes(data, build_plan(CONFIGS[name], KEY)))
    slow = _outcome_of(lambda: _dataset_path(data, CONFIGS[name]))
    assert isinstance(fast, bytes) and isinstance(slow, bytes)
    a, b = dcmread(io.BytesIO(fast)), dcmread(io.BytesIO(slow))
    assert a == b and a.file_meta == b.file_meta


def test_engine_de_identifies_without_importing_pydicom_or_numpy(tmp_path: Path) -> None:
    src = tmp_path / "in.dcm"
    src.write_bytes(next(iter(iter_multiframe_corpus(1, seed=2))).data)
    script = (
        "import sys\n"
        "from dicom_deid.engine.instance import deidentify_file\n"
        "from dicom_deid.engine.plan import build_plan\n"
        f"plan = build_plan({BASIC!r}, b'k' * 32)\n"
        f"deidentify_file({str(src)!r}, {str(tmp_path / 'out.dcm')!r}, plan)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pydicom', 'numpy'}))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == "[]"
    assert dcmread(tmp_path / "out.dcm").PatientIdentityRemoved == "YES"


def test_cli_first_file_imports_neither_pydicom_nor_numpy(tmp_path: Path) -> None:
    """What ``python -X importtime`` shows of a one-file run: the import of pydicom
    (with numpy, about 0.25 s) was most of the start-up."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "ct.dcm").write_bytes(_ct())
    (tmp_path / "config.json").write_text(json.dumps(BASIC))
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dicom_deid.cli", "deidentify",
         "--config", str(tmp_path / "config.json"), str(tmp_path / "in"),
         str(tmp_path / "out"), "--workers", "1", "--no-progress"],
        capture_output=True, text=True, timeout=120, env={**os.environ,
                                                          "DICOM_DEID_KEY": "a" * 44})
    assert r.returncode == 0, r.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines()
                if line.startswith("import time:")}
    assert len(imported) > 50  # the report was read
    heavy = sorted(m for m in imported if m.split(".")[0] in ("pydicom", "numpy"))
    assert heavy == []
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert report["counts"]["written"] == 1
