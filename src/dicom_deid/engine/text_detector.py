"""Where text is in a frame: a learned detector, confirmed by a recogniser.

The shape rules of :mod:`.text_regions` find strokes, and tissue is full of strokes:
on real CT, MR and ultrasound frames they took 50-100 % of the image for text, so
REDACT_ALL_TEXT blacked out anatomy. PP-OCRv4's detector (a DBNet, shipped inside the
``rapidocr-onnxruntime`` wheel with its recogniser; nothing is downloaded) was trained
to tell text from everything else: its per-pixel text probability is ~1 on glyphs and
~0 on tissue, and what it marks on tissue is blob-shaped or one glyph wide.

So a region is text when

* the detector marks it as a line (:func:`detected_lines`: a component of probability
  > 0.3, mean probability >= 0.7, filling its box, at least twice as wide as high and
  no higher than a line), or
* it is a shape-rule box the detector's lines cover in part (text at an image edge,
  whose last letters the detector's box stops short of), or
* the recogniser reads it (:func:`reads_as_text`: one ASCII letter or digit at 0.8,
  two or three at 0.75, more at 0.6, in a box about as wide as what it read; a lone
  vertical stroke, which any tissue edge reads as, does not count): text the detector
  missed, and the detector's blobs and single glyphs, which on tissue read as nothing,
  as CJK characters at ~0.5 or as a "1".

The detector judges a glyph by its surroundings: a lone letter next to an icon or a
scale bar, rotated text along a calliper, is often seen only once what is around it is
painted. So the found regions are painted and the frame is read again by the second
reader as the pipeline's verification reads it (the frame and twice its size), up to
twice, until it reads nothing. A frame where nothing was found is not read again:
its context did not change (text-free CT and MR, most of a store, cost one look).

Frames are given to the detector so that their shorter side is 736 px (the model's
default), at most twice enlarged (larger factors make letters of tissue texture) and
at most 2048 px on the longer side (time). Recognised text is PHI: it is never logged
or returned here, only where it is.
"""

from __future__ import annotations

import cv2
import numpy as np

from .ocr_rapid import LINE_SHARE, engine, lone_stroke, read_back, read_lines, recognise
from .text_regions import Box, text_boxes

_TARGET_SHORT = 736
_MAX_ENLARGE = 2.0
_MAX_LONG = 2048
_ROUNDS = 3
_THRESH = 0.3
#: A line's component fills at least this part of its box (a blob on tissue less), and
#: its mean probability is at least this (text: 0.89-0.98 on the real corpus; specks
#: of tissue the detector half believes in, less).
_LINE_FILL = 0.6
_LINE_SCORE = 0.7
#: The detector marks the shrunk core of a line; its boxes are grown like DBNet's own
#: post-processing (offset = area x ratio / perimeter).
_UNCLIP = 1.6
#: A detector line is at most this part of the frame's shorter side high: the detector
#: separates lines, so anything taller is a blob for the recogniser to judge (tissue it
#: took for text, a drawing, a phantom whose two dark holes it takes for "oo"), which
#: reads nothing in a box higher than ``ocr_rapid.LINE_SHARE`` (a phantom read as "8").
_DETECTED_LINE_SHARE = 0.15
_MIN_READ = 6
#: What the recogniser must read for a region to be text, by the number of ASCII
#: letters and digits read: tissue reads as a character or two at up to 0.73, a lone
#: side marker ("L") at 0.88.
READ_CONFIDENCE = ((1, 0.8), (3, 0.75), (10**6, 0.6))


def _probability_at(grey: np.ndarray, scale: float) -> np.ndarray:
    height, width = grey.shape
    rows = max(32, int(round(height * scale / 32)) * 32)
    cols = max(32, int(round(width * scale / 32)) * 32)
    resized = cv2.resize(grey, (cols, rows), interpolation=cv2.INTER_AREA
                         if scale < 1 else cv2.INTER_CUBIC)
    x = (resized.astype(np.float32) / 127.5 - 1.0)[None, None].repeat(3, axis=1)
    prob = engine().text_det.infer(x)[0][0, 0]
    return cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR)


def probability(grey: np.ndarray) -> np.ndarray:
    """Per-pixel text probability (0-1) of an 8-bit grey frame, at the frame's size."""
    height, width = grey.shape
    scale = min(_MAX_ENLARGE, _TARGET_SHORT / min(height, width), _MAX_LONG / max(height, width))
    return _probability_at(grey, scale)


def detected_lines(prob: np.ndarray) -> tuple[list[Box], list[Box]]:
    """(line boxes, blob boxes) of the detector's components, grown as DBNet grows them.

    Blobs (components that fill little of their box) are returned apart: they are text
    only if they read as text.
    """
    mask = (prob > _THRESH).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    height, width = prob.shape
    score = np.bincount(labels.ravel(), weights=prob.ravel(), minlength=count) / np.maximum(
        stats[:, cv2.CC_STAT_AREA], 1)
    lines, blobs = [], []
    for i in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < 6:
            continue
        grow = int(np.ceil(area * _UNCLIP / (2 * (w + h))))
        box = (max(0, x - grow), max(0, y - grow), min(width, x + w + grow),
               min(height, y + h + grow))
        # one or two glyphs (w < 2h) are what tissue specks look like too: read them
        line = (area >= _LINE_FILL * w * h and score[i] >= _LINE_SCORE and w >= 2 * h
                and h <= _DETECTED_LINE_SHARE * min(height, width))
        (lines if line else blobs).append(box)
    return lines, blobs


def reads_as_text(grey: np.ndarray, boxes: list[Box]) -> list[bool]:
    """For each box, whether the recogniser reads Latin text in it (see the module)."""
    tallest = LINE_SHARE * min(grey.shape)
    # under 6 px high nobody reads it; taller than a line: not one line
    readable = [i for i, (_, top, _, bottom) in enumerate(boxes)
                if _MIN_READ <= bottom - top <= tallest]
    out = [False] * len(boxes)
    for i, (text, confidence) in zip(readable, recognise(grey, [boxes[i] for i in readable]),
                                     strict=True):
        latin = [c for c in text if c.isascii() and c.isalnum()]
        floor = next(f for most, f in READ_CONFIDENCE if len(latin) <= most)
        left, top, right, bottom = boxes[i]
        # a line is about as wide as what it reads: one letter read in a wide box is
        # texture the recogniser made a letter of
        fits = right - left <= (len(text) + 1) * 1.5 * (bottom - top)
        out[i] = bool(latin) and confidence >= floor and fits and not lone_stroke(latin)
    return out


def _covered(box: Box, lines: list[Box]) -> float:
    """The part of ``box`` inside the union of ``lines``."""
    left, top, right, bottom = box
    if right <= left or bottom <= top:
        return 0.0
    mask = np.zeros((bottom - top, right - left), bool)
    for l2, t2, r2, b2 in lines:
        mask[max(0, t2 - top):max(0, b2 - top), max(0, l2 - left):max(0, r2 - left)] = True
    return float(mask.mean())


def _confirmed(grey: np.ndarray, lines: list[Box], doubtful: list[Box]) -> list[Box]:
    return lines + [box for box, text in zip(doubtful, reads_as_text(grey, doubtful),
                                             strict=True) if text]


def all_text_boxes(grey: np.ndarray, rounds: int = _ROUNDS) -> list[Box]:
    """Every region of an 8-bit grey frame that holds text (see the module).

    The detector judges a glyph by its surroundings: a lone letter next to an icon or
    a scale bar is often seen only once those are painted. So the frame is painted
    with what was found and looked at again, up to ``rounds`` times, until a look
    finds nothing new.
    """
    grey = np.ascontiguousarray(grey, dtype=np.uint8)
    if grey.ndim != 2 or min(grey.shape) < 8:
        return []
    prob = probability(grey)
    lines, blobs = detected_lines(prob)
    shapes, doubtful = [], list(blobs)
    for box in text_boxes(grey):
        (shapes if _covered(box, lines) >= 0.3 else doubtful).append(box)
    # a detector line spanned by a shape box adds only rows above and below the ink
    found = shapes + _confirmed(grey, [line for line in lines if not any(
        _spans(shape, line) for shape in shapes)], doubtful)
    painted = grey.copy()
    fresh = found
    for _ in range(rounds - 1):
        if not fresh:  # nothing painted: the detector's context is as it was
            break
        for left, top, right, bottom in fresh:
            painted[top:bottom, left:right] = 0
        fresh = [box for box in _read_again(painted) if _covered(box, found) < 0.9]
        if not fresh:
            break
        found += fresh
    return found


def _read_again(painted: np.ndarray) -> list[Box]:
    """The lines the second reader still reads on the painted frame, as the pipeline's
    verification reads it (at the frame's size and twice it), grown by 2 px."""
    height, width = painted.shape
    return [(max(0, line.left - 2), max(0, line.top - 2), min(width, line.right + 2),
             min(height, line.bottom + 2))
            for line in read_back(read_lines(painted, min_confidence=0.3, upscale=True),
                                  painted.shape)]


def _spans(shape: Box, line: Box, slack: int = 2) -> bool:
    """Whether ``shape`` covers ``line``'s whole width and most of its height."""
    overlap = min(shape[3], line[3]) - max(shape[1], line[1])
    return (shape[0] <= line[0] + slack and shape[2] >= line[2] - slack
            and overlap >= 0.5 * (line[3] - line[1]))
