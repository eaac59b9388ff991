"""Every pydicom test file and charset file through every profile.

Each input is either de-identified into a file that pydicom and DCMTK's ``dcmdump``
both read, or counted as a failure with a reason; the run never stops, and the
counts reconcile. Runs through the batch runner the CLI uses.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from dicom_deid import batch
from dicom_deid.corpus import realworld

PROFILES = ("KEEP_ALL_PROFILE", "MINIMAL_KEEP_LIST_PROFILE",
            "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE", "DEIDENTIFY_TAG_CONTENTS")
DCMDUMP = shutil.which("dcmdump")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("inputs")
    files = [f.path for f in realworld.files(sources=("pydicom",))]
    for i, path in enumerate(sorted(files)):
        if path.is_file() and path.suffix not in (".py", ".pyc", ".json", ".txt", ".gz", ".bz2"):
            (root / f"{i:04d}-{path.name}").write_bytes(path.read_bytes())
    # Inputs made bad on purpose: truncated, empty, not DICOM at all.
    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    (root / "bad-truncated.dcm").write_bytes(ct[: len(ct) // 2])
    (root / "bad-empty.dcm").write_bytes(b"")
    (root / "bad-text.dcm").write_bytes(b"not a dicom file\n" * 10)
    return root


@pytest.mark.parametrize("profile", PROFILES)
def test_every_input_is_deidentified_or_a_counted_failure(
        source: Path, tmp_path: Path, profile: str) -> None:
    dst = tmp_path / "out"
    report = batch.run({"dicom": {"filterProfile": profile}}, source, dst, b"k" * 32,
                       workers=2, progress=False)
    counts = report["counts"]
    outputs = sorted(dst.rglob("*.dcm"))
    assert counts["input"] == len(batch.source_files(source)) > 90
    assert counts["written"] + counts["failed"] == counts["input"]
    assert counts["written"] == len(outputs) >= 45
    reasons = {f["file"]: f["reason"] for f in report["failures"]}
    assert all(reasons.values())
    assert reasons["bad-empty.dcm"] and "truncated" in reasons["bad-truncated.dcm"]
    assert reasons["bad-text.dcm"].startswith("not DICOM")
    assert not any("Error)" in r and "could not de-identify" in r for r in reasons.values()), \
        sorted(set(reasons.values()))
    assert not list(dst.rglob("*.part"))  # nothing half-written
    for path in outputs:
        ds = dcmread(path)
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        if profile != "KEEP_ALL_PROFILE":
            assert ds.PatientIdentityRemoved == "YES"
    if DCMDUMP:
        for i in range(0, len(outputs), 50):
            run = subprocess.run([DCMDUMP, "-q", *map(str, outputs[i:i + 50])],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            assert run.returncode == 0, run.stderr[-2000:].decode("utf-8", "replace")
