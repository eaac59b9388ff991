"""A second text reader, independent of Tesseract: RapidOCR (PP-OCRv4 on ONNX Runtime).

Why a second reader: Tesseract is a page reader. On real frames it reads little of what
a person reads (2 of 399 words back on the redacted real images of the issue, where
PP-OCR read 9 lines on 4 of 29 outputs), so a check that only asks Tesseract passes
frames a person can still read. PP-OCR's detector is a neural text-pixel segmenter
trained on scene text, with blind spots unlike both Tesseract's and the morphology of
:mod:`.text_regions`.

* Offline: the detector, direction classifier and recogniser models ship inside the
  ``rapidocr-onnxruntime`` wheel; nothing is downloaded.
* One engine per thread, created on first use (loading costs ~0.5 s; reading a 512 px
  frame ~0.4 s); ONNX Runtime sessions are not shared across threads here.
* Cores: by default a session uses every core. A pool of processes each reading frames
  gives each its share (``share_cores``): with two workers on two cores each engine
  running two threads held a larger working set at every frame and spent a third more
  CPU time than with one, and the server's peak is set by two workers' frames at once.
* Quiet: RapidOCR's loggers add their own stderr handler at DEBUG; they are cut to
  errors and never passed what was read. Recognised text is PHI: this module never logs
  it, and callers must not either (report counts, boxes or the reader's name).

Input is 8-bit grey (``pixels.grey.frame_grey8``/``array_grey8``/``to_grey8``).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

import numpy as np

__all__ = ["JUDGE_CONFIDENCE", "LINE_SHARE", "STROKES", "TextLine", "available", "engine",
           "lone_stroke", "read_back", "read_lines", "reads", "recognise", "share_cores"]

_local = threading.local()
_threads: int | None = None  # ONNX Runtime threads per session; None: all cores
_LOGGERS = ("RapidOCR", "OrtInferSession")
_SMALL = 1024  # frames whose longer side is at most this are also read at 2x
_DET_SHORT = 736  # the detector's own target for a frame's shorter side
#: What counts as a line read back when judging a redacted frame (``read_back``): real
#: Latin text reads at 0.73-1.0, single letters (side markers) at 0.99; on shapes and
#: tissue the Chinese-trained model makes up CJK characters and dashes at 0.50-0.55,
#: a square (a painted box, a marker's plate) as "口" at up to 0.96, and a round organ
#: as "O" at 0.73 (measured on the real corpus: ``bench/text_regions_recall.py --real``).
#: So a line counts when it holds an ASCII letter or digit, at 0.6, or at 0.9 when it is
#: one character.
JUDGE_CONFIDENCE = 0.6
JUDGE_SINGLE_CONFIDENCE = 0.9
#: Characters that are one vertical stroke: alone, any edge of tissue reads as one of
#: them (a "1" at 0.99 on an Enhanced CT's maximum projection), so alone they are not
#: text read, neither when judging nor when redacting (``text_detector``).
STROKES = frozenset("1lIi|!")
#: A line of text is at most this part of its frame's shorter side high (the largest
#: burned-in text of the corpus: 19%; a phantom's "8": 62%).
LINE_SHARE = 0.4


def lone_stroke(latin: list[str]) -> bool:
    """Whether the ASCII letters and digits read are one vertical stroke alone."""
    return len(latin) == 1 and latin[0] in STROKES


@dataclass(frozen=True)
class TextLine:
    """One line PP-OCR found and read: its box in pixels (left, top, right, bottom)."""

    left: int
    top: int
    right: int
    bottom: int
    text: str
    confidence: float


def _quiet() -> None:
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.ERROR)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.addHandler(logging.NullHandler())
        logger.propagate = False


def available() -> bool:
    """Whether the reader's package is installed."""
    from importlib.util import find_spec

    return find_spec("rapidocr_onnxruntime") is not None


def share_cores(processes: int) -> None:
    """Make engines created from now on in this process use its share of the cores when
    ``processes`` processes read frames at once (at least one thread)."""
    global _threads
    _threads = max(1, (os.cpu_count() or 1) // max(1, processes))


def engine():  # noqa: ANN201 - RapidOCR's type
    """This thread's RapidOCR engine, created on first use (its detector and recogniser
    are used apart by :mod:`.text_detector`)."""
    reader = getattr(_local, "engine", None)
    if reader is None:
        _quiet()
        from rapidocr_onnxruntime import RapidOCR

        _quiet()  # the loggers are made at import; silence what the import created
        threads = {} if _threads is None else {"intra_op_num_threads": _threads,
                                                "inter_op_num_threads": 1}
        reader = RapidOCR(print_verbose=False, det_box_thresh=0.4, **threads)
        _quiet()
        _local.engine = reader
    return reader


def _lines(grey: np.ndarray, scale: float, min_confidence: float) -> list[TextLine]:
    reader = engine()
    image = grey
    if scale != 1.0:
        import cv2

        image = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    # The detector enlarges a frame until its shorter side is 736 px; on small frames
    # (a 128 px CT) that is 6x, where tissue texture turns into letters. At most 2x in
    # all (the ``upscale`` reading is already twice the frame), as ``text_detector``.
    reader.text_det.limit_side_len = int(min(_DET_SHORT, (2 if scale == 1.0 else 1)
                                             * min(image.shape[:2])))
    result, _ = reader(image, text_score=min_confidence, box_thresh=0.4, unclip_ratio=1.6)
    out = []
    for points, text, confidence in result or []:
        text = str(text).strip()
        if not text or not any(c.isalnum() for c in text):
            continue
        xs = [p[0] / scale for p in points]
        ys = [p[1] / scale for p in points]
        out.append(TextLine(int(min(xs)), int(min(ys)), int(np.ceil(max(xs))),
                            int(np.ceil(max(ys))), text, float(confidence)))
    return out


def read_lines(grey: np.ndarray, *, min_confidence: float = 0.5,
               upscale: bool = False) -> list[TextLine]:
    """Lines of text in an 8-bit grey frame, with what PP-OCR read and its confidence
    (0-1). ``upscale`` also reads frames up to 1024 px at twice their size (small fonts)
    and returns the lines of both readings."""
    grey = np.ascontiguousarray(grey, dtype=np.uint8)
    if grey.ndim != 2 or min(grey.shape) < 4:
        return []
    lines = _lines(grey, 1.0, min_confidence)
    if upscale and max(grey.shape) <= _SMALL:
        lines += _lines(grey, 2.0, min_confidence)
    return lines


def read_back(lines: list[TextLine], shape: tuple[int, ...] | None = None) -> list[TextLine]:
    """The lines that count as text read back on a redacted frame (see JUDGE_*); with
    the frame's ``shape``, only lines no higher than ``LINE_SHARE`` of its shorter side
    (taller "lines" are shapes: a round phantom with two holes reads as "8" at 0.99)."""
    tallest = LINE_SHARE * min(shape[:2]) if shape is not None else float("inf")
    out = []
    for line in lines:
        latin = [c for c in line.text if c.isascii() and c.isalnum()]
        if not latin or line.bottom - line.top > tallest:
            continue
        floor = JUDGE_SINGLE_CONFIDENCE if len(latin) == 1 else JUDGE_CONFIDENCE
        if line.confidence >= floor and not lone_stroke(latin):
            out.append(line)
    return out


def _crop(grey: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """A box with a quarter of its height around it, faint text stretched to the
    recogniser's range, as the 3-channel image it takes."""
    left, top, right, bottom = box
    pad = max(2, (bottom - top) // 4)
    height, width = grey.shape
    crop = grey[max(0, top - pad):min(height, bottom + pad),
                max(0, left - pad):min(width, right + pad)]
    low, high = np.percentile(crop, (1, 99)) if crop.size else (0, 0)
    if high - low >= 8:
        crop = np.clip((crop.astype(np.float32) - low) * (255.0 / (high - low)), 0, 255)
    return np.stack([np.ascontiguousarray(crop, dtype=np.uint8)] * 3, axis=-1)


def recognise(grey: np.ndarray, boxes: list[tuple[int, int, int, int]]
              ) -> list[tuple[str, float]]:
    """What the recogniser alone reads in each box (left, top, right, bottom) of an
    8-bit grey frame, with its confidence (0-1); ("", 0.0) for boxes under 3 px."""
    out: list[tuple[str, float]] = [("", 0.0)] * len(boxes)
    crops, index = [], []
    for i, (left, top, right, bottom) in enumerate(boxes):
        if right - left >= 3 and bottom - top >= 3:
            crops.append(_crop(grey, (left, top, right, bottom)))
            index.append(i)
    if crops:
        results, _ = engine().text_rec(crops)
        for i, (text, confidence) in zip(index, results, strict=True):
            out[i] = (str(text).strip(), float(confidence))
    return out


def reads(grey: np.ndarray, box: tuple[int, int, int, int], *, min_chars: int = 1,
          min_confidence: float = 0.75) -> bool:
    """Whether the recogniser alone reads ``min_chars`` ASCII letters or digits in one
    box of an 8-bit grey frame, at ``min_confidence``."""
    ((text, confidence),) = recognise(grey, [box])
    latin = [c for c in text if c.isascii() and c.isalnum()]
    return len(latin) >= min_chars and confidence >= min_confidence
