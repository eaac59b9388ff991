"""Finding text in pixels with Tesseract (tesserocr, the C++ API in-process).

Why tesserocr rather than pytesseract: pytesseract starts a ``tesseract`` process and
writes a PNG per call, which costs more than recognising a frame; tesserocr keeps one
initialised engine per process. Its wheels bundle the Tesseract library; the English
model comes from Debian's ``tesseract-ocr-eng`` (no download at run time).

Tesseract expects a page-like 8-bit image: pixels of any kind are first brought to
8-bit grey with the text's contrast stretched by :mod:`dicom_deid.engine.pixels.grey`
(``array_grey8`` for a raw array, ``to_grey8``/``frame_grey8`` for a dataset).
"""

from __future__ import annotations

import glob
import os
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

_local = threading.local()


@dataclass(frozen=True)
class TextBox:
    """One word Tesseract found: its box in pixels (left, top, right, bottom)."""

    left: int
    top: int
    right: int
    bottom: int
    text: str
    confidence: float


@lru_cache(maxsize=1)
def tessdata() -> str:
    """Where the English model is: $TESSDATA_PREFIX, else Debian's tessdata."""
    prefix = os.environ.get("TESSDATA_PREFIX")
    if prefix and os.path.exists(os.path.join(prefix, "eng.traineddata")):
        return prefix
    found = sorted(glob.glob("/usr/share/tesseract-ocr/*/tessdata/eng.traineddata"))
    if not found:
        raise RuntimeError("Tesseract's English model is missing: install the Debian package "
                           "tesseract-ocr-eng (make setup does)")
    return os.path.dirname(found[-1])


def _api():  # noqa: ANN202 - tesserocr's type
    """This thread's Tesseract engine (one per thread: the API is not thread-safe)."""
    api = getattr(_local, "api", None)
    if api is None:
        import tesserocr

        api = tesserocr.PyTessBaseAPI(path=tessdata(), lang="eng",
                                      psm=tesserocr.PSM.SPARSE_TEXT,
                                      oem=tesserocr.OEM.LSTM_ONLY)
        _local.api = api
    return api


def find_text(grey: np.ndarray, min_confidence: float = 10.0) -> list[TextBox]:
    """Words in an 8-bit grey image, as boxes, with what Tesseract read."""
    import tesserocr

    api = _api()
    api.SetImage(Image.fromarray(grey))
    api.Recognize()
    boxes = []
    iterator = api.GetIterator()
    level = tesserocr.RIL.WORD
    for word in tesserocr.iterate_level(iterator, level):
        text = (word.GetUTF8Text(level) or "").strip()
        box = word.BoundingBox(level)
        if not text or box is None:
            continue
        confidence = word.Confidence(level)
        if confidence < min_confidence or not any(c.isalnum() for c in text):
            continue
        left, top, right, bottom = box
        boxes.append(TextBox(left, top, right, bottom, text, confidence))
    return boxes


def read_line(grey: np.ndarray, *, smooth: float = 0.7, height: int = 40) -> tuple[str, float]:
    """What one line of text says, and Tesseract's mean confidence (0-100).

    The crop is brought to dark text on a light ground, smoothed (pixel noise breaks
    thin strokes), stretched between its 1st and 99th percentiles, scaled to 40 px
    high (by default) and padded: the LSTM model is trained on clean page-like lines, and reads
    8 px text poorly at its original size.
    """
    import cv2
    import tesserocr

    crop = np.asarray(grey, dtype=np.uint8)
    if crop.size == 0:
        return "", 0.0
    if np.median(crop) < crop.mean():  # few bright pixels on a dark ground: bright text
        crop = 255 - crop
    if smooth:
        crop = cv2.GaussianBlur(crop, (0, 0), smooth)
    scale = max(1.0, height / crop.shape[0])
    if scale > 1.0:
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    low, high = np.percentile(crop, (1, 99))
    crop = np.clip((crop.astype(np.float32) - low) * (255.0 / max(1.0, high - low)), 0, 255
                   ).astype(np.uint8)
    crop = cv2.copyMakeBorder(crop, 12, 12, 12, 12, cv2.BORDER_REPLICATE)
    narrow = crop.shape[1] < 1.5 * crop.shape[0]  # a lone letter (R, L markers)
    api = _api()
    api.SetPageSegMode(tesserocr.PSM.SINGLE_CHAR if narrow else tesserocr.PSM.SINGLE_LINE)
    try:
        api.SetImage(Image.fromarray(crop))
        text = (api.GetUTF8Text() or "").strip()
        confidence = float(api.MeanTextConf())
    finally:
        api.SetPageSegMode(tesserocr.PSM.SPARSE_TEXT)
    return text, confidence
