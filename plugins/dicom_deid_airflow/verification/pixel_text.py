"""The burned-in-text check: OCR of the destination frame, searched for source PHI.

Only this check looks at pixels, and only where pixel redaction was requested: frame 0
of the destination, rendered to 8-bit grey the way a viewer shows it, is read with
Tesseract and searched for the source's identifying values, allowing a misread now and
then. It has its own Tesseract engine (whole-page layout analysis, not the
de-identifier's sparse-text reading), so it does not share the de-identifier's blind
spots; the rendering, the model lookup and the approximate match are the engine's
client API, so both sides agree on what a frame shows and on what counts as a misread.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from dicom_deid.engine.fuzzy import fuzzy_in
from dicom_deid.engine.ocr import tessdata
from dicom_deid.engine.pixels.grey import frame_grey8

from .checks import PIXEL_TAGS, identifying_values
from .errors import VerificationError

__all__ = ["check_pixels", "read_dest"]

_MIN_PIXEL_NEEDLE = 5  # letters and digits of a value searched for in OCR text
_UPSCALE_BELOW = 1024  # frames whose longer side is at most this are read at 2x

_ocr_lock = threading.Lock()
_ocr_api: Any = None


def _tessdata() -> str:
    """Tesseract's model directory (the engine's lookup), failing as verification does."""
    try:
        return tessdata()
    except RuntimeError:
        raise VerificationError(
            "Tesseract English model not found (install tesseract-ocr-eng or set "
            "TESSDATA_PREFIX)") from None


def _ocr(image: Any) -> str:
    """Text Tesseract reads in a PIL image; one engine per process (loading the model
    costs far more than reading a frame), used under a lock (it is not thread-safe)."""
    global _ocr_api
    import tesserocr

    with _ocr_lock:
        if _ocr_api is None:
            _ocr_api = tesserocr.PyTessBaseAPI(path=_tessdata(), lang="eng",
                                               psm=tesserocr.PSM.AUTO)
        _ocr_api.SetImage(image)
        return _ocr_api.GetUTF8Text() or ""


def _read_frame(grey: np.ndarray) -> str:
    """OCR text of a frame: as rendered, and after a 3x3 median filter (which removes
    the speckle that hides text from Tesseract on ultrasound-like backgrounds).
    Frames up to 1024 px are read at twice their size: Tesseract wants glyphs about
    20 px high, and annotations are often 8-12 px."""
    from PIL import Image, ImageFilter

    image = Image.fromarray(grey, mode="L")
    texts = []
    for variant in (image, image.filter(ImageFilter.MedianFilter(3))):
        if max(variant.size) <= _UPSCALE_BELOW:
            variant = variant.resize((variant.width * 2, variant.height * 2),
                                     Image.Resampling.LANCZOS)
        texts.append(_ocr(variant))
    return "\n".join(texts)


def _alnum(text: str) -> str:
    return re.sub(r"[^0-9A-Z]", "", text.upper())


def read_dest(dest: Dataset) -> str | list[str]:
    """The text read in the rendered destination frame, or the reasons it could not be
    read (undecodable pixels: a failure of the check, not of the run). An instance
    without pixel data (a structured report, an RT plan) reads as no text."""
    if not any(tag in dest for tag in PIXEL_TAGS):
        return ""
    try:
        return _read_frame(frame_grey8(dest, 0))
    except VerificationError:
        raise
    except Exception as exc:
        return [f"render_failed:{type(exc).__name__}"]


def check_pixels(src: Dataset, dest: Dataset | str | list[str]) -> tuple[list[str], int]:
    """Reasons the destination frame fails, and the number of words read; ``dest`` is the
    destination or what read_dest made of it (read once, checked against each twin)."""
    text = read_dest(dest) if isinstance(dest, Dataset) else dest
    if isinstance(text, list):
        return text, 0
    words = {w for w in text.split() if any(c.isalnum() for c in w)}
    flat = _alnum(text)
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
    return reasons, len(words)
