"""``dicom-deid deidentify`` as a user runs it: a real subprocess on a directory tree."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom import dcmread

from dicom_deid.corpus.burned_instances import PHI_VALUES, burned_instance
from dicom_deid.corpus.markers import marked_instance

CLI = [sys.executable, "-m", "dicom_deid.cli", "deidentify"]


def _tree(root: Path) -> None:
    marked = marked_instance(seed=11)
    (root / "PATIENT_NAME_IN_FOLDER").mkdir(parents=True)
    (root / "PATIENT_NAME_IN_FOLDER" / "SMITH_JOHN.dcm").write_bytes(marked.to_bytes())
    (root / "notes.txt").write_text("not dicom")


def test_cli_writes_by_new_uids_and_reports_failures(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    _tree(src)
    config = tmp_path / "basic.json"
    config.write_text(json.dumps({"dicom": {
        "filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}}))
    key = tmp_path / "run.key"
    run = subprocess.run([*CLI, "--config", str(config), str(src), str(dst), "--key-file",
                          str(key), "--no-progress"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "dst.report.json").read_text())
    assert report["counts"] == {"input": 2, "written": 1, "failed": 1}
    assert report["failures"] == [{"file": "notes.txt", "reason": report["failures"][0][
        "reason"]}] and report["failures"][0]["reason"].startswith("not DICOM")
    [out] = list(dst.rglob("*.dcm"))
    ds = dcmread(out)
    assert out.name == f"{ds.SOPInstanceUID}.dcm"
    assert out.parent.name == ds.SeriesInstanceUID
    assert "SMITH" not in str(out) and "PATIENT" not in str(out)
    # Same key file: same output bytes on a second run.
    again = tmp_path / "again"
    subprocess.run([*CLI, "--config", str(config), str(src), str(again), "--key-file", str(key),
                    "--no-progress"], check=True, capture_output=True)
    [out2] = list(again.rglob("*.dcm"))
    assert out2.read_bytes() == out.read_bytes()


@pytest.mark.parametrize(("config", "field"), [
    ({"dicom": {"filterProfile": "EVERYTHING"}}, "config.dicom.filterProfile"),
    ({"dicom": {}, "image": {"customRegexes": [{"pattern": "(unclosed"}]}},
     "config.image.customRegexes[0].pattern"),
])
def test_cli_refuses_a_bad_config_naming_the_field(tmp_path: Path, config: dict,
                                                   field: str) -> None:
    src = tmp_path / "src"
    _tree(src)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(config))
    run = subprocess.run([*CLI, "--config", str(path), str(src), str(tmp_path / "dst")],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert field in run.stderr


def test_no_marker_in_any_cli_output(tmp_path: Path) -> None:
    """Console, report and file names carry no planted value, whatever the profile."""
    marked = marked_instance(seed=12)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.dcm").write_bytes(marked.to_bytes())
    data = bytearray(marked.to_bytes())
    (src / "b-truncated.dcm").write_bytes(bytes(data[: len(data) - 100]))
    for profile in ("DEIDENTIFY_TAG_CONTENTS", "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"):
        config = tmp_path / f"{profile}.json"
        config.write_text(json.dumps({"dicom": {"filterProfile": profile}}))
        dst = tmp_path / profile
        run = subprocess.run([*CLI, "--config", str(config), str(src), str(dst)],
                             capture_output=True)
        assert run.returncode == 0
        outputs = run.stdout + run.stderr + (tmp_path / f"{profile}.report.json").read_bytes()
        outputs += "\n".join(str(p) for p in dst.rglob("*")).encode()
        assert [p.marker for p in marked.plants if p.searchable
                and p.marker.encode() in outputs] == []


def test_cli_redacts_burned_in_text_and_fails_a_bad_image_alone(tmp_path: Path) -> None:
    """REDACT_SENSITIVE_TEXT from the command line: PHI lines painted, the instance
    whose pixel data is cut short reported with a reason, nothing PHI in any output."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    good = burned_instance(41, background="flat")
    good.dataset.save_as(src / "good.dcm", enforce_file_format=True)
    bad = burned_instance(42, width=320, height=240).dataset
    bad.PixelData = bad.PixelData[:1000]
    bad.save_as(src / "bad.dcm", enforce_file_format=True)
    config = tmp_path / "us.json"
    config.write_text(json.dumps({
        "dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"},
        "image": {"textRedactionMode": "REDACT_SENSITIVE_TEXT"}}))
    run = subprocess.run([*CLI, "--config", str(config), str(src), str(dst), "--no-progress"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "dst.report.json").read_text())
    assert report["counts"] == {"input": 2, "written": 1, "failed": 1}
    assert report["failures"][0]["file"] == "bad.dcm"
    assert report["failures"][0]["reason"].startswith(
        "pixel decode failed at (7FE0,0010) PixelData:")
    [out] = list(dst.rglob("*.dcm"))
    ds = dcmread(out)
    assert ds.BurnedInAnnotation == "NO"
    frame = ds.pixel_array
    phi = [r for r in good.regions if r.phi]
    black = frame.min()  # MONOCHROME2 is painted with the image's own minimum
    assert phi and all((frame[r.identifying[1]:r.identifying[3],
                              r.identifying[0]:r.identifying[2]] == black).all()
                       for r in phi)
    outputs = out.read_bytes() + run.stdout.encode() + run.stderr.encode() + \
        (tmp_path / "dst.report.json").read_bytes()
    assert [v for v in PHI_VALUES.values() if v.encode() in outputs] == []
