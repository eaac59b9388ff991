"""Verification sampling against the real local server, driven through DICOMweb only.

The point of each test: a strong de-identification passes every check on every
sampled instance, a weak one fails exactly the checks that describe its weakness, and
nothing the verifier writes or logs carries a planted value.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from dicom_deid_airflow.verification.errors import VerificationError
from dicom_deid_airflow.verification.run import (
    CHECKS,
    COLUMNS,
    read_verification_table,
    sample_and_verify,
    sop_digest,
)
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from tests.airflow_quality.conftest import (
    CONFIGS,
    Corpus,
    assert_no_phi,
    deidentify,
    new_store,
    to_bytes,
)
from tests.helpers import stow_raw


def verify(corpus: Corpus, dest: str, out: Path, *, pixel_redaction: bool = True,
           date_shift: bool = False, size: int = 10, seed: str = "run-1",
           source: str | None = None):  # noqa: ANN201
    return sample_and_verify(corpus.client(source or corpus.source), corpus.client(dest),
                             size=size, seed=seed, pixel_redaction=pixel_redaction,
                             date_shift=date_shift, out_dir=out)


def by_role(corpus: Corpus, table) -> dict:  # noqa: ANN001
    """Rows of a verification table keyed by the source role, via the UID digest."""
    roles = {sop_digest(corpus.sop(role)): role for role in corpus.datasets}
    return {roles[row["source_sop_sha256"]]: row for _, row in table.iterrows()}


def uid_free(path: Path) -> bytes:
    table = read_verification_table(path)
    return table.drop(columns=["dest_sop_uid"]).to_csv(index=False).encode()


def test_strong_config_every_sampled_instance_passes(corpus: Corpus, tmp_path: Path) -> None:
    result = verify(corpus, corpus.stores["strong"], tmp_path / "v")
    assert result.table_path == tmp_path / "v" / "verification.csv"
    assert (result.sampled, result.passed, result.failed, result.unmatched) == (5, 5, 0, 0)
    assert result.destination_instances == 5
    assert result.check_failures == dict.fromkeys(CHECKS, 0)

    table = read_verification_table(result.table_path)
    assert tuple(table.columns) == COLUMNS
    assert list(table["status"]) == ["ok"] * 5
    # Every destination instance was paired with its own source instance.
    assert set(by_role(corpus, table)) == set(corpus.datasets)
    for check in CHECKS:
        assert table[check].all(), check
    assert (table[[f"{c}_reason" for c in CHECKS]] == "").all().all()
    assert set(table["match"]) == {"metadata"}
    assert set(table["modality"]) == {"CT", "MR", "US"}
    json.dumps(result.to_dict())  # XCom-safe


def test_weak_config_fails_phi_and_pixels(corpus: Corpus, tmp_path: Path) -> None:
    """KEEP_ALL_PROFILE keeps names and dates, and without image redaction the burned-in
    names stay in the pixels: the checks that say so fail, the others do not."""
    result = verify(corpus, corpus.stores["weak"], tmp_path / "v")
    assert result.sampled == 5 and result.passed == 0 and result.unmatched == 0
    assert result.check_failures["phi_removed"] == 5
    assert result.check_failures["pixels_clean"] == 1
    assert result.check_failures["uids_changed"] == 0  # UIDs are replaced by every profile
    assert result.check_failures["clinical_kept"] == 0

    rows = by_role(corpus, read_verification_table(result.table_path))
    for role in ("marked-21", "marked-22"):
        assert not rows[role]["phi_removed"]
        reasons = rows[role]["phi_removed_reason"].split(";")
        assert "PatientName:kept" in reasons and "PatientName:in_header" in reasons
        assert "StudyDate:kept" in rows[role]["dates_ok_reason"]
        assert rows[role]["pixels_clean"]  # a 16x16 ramp: nothing to read
    burned = rows["burned"]
    assert not burned["pixels_clean"]
    assert "PatientName:in_pixels" in burned["pixels_clean_reason"]
    assert burned["ocr_words"] > 0
    assert all(row["status"] == "failed" for row in rows.values())


def test_strong_config_redacted_the_burned_in_text(corpus: Corpus, tmp_path: Path) -> None:
    rows = by_role(corpus, read_verification_table(
        verify(corpus, corpus.stores["strong"], tmp_path / "v").table_path))
    assert rows["burned"]["pixels_clean"]
    assert rows["burned"]["ocr_words"] == 0


def test_date_shift_keeps_intervals_and_kept_dates_fail(corpus: Corpus, tmp_path: Path) -> None:
    shifted = verify(corpus, corpus.stores["shift"], tmp_path / "shift", date_shift=True)
    assert shifted.passed == 5, shifted.check_failures
    # Dates kept as they were are neither shifted nor removed.
    kept = verify(corpus, corpus.stores["weak"], tmp_path / "kept", date_shift=True)
    assert kept.check_failures["dates_ok"] == 5
    rows = by_role(corpus, read_verification_table(kept.table_path))
    assert "StudyDate:kept" in rows["ct"]["dates_ok_reason"].split(";")


def test_outputs_logs_and_result_carry_no_phi(corpus: Corpus, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("weak", "strong"):
        result = verify(corpus, corpus.stores[name], tmp_path / name)
        data = result.table_path.read_bytes()
        assert_no_phi(data, corpus.needles, uid_free=uid_free(result.table_path))
        assert_no_phi(json.dumps(result.to_dict()).encode(), corpus.needles)
    assert caplog.records, "the verifier logs its counts"
    assert_no_phi(caplog.text.encode(), corpus.needles)


def test_sample_is_reproducible_from_the_seed(corpus: Corpus, tmp_path: Path) -> None:
    dest = corpus.stores["strong"]
    first = verify(corpus, dest, tmp_path / "a", size=3, seed="run-7")
    again = verify(corpus, dest, tmp_path / "b", size=3, seed="run-7")
    assert first.sampled == 3
    assert first.table_path.read_bytes() == again.table_path.read_bytes()
    picks = {tuple(read_verification_table(
        verify(corpus, dest, tmp_path / f"s{i}", size=2, seed=f"run-{i}").table_path
    )["dest_sop_uid"]) for i in range(4)}
    assert len(picks) > 1, "different seeds draw different samples"


def test_instance_without_source_is_unmatched(corpus: Corpus, hc, dataset: str,
                                              tmp_path: Path) -> None:
    stranger = dcmread(get_testdata_file("CT_small.dcm"))
    stranger.InstanceNumber = 99
    stranger.StudyInstanceUID, stranger.SeriesInstanceUID = generate_uid(), generate_uid()
    stranger.SOPInstanceUID = stranger.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dest = new_store(hc, dataset, "vq-stranger")
    assert stow_raw(f"{corpus.server_url}/v1/{dest}/dicomWeb",
                    [to_bytes(stranger)]).status_code == 200
    result = verify(corpus, dest, tmp_path / "v")
    assert (result.sampled, result.passed, result.failed, result.unmatched) == (1, 0, 1, 1)
    row = read_verification_table(result.table_path).iloc[0]
    assert row["status"] == "unmatched" and row["match"] == "no_candidate"
    assert row["source_sop_sha256"] == ""
    assert all(row[check] is pd.NA for check in CHECKS)


def test_twins_are_told_apart_by_pixel_hash(corpus: Corpus, hc, dataset: str,
                                            tmp_path: Path) -> None:
    """Two source instances alike in every matching attribute (same scanner, same slice
    position) but with different pixels: metadata-only de-identification copies the
    pixel data, so its SHA-256 pairs each destination instance with its own source."""
    raw = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    twin = dcmread(io.BytesIO(raw))
    twin.StudyInstanceUID, twin.SeriesInstanceUID = generate_uid(), generate_uid()
    twin.SOPInstanceUID = twin.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    pixels = bytearray(twin.PixelData)
    pixels[0] ^= 0x01
    twin.PixelData = bytes(pixels)
    source = new_store(hc, dataset, "vq-twins")
    assert stow_raw(f"{corpus.server_url}/v1/{source}/dicomWeb",
                    [raw, to_bytes(twin)]).status_code == 200
    dest = deidentify(hc, dataset, source, CONFIGS["metadata_only"], "vq-twins-d")
    result = verify(corpus, dest, tmp_path / "v", source=source, pixel_redaction=False)
    assert (result.sampled, result.passed) == (2, 2), result.check_failures
    table = read_verification_table(result.table_path)
    assert set(table["match"]) == {"pixel_sha256"}
    assert set(table["source_sop_sha256"]) == {
        sop_digest(dcmread(io.BytesIO(raw)).SOPInstanceUID), sop_digest(twin.SOPInstanceUID)}
    assert table["pixels_clean"].isna().all()  # not requested, not evaluated


def _protocol_twins(n: int, *, tube_current: bool) -> list[bytes]:
    """``n`` instances of one slice position in ``n`` series, as one CT protocol run on
    ``n`` patients: alike in every indexed matching attribute, different pixels, and (if
    ``tube_current``) each with its own X-Ray Tube Current, as dose modulation gives."""
    out = []
    for k in range(n):
        ds = dcmread(get_testdata_file("CT_small.dcm"))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        if tube_current:
            ds.XRayTubeCurrent = 100 + k
        pixels = bytearray(ds.PixelData)
        pixels[0:2] = k.to_bytes(2, "little")
        ds.PixelData = bytes(pixels)
        out.append(to_bytes(ds))
    return out


def _verify_protocol_twins(corpus: Corpus, hc, dataset: str, tmp_path: Path,  # noqa: ANN001
                           name: str, *, tube_current: bool, size: int):  # noqa: ANN202
    """40 protocol twins stored, de-identified metadata-only and verified."""
    source = new_store(hc, dataset, name)
    assert stow_raw(f"{corpus.server_url}/v1/{source}/dicomWeb",
                    _protocol_twins(40, tube_current=tube_current)).status_code == 200
    dest = deidentify(hc, dataset, source, CONFIGS["metadata_only"], f"{name}-d")
    return verify(corpus, dest, tmp_path / "v", source=source, pixel_redaction=False,
                  size=size)


def test_protocol_twins_past_the_candidate_cap_are_paired(corpus: Corpus, hc, dataset: str,
                                                          tmp_path: Path) -> None:
    """40 series of one protocol tie on every indexed matching attribute, more than the
    32 candidates the verifier retrieves: the kept acquisition parameters (here the tube
    current) narrow each tie to its own source instead of an 'ambiguous' failure. At
    20,000 instances of the pipeline bench every CT slice tied with 97 others."""
    result = _verify_protocol_twins(corpus, hc, dataset, tmp_path, "vq-protocol",
                                    tube_current=True, size=8)
    assert (result.sampled, result.passed, result.unmatched) == (8, 8, 0), \
        result.check_failures
    assert set(read_verification_table(result.table_path)["match"]) == {"metadata"}


def test_ties_nothing_narrows_stay_unmatched(corpus: Corpus, hc, dataset: str,
                                             tmp_path: Path) -> None:
    """The same 40 series with one tube current: nothing but the pixels tells them apart
    and the verifier will not retrieve 40 candidates for one pair, so each sampled pair
    is unmatched and says why (the gate fails on it), never passed on a guess."""
    result = _verify_protocol_twins(corpus, hc, dataset, tmp_path, "vq-identical",
                                    tube_current=False, size=3)
    assert (result.sampled, result.passed, result.unmatched) == (3, 0, 3)
    assert set(read_verification_table(result.table_path)["match"]) == {
        "ambiguous:40_candidates"}


def test_store_errors_name_no_uid(corpus: Corpus, tmp_path: Path) -> None:
    missing = corpus.source.rsplit("/", 1)[0] + "/no-such-store"
    with pytest.raises(VerificationError) as info:
        verify(corpus, corpus.stores["strong"], tmp_path / "v", source=missing)
    message = str(info.value)
    assert "HTTP 404" in message
    assert info.value.__suppress_context__  # requests' message (with the URL) is dropped
    assert_no_phi(message.encode(), corpus.needles)


def test_size_must_be_positive(corpus: Corpus, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="size"):
        verify(corpus, corpus.stores["strong"], tmp_path / "v", size=0)


def test_pixel_check_follows_modality_routing(corpus: Corpus, tmp_path: Path) -> None:
    """With modality routing only the routed modalities were to be pixel-redacted, so
    only they are read; the others have pixels_clean empty (not evaluated)."""
    result = verify(corpus, corpus.stores["weak"], tmp_path / "v", pixel_redaction={"us"})
    rows = by_role(corpus, read_verification_table(result.table_path))
    assert not rows["burned"]["pixels_clean"]
    assert all(rows[r]["pixels_clean"] is pd.NA for r in rows if r != "burned")
    assert result.check_failures["pixels_clean"] == 1


def test_the_pixel_route_is_always_sampled(corpus: Corpus, tmp_path: Path) -> None:
    """One ultrasound instance among five: a sample of two drawn uniformly would miss
    it in three runs of five; drawn by route, every run reads it."""
    for run in range(8):
        result = verify(corpus, corpus.stores["weak"], tmp_path / f"v{run}", size=2,
                        seed=f"run-{run}", pixel_redaction={"US"})
        rows = by_role(corpus, read_verification_table(result.table_path))
        assert len(rows) == 2 and "burned" in rows, sorted(rows)


def test_search_pages_walks_every_page_once(corpus: Corpus) -> None:
    """The paging that verify and the manifest read stores with: pages of 2 against the
    real server cover every instance once, then stop at the first empty page."""
    from dicom_deid_airflow.qido import search_pages

    client = corpus.client(corpus.source)
    calls: list[int] = []

    def search(**kwargs):  # noqa: ANN003, ANN202
        calls.append(kwargs["offset"])
        return client.search_for_instances(**kwargs)

    pages = list(search_pages(search, page=2))
    whole = client.search_for_instances()
    sops = [r["00080018"]["Value"][0] for page in pages for r in page]
    assert sorted(sops) == sorted(r["00080018"]["Value"][0] for r in whole)
    assert len(sops) == len(set(sops)) and len(whole) > 2
    assert all(len(page) <= 2 for page in pages)
    offsets = [sum(len(p) for p in pages[:k]) for k in range(len(pages) + 1)]
    assert calls == offsets  # each page asked from where the last one ended
