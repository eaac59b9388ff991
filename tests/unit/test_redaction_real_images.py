"""REDACT_ALL_TEXT on real images with burned-in text: nothing is left to read.

The images are the real corpus (:mod:`dicom_deid.corpus.realworld`) files on which either
reader reads text on the input (surveyed with both readers on the first, middle and last
frame of every file: ``bench/text_regions_recall.py --real --survey``). Files whose
pixels are another encoding of a listed one (US1_UNCI/J2KR/J2KI of US1_UNCR, the
OBXXXX1A and gdcm-US-ALOKA-16 variants, RG3_J2KI/J2KR/UNCI, vlut_04 of mlut_18,
examples_jpeg2k of US1_UNCR) are represented by one. Left out: MR-SIEMENS-DICOM-
WithOverlays, where PP-OCR reads a round organ as "O" (0.73) and nothing else reads text,
and ctbrain1/2 (a hand-drawn face read as dashes).

Each is de-identified with ``{"image": {"textRedactionMode": "REDACT_ALL_TEXT"}}`` and
the output is judged by both readers (Tesseract read hard, ``ocr.read_all``; RapidOCR,
``ocr_rapid.read_lines``), with what counts as read back defined by the engine
(``ocr.read_back``, ``ocr_rapid.read_back``): no word, no line, on the first, middle and
last frame (the frames the survey found text on; in these cines the text is static).
Assertion messages name the file, frame, reader and counts; never the text (it is PHI
on real data).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from pydicom import dcmread

from dicom_deid.corpus import realworld
from dicom_deid.engine import ocr, ocr_rapid
from dicom_deid.engine.instance import deidentify_bytes
from dicom_deid.engine.pixels.grey import frame_grey8
from dicom_deid.engine.plan import build_plan

pytestmark = pytest.mark.skipif(not ocr_rapid.available(), reason="rapidocr not installed")

#: The real files that carry burned-in text (one per distinct image).
TEXT_BEARING = (
    "test_files/GDCMJ2K_TextGBR.dcm",
    "test_files/examples_palette.dcm",
    "test_files/examples_rgb_color.dcm",
    "test_files/examples_ybr_color.dcm",
    "JPGLosslessP14SV1_1s_1f_8b.dcm",
    "OBXXXX1A.dcm",
    "OBXXXX1A_2frame.dcm",
    "RG3_UNCR.dcm",
    "US1_UNCR.dcm",
    "US1_J2KI.dcm",
    "color3d_jpeg_baseline.dcm",
    "gdcm-US-ALOKA-16.dcm",
    "mlut_18.dcm",
    "animals/cat.dcm",
    "ultrasounds/GREYSCALE_CINE.dcm",
    "ultrasounds/GREYSCALE_IMAGE.dcm",
    "ultrasounds/RGB_IMAGE.dcm",
)

PLAN = build_plan({"image": {"textRedactionMode": "REDACT_ALL_TEXT"}}, b"k" * 32)


def _corpus() -> dict[str, realworld.CorpusFile]:
    return {f.name: f for f in realworld.files(sources=("pydicom", "pydicom-data",
                                                        "deid-data"))}


CORPUS = _corpus()


def _frames(count: int) -> list[int]:
    return sorted({0, count // 2, count - 1})


def _read(grey: np.ndarray) -> tuple[int, int]:
    """Words Tesseract and lines RapidOCR read back in one redacted frame."""
    words = ocr.read_back(ocr.read_all(grey, min_confidence=ocr.JUDGE_CONFIDENCE), grey)
    lines = ocr_rapid.read_back(ocr_rapid.read_lines(grey, min_confidence=0.3, upscale=True),
                                grey.shape)
    return len(words), len(lines)


def _has_text(grey: np.ndarray) -> bool:
    """The list's guard, on the input's first frame: RapidOCR alone, at the frame's size
    (reading every line of a text-rich input costs ~0.15 s a line)."""
    return bool(ocr_rapid.read_back(ocr_rapid.read_lines(grey), grey.shape))


@pytest.mark.parametrize("name", TEXT_BEARING)
def test_all_text_leaves_nothing_either_reader_reads(name: str) -> None:
    if name not in CORPUS:
        pytest.skip(f"{name}: its corpus package is not installed")
    data = CORPUS[name].path.read_bytes()
    source = dcmread(io.BytesIO(data))
    count = int(source.get("NumberOfFrames", 1) or 1)
    frames = _frames(count)
    assert _has_text(frame_grey8(source, 0)), f"{name}: no text read on the input"
    out, _ = deidentify_bytes(data, PLAN)
    redacted = dcmread(io.BytesIO(out))
    left = {}
    for i in frames:
        words, lines = _read(frame_grey8(redacted, i))
        if words or lines:
            left[i] = {"tesseract words": words, "rapidocr lines": lines}
    assert not left, f"{name}: read back after REDACT_ALL_TEXT (frame: counts): {left}"
