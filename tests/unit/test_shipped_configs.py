"""The DeidentifyConfig files shipped in include/configs/deid are valid and do their job."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from pydicom import dcmread

from dicom_deid.corpus.markers import marked_instance
from dicom_deid.engine.instance import deidentify_bytes
from dicom_deid.engine.plan import build_plan

CONFIGS = sorted((Path(__file__).parents[2] / "include" / "configs" / "deid").glob("*.json"))
# Profiles that de-identify headers; keep-all-pixels-only keeps every tag on purpose
# (pixels only), and is what the pipeline's failing-gate test runs.
HEADER_CONFIGS = [p for p in CONFIGS if json.loads(p.read_text())["dicom"].get(
    "filterProfile") != "KEEP_ALL_PROFILE"]


@pytest.mark.parametrize("path", HEADER_CONFIGS, ids=[p.stem for p in HEADER_CONFIGS])
def test_shipped_config_removes_free_text_and_private_markers(path: Path) -> None:
    marked = marked_instance(seed=21)
    out, _ = deidentify_bytes(marked.to_bytes(), build_plan(json.loads(path.read_text()),
                                                            b"k" * 32))
    left = [p.marker for p in marked.plants if p.kind in ("free_text", "private")
            and p.marker.encode() in out]
    assert left == []
    ds = dcmread(io.BytesIO(out))
    assert ds.PatientIdentityRemoved == "YES"


def test_research_config_shifts_dates_and_keeps_descriptions() -> None:
    config = json.loads((CONFIGS[0].parent / "research.json").read_text())
    marked = marked_instance(seed=22)
    out, _ = deidentify_bytes(marked.to_bytes(), build_plan(config, b"k" * 32))
    ds = dcmread(io.BytesIO(out))
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    assert ds.StudyDate and ds.StudyDate != marked.dataset.StudyDate
    assert ds.StudyDescription and ds.SeriesDescription


def test_configs_are_shipped() -> None:
    assert {p.stem for p in CONFIGS} >= {"basic", "research"}


def test_keep_all_pixels_only_keeps_tags_and_redacts_pixels() -> None:
    config = json.loads((CONFIGS[0].parent / "keep-all-pixels-only.json").read_text())
    plan = build_plan(config, b"k" * 32)
    assert plan.profile == "KEEP_ALL_PROFILE" and plan.image.mode == "REDACT_ALL_TEXT"
