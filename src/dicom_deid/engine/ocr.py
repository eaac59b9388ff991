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


def _quiet_leptonica(module_file: str) -> None:
    """Silence Leptonica, which Tesseract calls with boxes at a frame's edge and which
    then writes "Error in boxClipToRectangle: box outside rectangle" to stderr for every
    such box: noise in every task log that says nothing is wrong (the words are still
    read). The tesserocr wheel ships its own Leptonica; its message severity is set to
    none (L_SEVERITY_NONE = 6). A system tesserocr without that copy stays as it is."""
    import ctypes
    import glob
    import os

    libs = os.path.join(os.path.dirname(os.path.dirname(module_file)), "tesserocr.libs")
    for path in glob.glob(os.path.join(libs, "libleptonica*")) or glob.glob(
            os.path.join(libs, "liblept*")):
        try:
            ctypes.CDLL(path).setMsgSeverity(6)
        except (OSError, AttributeError):
            continue


def _api():  # noqa: ANN202 - tesserocr's type
    """This thread's Tesseract engine (one per thread: the API is not thread-safe)."""
    api = getattr(_local, "api", None)
    if api is None:
        import tesserocr

        _quiet_leptonica(tesserocr.__file__)
        api = tesserocr.PyTessBaseAPI(path=tessdata(), lang="eng",
                                      psm=tesserocr.PSM.SPARSE_TEXT,
                                      oem=tesserocr.OEM.LSTM_ONLY)
        _local.api = api
    return api


def _words(api, image: Image.Image, min_confidence: float,  # noqa: ANN001 - tesserocr's type
           scale: float = 1.0) -> list[TextBox]:
    """The words ``api`` recognises in ``image``, boxes divided by ``scale``."""
    import tesserocr

    api.SetImage(image)
    if not api.Recognize():
        return []
    boxes = []
    level = tesserocr.RIL.WORD
    iterator = api.GetIterator()
    if iterator is None:
        return []
    for word in tesserocr.iterate_level(iterator, level):
        try:  # tesserocr raises "No text returned" for an empty result
            text = (word.GetUTF8Text(level) or "").strip()
        except RuntimeError:
            continue
        box = word.BoundingBox(level)
        if not text or box is None:
            continue
        confidence = word.Confidence(level)
        if confidence < min_confidence or not any(c.isalnum() for c in text):
            continue
        left, top, right, bottom = (int(round(v / scale)) for v in box)
        boxes.append(TextBox(left, top, right, bottom, text, confidence))
    return boxes


def find_text(grey: np.ndarray, min_confidence: float = 10.0) -> list[TextBox]:
    """Words in an 8-bit grey image, as boxes, with what Tesseract read (sparse text)."""
    return _words(_api(), Image.fromarray(grey), min_confidence)


#: Page segmentation modes ``read_all`` reads in: sparse text (11), one uniform block
#: (6) and automatic layout (3). Each finds words the others drop: sparse text reads
#: scattered annotations, the block mode reads lines crowded at an edge, the automatic
#: layout reads columns.
READ_ALL_MODES = (11, 6, 3)
_UPSCALE_BELOW = 1024  # frames whose longer side is at most this are also read at 2x


#: What counts as a word read back when judging a redacted frame: Tesseract's confidence
#: for text a person reads is 85-96; on tissue, painted boxes and their corners it
#: makes up single characters at up to 90 and two-letter words at up to ~76 (measured
#: on the real corpus, ``bench/text_regions_recall.py --real``).
JUDGE_CONFIDENCE = 80.0
JUDGE_MIN_CHARS = 2


def read_all(grey: np.ndarray, *, min_confidence: float = 50.0, min_chars: int = 1,
             modes: tuple[int, ...] = READ_ALL_MODES, upscale: bool = True) -> list[TextBox]:
    """Every word Tesseract reads in an 8-bit grey frame, read hard: the union of the
    words of each page segmentation mode in ``modes``, on the frame and (frames up to
    1024 px, ``upscale``) on the frame at twice its size (Tesseract wants glyphs ~20 px
    high; annotations are often 8-12 px). Words with fewer than ``min_chars`` letters
    or digits are left out. For judging a redacted frame (with ``JUDGE_CONFIDENCE`` and
    ``JUDGE_MIN_CHARS``), not for redacting: it costs several page reads. Boxes are in
    the frame's pixels.
    """
    import tesserocr

    grey = np.ascontiguousarray(grey, dtype=np.uint8)
    if grey.ndim != 2 or min(grey.shape) < 4:
        return []
    image = Image.fromarray(grey)
    images = [(image, 1.0)]
    if upscale and max(image.size) <= _UPSCALE_BELOW:
        images.append((image.resize((image.width * 2, image.height * 2),
                                    Image.Resampling.LANCZOS), 2.0))
    api = _api()
    found: dict[tuple[int, int, int, int, str], TextBox] = {}
    try:
        for mode in modes:
            api.SetPageSegMode(mode)
            for variant, scale in images:
                for word in _words(api, variant, min_confidence, scale):
                    if sum(c.isalnum() for c in word.text) < min_chars:
                        continue
                    key = (word.left, word.top, word.right, word.bottom, word.text)
                    found.setdefault(key, word)
    finally:
        api.SetPageSegMode(tesserocr.PSM.SPARSE_TEXT)
    return list(found.values())


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


def read_back(words: list[TextBox], grey: np.ndarray | None = None) -> list[TextBox]:
    """The words that count as text read back on a redacted frame (JUDGE_*).

    With the frame (``grey``) a word counts only if it reads again on its own: read
    hard, Tesseract also makes up confident short words in ultrasound speckle and
    tissue (``re`` at 95, ``he`` at 80, 6-30 px high, measured on the real corpus),
    which a second look at the word's crop, by Tesseract as one line or by the
    RapidOCR recogniser, does not read again; a word a person can read, does.
    """
    judged = [w for w in words if w.confidence >= JUDGE_CONFIDENCE
              and sum(c.isalnum() for c in w.text) >= JUDGE_MIN_CHARS]
    if grey is None or not judged:
        return judged
    return [w for w in judged if _reads_again(grey, w)]


def _reads_again(grey: np.ndarray, word: TextBox) -> bool:
    pad = max(2, (word.bottom - word.top) // 3)
    height, width = grey.shape
    box = (max(0, word.left - pad), max(0, word.top - pad), min(width, word.right + pad),
           min(height, word.bottom + pad))
    text, confidence = read_line(grey[box[1]:box[3], box[0]:box[2]])
    if confidence >= JUDGE_CONFIDENCE and sum(c.isalnum() for c in text) >= JUDGE_MIN_CHARS:
        return True
    from . import ocr_rapid

    return ocr_rapid.available() and ocr_rapid.reads(grey, box, min_chars=JUDGE_MIN_CHARS)
