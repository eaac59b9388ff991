"""Lines and words inside a box of burned-in text, so that REDACT_SENSITIVE_TEXT can
paint a name and keep the label or the measurement beside it.

The text finder's boxes follow what a learned detector sees as text: on ultrasound
headers it often joins two lines (``NAME ID`` over ``Adv Breast``) or a date with the
acoustic indices next to it. Judging such a box as one line paints everything in it.
Here a box is cut where its text has gaps: rows without ink between lines, columns
without ink (wider than a letter gap) between words.

The pieces always *partition* the box (cuts lie in the middle of the gaps), so
painting every piece paints exactly the box: splitting can only ever paint less where
the text it leaves is judged not to be PHI, never miss ink the box covered.
"""

from __future__ import annotations

import numpy as np

from .text_regions import Box

# A gap between words is wider than this share of the line's height (letters sit
# 0.1-0.2 heights apart, words 0.3-0.5); a wider gap is safer than a narrower one,
# since an unsplit phrase is judged, and painted, as a whole.
WORD_GAP = 0.45
# Rows or columns holding less ink than this share of the crop's extent count as
# empty (specks and a JPEG's ringing).
_EMPTY = 0.02
_MIN_LINE = 5  # px: a run of rows lower than this is an accent or a speck, not a line


def ink(crop: np.ndarray) -> np.ndarray:
    """The text's pixels in an 8-bit crop: the minority side of Otsu's threshold, so
    bright text on dark and dark text on bright both come out as ink."""
    import cv2

    crop = np.ascontiguousarray(crop, dtype=np.uint8)
    if crop.size == 0 or int(crop.max()) == int(crop.min()):
        return np.zeros(crop.shape, dtype=bool)
    _, mask = cv2.threshold(crop, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    bright = mask.astype(bool)
    return bright if bright.mean() <= 0.5 else ~bright


def _runs(filled: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of True in a 1-D array."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], filled.astype(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _cuts(runs: list[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    """Spans covering 0..length, one per run, cut in the middle of each gap."""
    out, start = [], 0
    for (_, end), (nxt, _) in zip(runs, runs[1:], strict=False):
        cut = (end + nxt) // 2
        out.append((start, cut))
        start = cut
    out.append((start, length))
    return out


def lines(grey: np.ndarray, box: Box) -> list[Box]:
    """The box cut into its lines of text (the box itself if it holds one)."""
    left, top, right, bottom = box
    mask = ink(grey[top:bottom, left:right])
    if mask.shape[0] < 2 * _MIN_LINE:
        return [box]
    rows = _runs(mask.sum(axis=1) > _EMPTY * mask.shape[1])
    rows = [r for r in rows if r[1] - r[0] >= _MIN_LINE]
    if len(rows) < 2:
        return [box]
    return [(left, top + a, right, top + b) for a, b in _cuts(rows, mask.shape[0])]


def words(grey: np.ndarray, line: Box) -> list[Box]:
    """One line cut into words (or phrases) at gaps wider than ``WORD_GAP`` heights."""
    left, top, right, bottom = line
    mask = ink(grey[top:bottom, left:right])
    if mask.size == 0:
        return [line]
    filled = mask.sum(axis=0) > _EMPTY * mask.shape[0]
    runs = _runs(filled)
    if not runs:
        return [line]
    inked = np.flatnonzero(mask.sum(axis=1) > _EMPTY * mask.shape[1])
    height = int(inked[-1] - inked[0] + 1) if len(inked) else mask.shape[0]
    gap = max(2, int(round(WORD_GAP * height)))
    merged = [runs[0]]
    for start, end in runs[1:]:
        if start - merged[-1][1] < gap:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    if len(merged) < 2:
        return [line]
    return [(left + a, top, left + b, bottom) for a, b in _cuts(merged, mask.shape[1])]
