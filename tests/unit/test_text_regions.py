"""Burned-in text: the generated corpus, the shape-based finder and the OCR wrapper.

The floors asserted here sit just under the finder's measured level on these seeds
(share of strings fully covered, redacted area outside any string); the issue's goals
are 0.99 and 2%, and ``bench/text_regions_recall.py`` reports on unseen seeds.
"""

from __future__ import annotations

import numpy as np
import pytest

from dicom_deid.corpus.burned_text import text_image
from dicom_deid.engine.ocr import find_text
from dicom_deid.engine.pixels.grey import array_grey8
from dicom_deid.engine.text_regions import text_boxes


def test_generator_is_deterministic_and_every_string_is_visible() -> None:
    a, regions = text_image(4, background="noise")
    b, again = text_image(4, background="noise")
    assert np.array_equal(a, b) and regions == again
    assert len(regions) == 6
    clean, _ = text_image(4, background="noise", strings=0)
    for r in regions:
        left, top, right, bottom = r.box
        assert 0 <= left < right <= 640 and 0 <= top < bottom <= 480
        step = np.abs(a[top:bottom, left:right].astype(int)
                      - clean[top:bottom, left:right].astype(int)).max()
        assert step >= 20  # drawn with at least the low end of the contrast range


def _score(background: str, seeds: range) -> tuple[float, float]:
    covered = total = 0
    spurious = []
    for seed in seeds:
        image, regions = text_image(seed, background=background)
        mask = np.zeros(image.shape, bool)
        for left, top, right, bottom in text_boxes(image):
            mask[top:bottom, left:right] = True
        truth = np.zeros(image.shape, bool)
        for r in regions:
            truth[r.box[1]:r.box[3], r.box[0]:r.box[2]] = True
            covered += mask[r.box[1]:r.box[3], r.box[0]:r.box[2]].all()
            total += 1
        spurious.append((mask & ~truth).mean())
    return covered / total, float(np.mean(spurious))


@pytest.mark.parametrize("background", ["flat", "gradient", "noise", "speckle"])
def test_shape_finder_recall_floor(background: str) -> None:
    recall, spurious = _score(background, range(12))
    assert recall >= 0.98
    assert spurious <= 0.022


def test_ocr_reads_clear_text() -> None:
    image, regions = text_image(2, background="flat", strings=3, sizes=(28, 36),
                                contrast=(150, 160))
    words = " ".join(box.text for box in find_text(array_grey8(image)))
    assert any(part in words for r in regions for part in r.text.split() if len(part) > 3)


# --- Text at the frame's edges, on bright, grey and speckled grounds, 8 to 60 px -------
#
# The real-image report: a CT with "SURNAME GIVEN [M] date" / "DOB: date" burned in white
# on black from the image's left edge was painted from ~60 px in. Three mechanisms, each
# tested here: block statistics that replicated the edge block (text along an edge set
# its own noise level), text-dense columns setting their own level, and glyphs cut by the
# frame's edge too small to be found (the box now runs into the edge).

FONTS = "/usr/share/fonts/truetype/dejavu/"
FACES = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSans-Bold.ttf")
EDGES = ("left", "right", "top", "bottom", "top-left", "bottom-right")
GROUNDS = ("black", "white", "grey", "speckle")
SIZES = (8, 11, 16, 28, 44, 60)
TEXT = "SURNAME^GIVEN 12.03.1961 ID4711"


def _ground(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    if kind == "black":
        return np.zeros(shape, np.uint8)
    if kind == "white":
        return np.full(shape, 235, np.uint8)
    if kind == "grey":
        return np.full(shape, 128, np.uint8)
    return np.clip(rng.rayleigh(40, shape), 0, 255).astype(np.uint8)  # ultrasound-like


def _drawn(kind: str, edge: str, size: int, face: str, text: str = TEXT,
           shape: tuple[int, int] = (384, 512)) -> tuple[np.ndarray, np.ndarray]:
    """A frame with ``text`` touching ``edge``, and the mask of its ink."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(FONTS + face, size)
    ink = Image.new("L", shape[::-1], 0)
    draw = ImageDraw.Draw(ink)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left, bottom - top
    rows, cols = shape
    x = {"left": 0, "right": cols - w, "top": (cols - w) // 2, "bottom": (cols - w) // 2,
         "top-left": 0, "bottom-right": cols - w}[edge]
    y = {"left": rows // 2, "right": rows // 3, "top": 0, "bottom": rows - h,
         "top-left": 0, "bottom-right": rows - h}[edge]
    draw.text((x - left, y - top), text, font=font, fill=255)
    mask = np.asarray(ink) > 96
    image = _ground(kind, shape, np.random.default_rng(size))
    image[mask] = 20 if kind == "white" else 250
    return image, mask


def _uncovered(image: np.ndarray, ink: np.ndarray) -> int:
    painted = np.zeros(ink.shape, bool)
    for left, top, right, bottom in text_boxes(image):
        painted[top:bottom, left:right] = True
    return int((ink & ~painted).sum())


@pytest.mark.parametrize("edge", EDGES)
@pytest.mark.parametrize("kind", GROUNDS)
def test_text_touching_an_edge_is_fully_covered(kind: str, edge: str) -> None:
    missed = {}
    for i, size in enumerate(SIZES):
        face = FACES[i % len(FACES)]
        image, ink = _drawn(kind, edge, size, face)
        if left := _uncovered(image, ink):
            missed[f"{size}px {face}"] = f"{left} of {int(ink.sum())} ink px"
    assert not missed, missed


def test_the_reported_ct_corner_is_painted_and_nothing_is_read_back() -> None:
    """White demographics from the left edge of a CT-like frame: every ink pixel is
    painted, and neither reader reads anything on the painted frame."""
    import cv2
    from PIL import Image, ImageDraw, ImageFont

    from dicom_deid.engine import ocr, ocr_rapid

    rng = np.random.default_rng(0)
    frame = np.zeros((512, 512), np.uint8)
    cv2.circle(frame, (256, 256), 215, 110, -1)
    cv2.circle(frame, (256, 256), 215, 230, 12)
    frame = np.clip(frame + rng.normal(0, 6, frame.shape) * (frame > 0), 0, 255)
    image = Image.fromarray(frame.astype(np.uint8))
    ink = Image.new("L", image.size, 0)
    font = ImageFont.truetype(FONTS + "DejaVuSans.ttf", 13)
    for canvas in (ImageDraw.Draw(image), ImageDraw.Draw(ink)):
        canvas.text((0, 1), "SURNAME GIVEN [M] 12.03.1961", fill=255, font=font)
        canvas.text((0, 17), "DOB: 07.08.1950", fill=255, font=font)
    pixels, mask = np.array(image), np.asarray(ink) > 96
    assert _uncovered(pixels, mask) == 0
    assert ocr.read_back(ocr.read_all(pixels), pixels), "the unpainted frame should read"
    for left, top, right, bottom in text_boxes(pixels):
        pixels[top:bottom, left:right] = 0
    assert not ocr.read_back(ocr.read_all(pixels), pixels)
    if ocr_rapid.available():
        assert not ocr_rapid.read_back(ocr_rapid.read_lines(pixels, upscale=True),
                                       pixels.shape)
