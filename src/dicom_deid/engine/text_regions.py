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
_VERTICAL_LINE = cv2.getStructuringElement(cv2.MORPH_RECT, (1, 81))
_GROW = cv2.getStructuringElement(cv2.MORPH_RECT, (5, 5))
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
_GLYPH_AREA = 30
_LARGE_MIN_SIDE = 256  # frames at least this large are also searched at half resolution


def _local_stats(values: np.ndarray, exclude: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel background level and robust sigma: the median and MAD of the samples
    (1 in 16 pixels) of each 32 px block pooled with its 8 neighbours (a 96 px window),
    leaving out the samples where ``exclude`` is set (strokes already found).

    Pooling samples rather than taking the median of block medians is what keeps text
    from setting its own level: a block full of strokes is outvoted only if most *blocks*
    around it are not text, but its strokes are only a share of the *pixels* of the
    window. At the frame's edges the window is clipped to the frame (missing blocks and
    the missing part of partial blocks are NaN, not copies of the edge): replicating
    the edge block made text along an edge its own background, and a name starting at
    the left edge was left unpainted for its first ~60 px.
    """
    height, width = values.shape
    rows, cols = -(-height // _BLOCK), -(-width // _BLOCK)
    sample = values[::_STEP, ::_STEP].astype(np.float32)
    if exclude is not None:
        sample[exclude[::_STEP, ::_STEP]] = np.nan
    half = _BLOCK // _STEP
    padded = np.full(((rows + 2) * half, (cols + 2) * half), np.nan, np.float32)
    padded[half:half + sample.shape[0], half:half + sample.shape[1]] = sample
    blocks = padded.reshape(rows + 2, half, cols + 2, half).transpose(0, 2, 1, 3) \
        .reshape(rows + 2, cols + 2, half * half)
    pooled = np.concatenate([blocks[dy:dy + rows, dx:dx + cols]
                             for dy in range(3) for dx in range(3)], axis=2)
    level = _nanmedian(pooled)
    sigma = _nanmedian(np.abs(pooled - level[..., None])) * np.float32(1.4826)
    empty = np.isnan(level)  # a window all excluded: judged as a quiet background
    level[empty], sigma[empty] = 0.0, 0.0
    return (cv2.resize(level, (width, height), interpolation=cv2.INTER_LINEAR),
            cv2.resize(sigma, (width, height), interpolation=cv2.INTER_LINEAR))


def _nanmedian(values: np.ndarray) -> np.ndarray:
    """Median over the last axis ignoring NaN (NaN where a window has no sample)."""
    ordered = np.sort(values, axis=-1)  # NaN sorts last
    count = np.count_nonzero(~np.isnan(values), axis=-1)
    low = np.take_along_axis(ordered, np.maximum(0, (count - 1) // 2)[..., None], axis=-1)
    high = np.take_along_axis(ordered, np.minimum(count // 2, values.shape[-1] - 1)[..., None],
                              axis=-1)
    out = ((low[..., 0] + high[..., 0]) / 2).astype(np.float32)
    out[count == 0] = np.nan
    return out


Labelled = tuple[int, np.ndarray, np.ndarray, np.ndarray]  # count, labels, stats, kept


def _hat(image: np.ndarray, op: int) -> np.ndarray:
    """White (black) top-hat with the frame mirrored at its edges. OpenCV's default
    border counts as foreground for the opening (background for the closing), so a
    stroke cut by the frame's edge looked infinitely wide and had no response: the
    glyph a name starts with, at the left edge, was not found."""
    return cv2.morphologyEx(image, op, _TOPHAT, borderType=cv2.BORDER_REFLECT_101)


def _glyph_sized(mask: np.ndarray) -> np.ndarray:
    """The parts of a stroke mask in components of a glyph's size (not noise specks)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    big = (stats[:, cv2.CC_STAT_AREA] >= _GLYPH_AREA) & (stats[:, cv2.CC_STAT_HEIGHT] >= MIN_HEIGHT)
    big[0] = False
    return big[labels].view(np.uint8)


def _stroke_components(grey: np.ndarray, scale: float) -> list[Labelled]:
    """Bright-stroke and dark-stroke components at one smoothing scale (labelled once)."""
    smooth = cv2.GaussianBlur(grey, (0, 0), scale)
    background, _ = _local_stats(smooth)
    lift = smooth.astype(np.float32) - background
    masks = []
    for sign, op in ((1.0, cv2.MORPH_TOPHAT), (-1.0, cv2.MORPH_BLACKHAT)):
        strokes = _hat(smooth, op).astype(np.float32)
        level, sigma = _local_stats(strokes)
        mask = strokes > np.maximum(_FLOOR, level + _NOISE_SIGMAS * sigma)
        found = _glyph_sized(mask)
        if found.any():  # again without the strokes found: dense text sets no level
            level, sigma = _local_stats(strokes, cv2.dilate(found, _GROW) > 0)
            mask |= strokes > np.maximum(_FLOOR, level + _NOISE_SIGMAS * sigma)
        mask = mask.astype(np.uint8)
        # Vertical lines longer than any glyph (scales, rulers, grids) would join the
        # letters that touch them into one component too tall to be text: cut them out.
        mask &= ~cv2.morphologyEx(mask, cv2.MORPH_OPEN, _VERTICAL_LINE)
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
                depth: int = 0, min_height: int = MIN_HEIGHT) -> list[list[int]]:
    """[left, top, right, bottom, area, polarity x area] of glyph-sized components."""
    count, labels, stats, keep = labelled
    out = []
    for i in np.nonzero(keep)[0]:
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < 4 or h < min_height:
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
                                       x + dx, y + dy, depth + 1, min_height))
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


def text_boxes(grey: np.ndarray, *, min_height: int = MIN_HEIGHT) -> list[Box]:
    """Line boxes likely to hold text in an 8-bit grey frame, clipped to the frame.

    Text too large for the 15 px top-hat and the 80 px height limit (radiographic side
    markers, banners) is looked for again at half resolution, where only components
    that would have been too tall at full resolution are kept.
    """
    grey = np.ascontiguousarray(grey, dtype=np.uint8)
    height, width = grey.shape
    large: list[Box] = []
    if min_height == MIN_HEIGHT and min(height, width) >= _LARGE_MIN_SIDE:
        half = cv2.resize(grey, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
        large = [(2 * left, 2 * top, min(width, 2 * right + 1), min(height, 2 * bottom + 1))
                 for left, top, right, bottom in text_boxes(half, min_height=MAX_HEIGHT // 2)]
    boxes = [component for scale in _SCALES
             for polarity, labelled in enumerate(_stroke_components(grey, scale))
             for component in _components(labelled, polarity, min_height=min_height)]
    if not boxes:
        return large
    sharp = cv2.GaussianBlur(grey, (0, 0), _SHRINK_SCALE)
    responses = [_hat(sharp, op).astype(np.float32)
                 for op in (cv2.MORPH_TOPHAT, cv2.MORPH_BLACKHAT)]
    out = large
    for left, top, right, bottom, area, dark in _merge_lines(boxes):
        if area < _MIN_LINE_AREA:
            continue
        left, top, right, bottom = _shrink(responses[1 if 2 * dark > area else 0],
                                           left, top, right, bottom)
        line = bottom - top
        margin = int(0.15 * line) + 2
        left, top, right, bottom = left - margin, top - 2, right + margin, bottom + 2
        # A line that ends less than a glyph from the frame's edge is taken to run into
        # it: the glyph the edge cuts is a sliver too small to be found on its own.
        if right - left >= 2 * line:  # a line of glyphs, not a speck
            reach = 0.5 * line
            left = 0 if left < reach else left
            right = width if width - right < reach else right
            top = 0 if top < reach / 2 else top
            bottom = height if height - bottom < reach / 2 else bottom
        out.append((max(0, left), max(0, top), min(width, right), min(height, bottom)))
    return out
