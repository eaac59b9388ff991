"""Where text is in a frame, without reading it (for REDACT_ALL_TEXT).

Redacting all text needs *where* text is, with recall first: a missed word is a leak,
a few extra blacked-out pixels are not. OCR alone misses much of it on noisy
medical backgrounds (Tesseract over whole 640x480 frames of the burned-text corpus
found about half of the strings), so regions are found by shape, with OpenCV:

1. white and black top-hat (15x15): bright and dark strokes thinner than the element
   stand out from any slowly varying background (gradients, tissue);
2. a threshold above the background's own variation (median + 4 robust sigma of the
   top-hat, at least 12 grey levels), so faint grey-on-grey text still passes;
3. a small horizontal closing joins letters; connected components of text height
   (5-80 px) are kept;
4. components on one line with gaps under 1.2 x their height are merged into line
   boxes, grown by 30% of the height (antialiasing and descenders).

Still open (issue 4): ultrasound-like speckle, whose grains pass step 1 like strokes
do, so text inside speckle is merged away; the next step is to verify candidate lines
with OCR on upscaled crops and to use stroke-width consistency.
"""

from __future__ import annotations

import cv2
import numpy as np

_TOPHAT = cv2.getStructuringElement(cv2.MORPH_RECT, (15, 15))
_JOIN = cv2.getStructuringElement(cv2.MORPH_RECT, (9, 3))
MIN_HEIGHT, MAX_HEIGHT = 5, 80


def text_mask(grey: np.ndarray) -> np.ndarray:
    """Pixels that belong to thin strokes brighter or darker than their surroundings."""
    strokes = np.maximum(cv2.morphologyEx(grey, cv2.MORPH_TOPHAT, _TOPHAT),
                         cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, _TOPHAT))
    median = float(np.median(strokes))
    sigma = float(np.median(np.abs(strokes - median))) * 1.4826
    mask = (strokes > max(12.0, median + 4.0 * sigma)).astype(np.uint8)
    return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _JOIN)


def _merge_lines(boxes: list[list[int]]) -> list[list[int]]:
    changed = True
    while changed:
        changed = False
        boxes.sort()
        merged: list[list[int]] = []
        for box in boxes:
            for line in merged:
                height = max(box[3] - box[1], line[3] - line[1])
                overlap = min(box[3], line[3]) - max(box[1], line[1])
                gap = max(box[0], line[0]) - min(box[2], line[2])
                if overlap > 0.5 * min(box[3] - box[1], line[3] - line[1]) and \
                        gap < 1.2 * height:
                    line[:] = [min(line[0], box[0]), min(line[1], box[1]),
                               max(line[2], box[2]), max(line[3], box[3])]
                    changed = True
                    break
            else:
                merged.append(box)
        boxes = merged
    return boxes


def text_boxes(grey: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Line boxes (left, top, right, bottom) likely to hold text, clipped to the frame."""
    mask = text_mask(grey)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    boxes = [[int(x), int(y), int(x + w), int(y + h)] for x, y, w, h, area in stats[1:count]
             if MIN_HEIGHT <= h <= MAX_HEIGHT and w >= 2 and area >= 8]
    height, width = grey.shape
    out = []
    for left, top, right, bottom in _merge_lines(boxes):
        margin = int(0.3 * (bottom - top)) + 2
        out.append((max(0, left - margin), max(0, top - margin),
                    min(width, right + margin), min(height, bottom + margin)))
    return out
