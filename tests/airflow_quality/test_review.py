"""The before/after review against the real local server, through dicomweb-client only.

The corpus (``conftest.corpus``) is stored once and de-identified for real: "strong"
(basic profile + REDACT_ALL_TEXT, so the burned-in ultrasound frame is painted) and
"weak" (KEEP_ALL_PROFILE, no pixel redaction, so nothing is painted). The rows are the
verifier's own table (``sample_and_verify``), read back with csv.DictReader as the report
step reads it. The point of each test: outlines are exactly the pixels that changed, CT
and MR are windowed (not white), source frames appear only when asked for, captions
say what a reviewer needs, and one bad pair costs only its own picture.
"""

from __future__ import annotations

import base64
import csv
import io
import logging
import time
from pathlib import Path

import numpy as np
import pytest
from dicom_deid_airflow.review import (
    ReviewPair,
    outline_rect,
    painted_boxes,
    parse_show_source,
    render_frame,
    review_pairs,
    thumb_size,
)
from dicom_deid_airflow.verification.run import CHECKS, sample_and_verify, sop_digest
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicom_deid.corpus.burned_instances import burned_instance
from tests.airflow_quality.conftest import BURNED_SEED, Corpus, assert_no_phi, to_bytes
from tests.helpers import new_store, stow_raw

ROLES = ("burned", "ct", "mr")


def rows_of(corpus: Corpus, store: str, out: Path, *, pixel_redaction: bool) -> list[dict]:
    """The verifier's table for ``store`` (every instance sampled), as DictReader rows."""
    result = sample_and_verify(corpus.client(corpus.source), corpus.client(store), size=10,
                               seed="review", pixel_redaction=pixel_redaction,
                               date_shift=False, out_dir=out)
    with result.table_path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def by_role(corpus: Corpus, rows: list[dict], pairs: list[ReviewPair]) -> dict:
    """(row, pair) keyed by the source role, via the source UID digest."""
    roles = {sop_digest(corpus.sop(role)): role for role in corpus.datasets}
    return {roles[row["source_sop_sha256"]]: (row, pair)
            for row, pair in zip(rows, pairs, strict=True)}


@pytest.fixture(scope="module")
def strong(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    return rows_of(corpus, corpus.stores["strong"], tmp_path_factory.mktemp("strong"),
                   pixel_redaction=True)


@pytest.fixture(scope="module")
def weak(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    return rows_of(corpus, corpus.stores["weak"], tmp_path_factory.mktemp("weak"),
                   pixel_redaction=False)


@pytest.fixture(scope="module")
def strong_pairs(corpus: Corpus, strong: list[dict]) -> dict:
    pairs = review_pairs(corpus.client(corpus.source), corpus.client(corpus.stores["strong"]),
                         strong, show_source=False, limit=len(strong))
    return by_role(corpus, strong, pairs)


def image(uri: str | None) -> np.ndarray:
    assert uri is not None and uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def destination(client: DICOMwebClient, sop: str) -> Dataset:
    [item] = client.search_for_instances(search_filters={"SOPInstanceUID": sop})
    return client.retrieve_instance(item["0020000D"]["Value"][0],
                                    item["0020000E"]["Value"][0], sop)


def test_ct_and_mr_are_windowed_not_white(strong_pairs: dict) -> None:
    """CT_small has no window (percentile range), MR_small has one (its own VOI): both
    come out mid-grey with contrast, where the server's rendering of CT was near white."""
    for role in ("ct", "mr"):
        _, pair = strong_pairs[role]
        grey = image(pair.dest_uri)
        assert grey.ndim == 2  # grey stays grey (no outlines drawn)
        assert 30 < grey.mean() < 220, (role, grey.mean())
        assert grey.std() > 25, (role, grey.std())
        assert (grey <= 5).mean() < 0.9 and (grey >= 250).mean() < 0.5, role


def test_outlines_are_exactly_the_painted_pixels(corpus: Corpus, strong_pairs: dict) -> None:
    """Every changed pixel is inside a box, every box is tight around changed pixels
    and almost all of it changed, and the boxes cover the text the corpus burned in
    wherever the redactor painted it."""
    row, pair = strong_pairs["burned"]
    source = corpus.datasets["burned"].pixel_array
    dest = destination(corpus.client(corpus.stores["strong"]), row["dest_sop_uid"]).pixel_array
    changed = (source != dest).any(axis=-1)
    assert changed.any() and pair.boxes and pair.note == ""
    assert pair.painted_fraction == pytest.approx(float(changed.mean()))

    inside = np.zeros_like(changed)
    for left, top, right, bottom in pair.boxes:
        inside[top:bottom, left:right] = True
        part = changed[top:bottom, left:right]
        assert part.mean() > 0.95, (left, top, right, bottom)
        # tight: each edge row / column of the box holds a changed pixel
        assert part[0].any() and part[-1].any() and part[:, 0].any() and part[:, -1].any()
    assert not (changed & ~inside).any()  # no changed pixel outside the outlines

    regions = burned_instance(BURNED_SEED, photometric="RGB", background="flat").regions

    def covered(box: tuple[int, int, int, int]) -> bool:
        return any(b[0] <= box[0] and b[1] <= box[1] and box[2] <= b[2] and box[3] <= b[3]
                   for b in pair.boxes)

    painted = [bool((dest[r.box[1]:r.box[3], r.box[0]:r.box[2]] == 0).all()) for r in regions]
    assert all(covered(r.box) for r, p in zip(regions, painted, strict=True) if p)
    assert sum(covered(r.box) for r in regions) >= len(regions) - 1  # as the API test allows


def test_red_outlines_are_drawn_where_the_boxes_are(corpus: Corpus, strong_pairs: dict
                                                    ) -> None:
    """The red pixels of the picture are exactly the outlines of the scaled boxes: one
    pixel outside each, so the paint itself stays visible."""
    _, pair = strong_pairs["burned"]
    ds = corpus.datasets["burned"]
    rgb = image(pair.dest_uri)
    assert rgb.shape[:2][::-1] == thumb_size(ds.Rows, ds.Columns) == (256, 192)
    red = (rgb[..., 0] == 255) & (rgb[..., 1] == 0) & (rgb[..., 2] == 0)
    want = np.zeros_like(red)
    for box in pair.boxes:
        x0, y0, x1, y1 = outline_rect(box, ds.Rows, ds.Columns)
        want[y0, x0:x1 + 1] = want[y1, x0:x1 + 1] = True
        want[y0:y1 + 1, x0] = want[y0:y1 + 1, x1] = True
    assert (red == want).all()
    # the colour image stays in colour: the tinted background is not grey
    assert np.abs(rgb[..., 0].astype(int) - rgb[..., 2].astype(int)).mean() > 5


def test_an_unpainted_ct_has_no_outlines(corpus: Corpus, weak: list[dict]) -> None:
    pairs = review_pairs(corpus.client(corpus.source), corpus.client(corpus.stores["weak"]),
                         weak, show_source=False, limit=len(weak))
    found = by_role(corpus, weak, pairs)
    for role in ("ct", "mr", "burned"):  # no pixel redaction in "weak": nothing painted
        _, pair = found[role]
        assert pair.boxes == () and pair.painted_fraction == 0.0 and pair.note == "", role
        assert pair.dest_uri is not None
    # KEEP_ALL keeps the series description: the caption shows it, checks by name
    row, pair = found["burned"]
    marks = {"true": "\u2713", "false": "\u2717", "": "\u2013"}
    assert pair.caption == ("US \u00b7 BURNED-IN TEXT \u00b7 #1 \u2014 " + " ".join(
        f"{c} {marks[row[c]]}" for c in CHECKS))
    assert pair.checks["phi_removed"] is False and "pixels_clean" not in pair.checks


def test_captions_name_modality_instance_and_checks(corpus: Corpus, strong_pairs: dict
                                                    ) -> None:
    for role in ROLES:
        row, pair = strong_pairs[role]
        ds = corpus.datasets[role]
        assert pair.modality == ds.Modality and pair.caption.startswith(ds.Modality)
        assert pair.instance_number == str(ds.InstanceNumber)
        assert f"#{ds.InstanceNumber}" in pair.caption
        for check in CHECKS:
            assert f"{check} \u2713" in pair.caption, (role, check)
        assert pair.checks == dict.fromkeys(CHECKS, True)
        assert pair.sample_index == int(row["sample_index"]) and pair.status == "ok"


def test_source_frames_only_when_asked(corpus: Corpus, strong: list[dict],
                                       strong_pairs: dict) -> None:
    assert all(pair.source_uri is None for _, pair in strong_pairs.values())
    pairs = review_pairs(corpus.client(corpus.source), corpus.client(corpus.stores["strong"]),
                         strong, show_source=True, limit=len(strong))
    found = by_role(corpus, strong, pairs)
    for role, (_, pair) in found.items():
        before = image(pair.source_uri)
        assert before.shape == image(pair.dest_uri).shape, role
        assert pair.boxes == strong_pairs[role][1].boxes  # the same pairs, the same boxes
    # the source of the burned frame shows the text (brighter inside the boxes than the
    # painted destination) and carries no outlines
    _, pair = found["burned"]
    before, after = image(pair.source_uri), image(pair.dest_uri)
    red = (before[..., 0] == 255) & (before[..., 1] == 0) & (before[..., 2] == 0)
    assert not red.any()
    ds = corpus.datasets["burned"]
    x0, y0, x1, y1 = outline_rect(pair.boxes[0], ds.Rows, ds.Columns)
    assert before[y0 + 1:y1, x0 + 1:x1].mean() > after[y0 + 1:y1, x0 + 1:x1].mean() + 20


def test_a_bad_pair_gets_a_note_and_the_others_still_render(corpus: Corpus, hc,
                                                            dataset: str) -> None:
    """An undecodable destination, a destination whose source lookup falls back to the
    store listing and finds a frame of another size, and an unmatched row: each gets a
    note; none raises; the good pairs around them render."""
    broken = burned_instance(33, width=320, height=240).dataset
    broken.PixelData = broken.PixelData[: len(broken.PixelData) // 2]
    mr = dcmread(get_testdata_file("MR_small.dcm"))
    mr.StudyInstanceUID, mr.SeriesInstanceUID = generate_uid(), generate_uid()
    mr.SOPInstanceUID = mr.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    store = new_store(hc, dataset, "review-bad")
    r = stow_raw(f"{corpus.server_url}/v1/{store}/dicomWeb", [to_bytes(broken), to_bytes(mr)])
    assert r.status_code == 200, r.text
    rows = [
        {"sample_index": "0", "dest_sop_uid": str(mr.SOPInstanceUID), "modality": "MR",
         "status": "ok", "source_sop_sha256": sop_digest(corpus.sop("mr"))},
        {"sample_index": "1", "dest_sop_uid": str(broken.SOPInstanceUID), "modality": "US",
         "status": "failed", "source_sop_sha256": "", "pixels_clean": "false"},
        # the MR's attributes find the source MR, whose digest is not this one: the
        # whole source is listed, the CT found, and its 128x128 frame is not the MR's
        {"sample_index": "2", "dest_sop_uid": str(mr.SOPInstanceUID), "modality": "MR",
         "status": "ok", "source_sop_sha256": sop_digest(corpus.sop("ct"))},
        {"sample_index": "3", "dest_sop_uid": "2.25.1", "modality": "CT", "status": "ok"},
        {"sample_index": "4", "dest_sop_uid": str(mr.SOPInstanceUID), "modality": "MR",
         "status": "unmatched", "source_sop_sha256": ""},
    ]
    pairs = review_pairs(corpus.client(corpus.source), corpus.client(store), rows,
                         show_source=True, limit=10)
    assert [p.sample_index for p in pairs] == [0, 1, 2, 3, 4]
    same, bad, other_size, missing, unmatched = pairs
    assert same.note == "" and same.boxes == () and same.source_uri is not None
    assert bad.dest_uri is None and bad.note.startswith("destination pixel decoding failed (")
    assert bad.caption.endswith(f"({bad.note})") and "pixels_clean \u2717" in bad.caption
    assert other_size.note == "source and destination frames differ in size: no outlines"
    assert other_size.dest_uri is not None and other_size.boxes == ()
    assert other_size.painted_fraction is None
    assert missing.note == "destination instance not found" and missing.dest_uri is None
    assert unmatched.note == "no source instance matched: no outlines"
    assert unmatched.dest_uri is not None and unmatched.source_uri is None
    assert len(review_pairs(corpus.client(corpus.source), corpus.client(store), rows,
                            show_source=False, limit=2)) == 2


def test_nothing_identifying_is_logged_or_returned(corpus: Corpus, strong: list[dict],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    started = time.perf_counter()
    pairs = review_pairs(corpus.client(corpus.source), corpus.client(corpus.stores["strong"]),
                         strong, show_source=False, limit=len(strong))
    elapsed = time.perf_counter() - started
    assert elapsed < 30, elapsed
    text = caplog.text.encode()
    assert b"review: 5 pairs, 5 rendered, 1 with outlines, 0 with notes, 0 with the source" \
        in text
    fields = repr([{k: v for k, v in vars(p).items() if not k.endswith("_uri")}
                   for p in pairs]).encode()
    captions = " ".join(p.caption for p in pairs).encode()
    for haystack in (text, fields, captions):
        assert_no_phi(haystack, corpus.needles)


def test_boxes_merge_over_holes_and_overlaps() -> None:
    """Paint over a speckled frame leaves holes where the speckle already had the fill
    value; touching or overlapping paint is one box."""
    rng = np.random.default_rng(0)
    source = rng.integers(1, 8, (120, 160), dtype=np.uint16)
    source[12:28:2, 22:58:2] = 0  # a quarter of the inside was 0 already: holes
    dest = source.copy()
    dest[10:30, 20:60] = 0
    dest[25:50, 50:90] = 0  # overlaps the first
    dest[80:90, 100:101] = 0  # a one-pixel-wide line
    mask, boxes = painted_boxes(source, dest)
    assert boxes == [(20, 10, 90, 50), (100, 80, 101, 90)]
    assert mask.sum() == (source != dest).sum()
    with pytest.raises(ValueError):
        painted_boxes(source, dest[:, :-1])


@pytest.mark.parametrize("value, on", [
    (None, False), ("", False), ("false", False), ("0", False), ("tru", False),
    ("{}", False), ("true", True), (" TRUE ", True), ("1", True), ("yes", True),
])
def test_source_frames_are_off_unless_the_variable_says_on(value: str | None,
                                                           on: bool) -> None:
    assert parse_show_source(value) is on


def test_the_instances_own_window_is_applied() -> None:
    """A CT with a soft-tissue window (40/400 HU) is shown through that window, from
    Hounsfield units (rescale applied first), as PS3.3 C.11.2.1.2 defines it; the same
    image as MONOCHROME1 is its inverse."""
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    ds.WindowCenter, ds.WindowWidth = ["40", "1000"], ["400", "3000"]  # the first counts
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    want = np.clip(((hu - 39.5) / 399 + 0.5) * 255, 0, 255)
    got = image(render_frame(ds, ds.pixel_array)).astype(float)
    assert np.abs(got - want).max() <= 1
    ds.PhotometricInterpretation = "MONOCHROME1"
    inverse = image(render_frame(ds, ds.pixel_array)).astype(float)
    assert np.abs(inverse - (255 - want)).max() <= 1


def test_large_frames_are_scaled_to_the_long_side() -> None:
    ds = burned_instance(7, width=1000, height=300, strings=2).dataset
    frame = ds.pixel_array
    assert thumb_size(ds.Rows, ds.Columns) == (256, 77)
    assert image(render_frame(ds, frame, [(0, 0, 1000, 300)])).shape == (77, 256, 3)
    assert outline_rect((0, 0, 1000, 300), 300, 1000) == (0, 0, 255, 76)  # clipped
    assert outline_rect((500, 100, 504, 101), 300, 1000) == (127, 24, 130, 26)
