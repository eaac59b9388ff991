"""Where text is in a frame, without reading it (for REDACT_ALL_TEXT).

Redacting all text needs *where* text is, with recall first: a missed word is a leak,
a few extra blacked-out pixels are not. Tesseract over whole frames of the burned-text
corpus fully covered only 2-17% of the strings (``bench/text_regions_recall.py --ocr``),
so regions are found by shape, with OpenCV:

1. the frame is smoothed at three scales (Gaussian sigma 1, 1.5, 2.5): averaging is what
   lifts faint grey-on-grey strokes out of pixel noise and speckle; the small scale keeps
   8 px fonts, the large ones keep faint 40 px fonts;
2. white and black top-hat (15x15) make bright and dark strokes thinner than the element
   stand out from any slowly varying background (gradients, tissue);
3. each polarity is thresholded against its *local* noise (median + 4 robust sigma per
   32 px block, at least 4 grey levels), so text on a black margin is not judged by the
   speckle next to it;
4. a component is kept for a polarity only if it really is brighter (darker) than the
   local background: the gaps between bright letters look like dark strokes to the
   black top-hat, and would otherwise glue lines together;
5. components are split at empty rows (stacked lines), merged into line boxes, shrunk to
   the rows and columns that hold stroke response, and grown by a margin (side bearings
   of the font, 0.15 x height + 2 px; 2 px above and below).

Measured with ``bench/text_regions_recall.py`` on the generated corpus; the floors are in
``tests/unit/test_text_regions.py``.
"""

from __future__ import annotations

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # left, top, right, bottom (exclusive)

_TOPHAT = cv2.getStructuringElement(cv2.MORPH_RECT, (15, 15))
_SCALES = (1.0, 1.5, 2.5)
_SHRINK_SCALE = 0.7
_BLOCK = 32
_STEP = 4  # block statistics from every 4th pixel each way: 64 samples a block
_NOISE_SIGMAS = 4.0
_FLOOR = 4.0
_POLARITY = 0.3
_SHRINK = 0.4
MIN_HEIGHT, MAX_HEIGHT = 3, 80
_MIN_LINE_AREA = 20


def _local_stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel background level and robust sigma, from 32 px blocks (sampled 1 in 16)."""
    height, width = values.shape
    rows, cols = -(-height // _BLOCK), -(-width // _BLOCK)
    sample = values[::_STEP, ::_STEP]
    half = _BLOCK // _STEP
    pad = ((0, rows * half - sample.shape[0]), (0, cols * half - sample.shape[1]))
    padded = np.pad(sample, pad, mode="edge").astype(np.float32)
    blocks = padded.reshape(rows, half, cols, half).transpose(0, 2, 1, 3).reshape(rows, cols, -1)
    level = np.median(blocks, axis=2).astype(np.float32)
    sigma = (np.median(np.abs(blocks - level[..., None]), axis=2) * 1.4826).astype(np.float32)
    if min(rows, cols) >= 3:  # a block full of large text must not set its own level
        level, sigma = cv2.medianBlur(level, 3), cv2.medianBlur(sigma, 3)
    return (cv2.resize(level, (width, height), interpolation=cv2.INTER_LINEAR),
            cv2.resize(sigma, (width, height), interpolation=cv2.INTER_LINEAR))


Labelled = tuple[int, np.ndarray, np.ndarray, np.ndarray]  # count, labels, stats, kept


def _stroke_components(grey: np.ndarray, scale: float) -> list[Labelled]:
    """Bright-stroke and dark-stroke components at one smoothing scale (labelled once)."""
    smooth = cv2.GaussianBlur(grey, (0, 0), scale)
    background, _ = _local_stats(smooth)
    lift = smooth.astype(np.float32) - background
    masks = []
    for sign, op in ((1.0, cv2.MORPH_TOPHAT), (-1.0, cv2.MORPH_BLACKHAT)):
        strokes = cv2.morphologyEx(smooth, op, _TOPHAT).astype(np.float32)
        level, sigma = _local_stats(strokes)
        mask = (strokes > np.maximum(_FLOOR, level + _NOISE_SIGMAS * sigma)).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        keep = np.zeros(count, bool)
        if count > 1:
            where = mask.astype(bool)
            ids = labels[where]
            lifted = np.bincount(ids, weights=sign * lift[where], minlength=count)
            response = np.bincount(ids, weights=strokes[where], minlength=count)
            keep = lifted > _POLARITY * response
            keep[0] = False
        masks.append((count, labels, stats, keep))
    return masks


def _components(labelled: Labelled, polarity: int, dx: int = 0, dy: int = 0,
                depth: int = 0) -> list[list[int]]:
    """[left, top, right, bottom, area, polarity x area] of glyph-sized components."""
    count, labels, stats, keep = labelled
    out = []
    for i in np.nonzero(keep)[0]:
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < 4 or h < MIN_HEIGHT:
            continue
        if depth < 2 and h >= 2 * MIN_HEIGHT:  # lines stacked closely touch: split at empty rows
            part = labels[y:y + h, x:x + w] == i
            rows = part.sum(axis=1)
            empty = rows <= max(1, 0.05 * rows.max())
            if empty[1:-1].any():
                part[empty] = False
                sub = cv2.connectedComponentsWithStats(part.astype(np.uint8), connectivity=8)
                kept = np.ones(sub[0], bool)
                kept[0] = False
                out.extend(_components((sub[0], sub[1], sub[2], kept), polarity,
                                       x + dx, y + dy, depth + 1))
                continue
        if h <= MAX_HEIGHT:
            out.append([x + dx, y + dy, x + w + dx, y + h + dy, area, polarity * area])
    return out


def _linked(boxes: np.ndarray) -> list[list[int]]:
    """Groups of boxes on one line with gaps under 1.2 x their height + 4 px."""
    left, top, right, bottom = (boxes[:, i, None] for i in range(4))
    height = bottom - top
    overlap = np.minimum(bottom, bottom.T) - np.maximum(top, top.T)
    gap = np.maximum(left, left.T) - np.minimum(right, right.T)
    link = (overlap > 0.5 * np.minimum(height, height.T)) & \
        (gap < 1.2 * np.maximum(height, height.T) + 4)
    parent = list(range(len(boxes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(link, 1)), strict=True):
        parent[root(int(i))] = root(int(j))
    groups: dict[int, list[int]] = {}
    for i in range(len(boxes)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def _merge_lines(boxes: list[list[int]]) -> list[list[int]]:
    """Join components into lines, then lines that the joining brought together."""
    current = np.array(boxes, dtype=np.int64)
    while True:
        groups = _linked(current)
        if len(groups) == len(current):
            return current.tolist()
        current = np.array([[current[g, 0].min(), current[g, 1].min(), current[g, 2].max(),
                             current[g, 3].max(), current[g, 4].sum(), current[g, 5].sum()]
                            for g in groups], dtype=np.int64)


def _shrink(response: np.ndarray, left: int, top: int, right: int, bottom: int) -> Box:
    """The box cut to the rows/columns holding stroke response (smoothing widens masks)."""
    part = response[top:bottom, left:right]
    hot = part > max(_FLOOR, _SHRINK * float(np.percentile(part, 98)))
    rows, cols = np.nonzero(hot.any(axis=1))[0], np.nonzero(hot.any(axis=0))[0]
    if not len(rows):
        return left, top, right, bottom
    return (left + int(cols[0]), top + int(rows[0]),
            left + int(cols[-1]) + 1, top + int(rows[-1]) + 1)


def text_boxes(grey: np.ndarray) -> list[Box]:
    """Line boxes likely to hold text in an 8-bit grey frame, clipped to the frame."""
    grey = np.ascontiguousarray(grey, dtype=np.uint8)
    boxes = [component for scale in _SCALES
             for polarity, labelled in enumerate(_stroke_components(grey, scale))
             for component in _components(labelled, polarity)]
    if not boxes:
        return []
    sharp = cv2.GaussianBlur(grey, (0, 0), _SHRINK_SCALE)
    responses = [cv2.morphologyEx(sharp, op, _TOPHAT).astype(np.float32)
                 for op in (cv2.MORPH_TOPHAT, cv2.MORPH_BLACKHAT)]
    height, width = grey.shape
    out = []
    for left, top, right, bottom, area, dark in _merge_lines(boxes):
        if area < _MIN_LINE_AREA:
            continue
        left, top, right, bottom = _shrink(responses[1 if 2 * dark > area else 0],
                                           left, top, right, bottom)
        margin = int(0.15 * (bottom - top)) + 2
        out.append((max(0, left - margin), max(0, top - 2),
                    min(width, right + margin), min(height, bottom + 2)))
    return out
