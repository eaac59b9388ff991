"""Pairing destination instances with their sources when attributes do not decide, against
the real local server: identical twins (checked against every twin) and pixel-redacted
ultrasound frames (matched by the pixels outside the painted boxes)."""

from __future__ import annotations

from pathlib import Path

from dicom_deid_airflow.verification.run import CHECKS, read_verification_table, sop_digest

from dicom_deid.corpus.burned_instances import PHI_VALUES, burned_instance
from dicom_deid.corpus.markers import marked_instance
from tests.airflow_quality.conftest import (
    CONFIGS,
    Corpus,
    _needles,
    assert_no_phi,
    deidentify,
    new_store,
    to_bytes,
)
from tests.airflow_quality.test_verification import uid_free, verify
from tests.helpers import stow_raw

TWIN_SEEDS = (41, 42)
BURNED_SEEDS = (4, 5)


def test_twins_are_checked_against_every_twin(corpus: Corpus, hc, dataset: str,
                                              tmp_path: Path) -> None:
    """Same pixels, same Instance Number, different planted PHI: the destination cannot
    be paired with one of them, so it must pass against both."""
    marked = [marked_instance(seed) for seed in TWIN_SEEDS]
    assert marked[0].dataset.InstanceNumber == marked[1].dataset.InstanceNumber
    assert marked[0].dataset.PixelData == marked[1].dataset.PixelData
    needles = set().union(*({p.marker for p in m.plants if p.searchable} | _needles(m.dataset)
                            for m in marked))
    source = new_store(hc, dataset, "vq-mtwin")
    assert stow_raw(f"{corpus.server_url}/v1/{source}/dicomWeb",
                    [m.to_bytes() for m in marked]).status_code == 200
    digests = {sop_digest(str(m.dataset.SOPInstanceUID)) for m in marked}

    strong = deidentify(hc, dataset, source, CONFIGS["strong"], "vq-mtwin-s")
    result = verify(corpus, strong, tmp_path / "strong", source=source)
    assert (result.sampled, result.passed, result.unmatched) == (2, 2, 0), \
        result.check_failures
    table = read_verification_table(result.table_path)
    assert list(table["match"]) == ["twins:2"] * 2
    assert list(table["status"]) == ["ok"] * 2
    assert set(table["source_sop_sha256"]) <= digests
    assert_no_phi(result.table_path.read_bytes(), needles,
                  uid_free=uid_free(result.table_path))

    weak = deidentify(hc, dataset, source, CONFIGS["weak"], "vq-mtwin-w")
    result = verify(corpus, weak, tmp_path / "weak", source=source)
    assert (result.sampled, result.passed, result.unmatched) == (2, 0, 0)
    assert result.check_failures["phi_removed"] == 2
    table = read_verification_table(result.table_path)
    assert list(table["match"]) == ["twins:2"] * 2
    assert list(table["status"]) == ["failed"] * 2
    for reasons in table["phi_removed_reason"]:
        assert "PatientName:kept" in reasons.split(";")
    assert_no_phi(result.table_path.read_bytes(), needles,
                  uid_free=uid_free(result.table_path))


def test_redacted_frames_are_matched_outside_the_redaction(corpus: Corpus, hc,
                                                          dataset: str,
                                                          tmp_path: Path) -> None:
    """Two ultrasound frames alike in every matching attribute (Instance Number 1,
    640x480): text redaction changes the pixel data, so no SHA-256 matches, but each
    destination frame equals its own source outside the painted boxes."""
    burned = [burned_instance(seed, photometric="RGB").dataset for seed in BURNED_SEEDS]
    source = new_store(hc, dataset, "vq-mburn")
    assert stow_raw(f"{corpus.server_url}/v1/{source}/dicomWeb",
                    [to_bytes(ds) for ds in burned]).status_code == 200
    dest = deidentify(hc, dataset, source, CONFIGS["strong"], "vq-mburn-d")
    result = verify(corpus, dest, tmp_path / "v", source=source)
    assert (result.sampled, result.passed, result.unmatched) == (2, 2, 0), \
        result.check_failures
    table = read_verification_table(result.table_path)
    assert list(table["match"]) == ["pixels_outside_redaction"] * 2
    assert list(table["status"]) == ["ok"] * 2
    # Each destination frame was paired with its own source, not both with one.
    assert set(table["source_sop_sha256"]) == {
        sop_digest(str(ds.SOPInstanceUID)) for ds in burned}
    for check in CHECKS:
        assert table[check].all(), check
    needles = set(PHI_VALUES.values()).union(*(_needles(ds) for ds in burned))
    assert_no_phi(result.table_path.read_bytes(), needles,
                  uid_free=uid_free(result.table_path))
