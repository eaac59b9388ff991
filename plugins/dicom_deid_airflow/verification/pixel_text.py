"""The burned-in-text check: two OCR readers on the destination frames.

Only this check looks at pixels, and only where pixel redaction was requested. Frame 0
of the destination (and the last frame of a multi-frame instance), rendered to 8-bit
grey the way a viewer shows it, is read by two readers that share none of the
de-identifier's region finding (OpenCV morphology):

* Tesseract, read hard (:func:`dicom_deid.engine.ocr.read_all`: sparse-text, block and
  automatic page layouts, at the frame's size and at twice it; plus the automatic
  layout on a 3x3 median-filtered copy, which removes the speckle that hides text on
  ultrasound-like backgrounds);
* RapidOCR (:mod:`dicom_deid.engine.ocr_rapid`, PP-OCRv4: a neural text detector and
  recogniser), which reads what Tesseract, a page reader, leaves unread on real frames.

What either reads is searched for the source's identifying values, allowing a misread
now and then. With ``all_text`` (the run asked for REDACT_ALL_TEXT) any word or line
either reader reads back fails the check, whatever it says: the reason names the
destination instance, the frame and the reader, and counts; never the text. The
rendering, the readers and the approximate match are the engine's client API, so both
sides agree on what a frame shows and on what counts as a misread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset

import dicom_deid.engine.ocr as ocr
import dicom_deid.engine.ocr_rapid as ocr_rapid
from dicom_deid.engine.fuzzy import fuzzy_in
from dicom_deid.engine.pixels.grey import frame_grey8

from .checks import PIXEL_TAGS, identifying_values
from .errors import VerificationError

__all__ = ["FrameReading", "check_pixels", "read_dest"]

_MIN_PIXEL_NEEDLE = 5  # letters and digits of a value searched for in OCR text


@dataclass(frozen=True)
class FrameReading:
    """What the two readers read in one destination frame. The text is PHI: it is kept
    out of ``repr`` and must never be logged or written; counts may be."""

    instance: str  # the destination SOP Instance UID (a new UID, not the source's)
    frame: int
    tesseract: int = 0  # words that count as read back (ocr.read_back)
    rapidocr: int = 0  # lines that count as read back (ocr_rapid.read_back)
    rapidocr_words: int = 0  # words in those lines
    text: tuple[str, ...] = field(default=(), repr=False)  # all of it, for the PHI search


def _tessdata() -> None:
    try:
        ocr.tessdata()
    except RuntimeError:
        raise VerificationError(
            "Tesseract English model not found (install tesseract-ocr-eng or set "
            "TESSDATA_PREFIX)") from None
    if not ocr_rapid.available():
        raise VerificationError("RapidOCR is not installed (rapidocr-onnxruntime)")


def read_frame(grey: np.ndarray, instance: str = "", frame: int = 0) -> FrameReading:
    """Both readers on one 8-bit grey frame."""
    import cv2

    _tessdata()
    words = ocr.read_all(grey, min_confidence=0.0)
    words += ocr.read_all(cv2.medianBlur(np.ascontiguousarray(grey, np.uint8), 3),
                          min_confidence=0.0, modes=(3,))
    judged = {(w.left, w.top, w.text) for w in ocr.read_back(words, grey)}
    lines = ocr_rapid.read_lines(grey, min_confidence=0.3, upscale=True)
    read = ocr_rapid.read_back(lines, grey.shape)
    return FrameReading(
        instance=instance, frame=frame, tesseract=len(judged), rapidocr=len(read),
        rapidocr_words=sum(len(line.text.split()) for line in read),
        text=tuple(w.text for w in words) + tuple(line.text for line in lines))


def read_dest(dest: Dataset) -> list[FrameReading] | list[str]:
    """What the readers read in the rendered destination frames (frame 0, and the last
    frame of a multi-frame instance), or the reasons they could not be read
    (undecodable pixels: a failure of the check, not of the run). An instance without
    pixel data (a structured report, an RT plan) reads as no frames."""
    if not any(tag in dest for tag in PIXEL_TAGS):
        return []
    instance = str(dest.get("SOPInstanceUID", "") or "")
    try:
        count = int(dest.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        count = 1
    try:
        return [read_frame(frame_grey8(dest, i), instance, i)
                for i in sorted({0, max(0, count - 1)})]
    except VerificationError:
        raise
    except Exception as exc:
        return [f"render_failed:{type(exc).__name__}"]


def _alnum(text: str) -> str:
    return re.sub(r"[^0-9A-Z]", "", text.upper())


def check_pixels(src: Dataset, dest: Dataset | list[FrameReading] | list[str], *,
                 all_text: bool = False) -> tuple[list[str], int]:
    """Reasons the destination frames fail, and the number of words read back (either
    reader; what counts as read is the engine's ``JUDGE_*``). ``dest`` is the
    destination or what read_dest made of it (read once, checked against each twin).
    With ``all_text`` any word or line read back is a reason:
    ``text_read:<instance>:frame<n>:<reader>:<count>``."""
    readings = read_dest(dest) if isinstance(dest, Dataset) else dest
    if readings and isinstance(readings[0], str):
        return list(readings), 0  # type: ignore[arg-type]
    frames: list[FrameReading] = list(readings)  # type: ignore[arg-type]
    flat = _alnum(" ".join(t for reading in frames for t in reading.text))
    reasons = []
    for keyword, values in identifying_values(src, 0).items():
        needles = {_alnum(v) for v in values}
        if keyword == "PatientBirthDate":  # printed US- or European-style too
            dates = [d for d in needles if len(d) == 8 and d.isdigit()]
            needles |= {d[4:6] + d[6:8] + d[:4] for d in dates}
            needles |= {d[6:8] + d[4:6] + d[:4] for d in dates}
        if any(len(n) >= _MIN_PIXEL_NEEDLE and fuzzy_in(n, flat, len(n) // 6)
               for n in needles):
            reasons.append(f"{keyword}:in_pixels")
    if all_text:
        for reading in frames:
            for reader, count in (("tesseract", reading.tesseract),
                                  ("rapidocr", reading.rapidocr)):
                if count:
                    reasons.append(f"text_read:{reading.instance}:frame{reading.frame}:"
                                   f"{reader}:{count}")
    words = max((r.tesseract + r.rapidocr_words for r in frames), default=0)
    return reasons, words
