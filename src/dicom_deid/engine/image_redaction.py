"""Text burned into pixel data, found and painted over (``config.image``).

The steps, per instance, when the config asks for REDACT_ALL_TEXT or
REDACT_SENSITIVE_TEXT and the instance has pixel data:

1. decode every frame to stored values (``pixels``: any photometric, bit depth and
   transfer syntax with a decoder) and bring them to 8-bit grey for detection;
2. find text on the first frame and, for multi-frame instances, on the temporal
   minimum and maximum of all frames: burned-in annotations are static while the image
   moves, so the minimum keeps bright text and darkens moving speckle (the maximum does
   the same for dark text), and text that changes (a clock) shows as the union of its
   states. Three detections whatever the frame count, so a 100-frame cine loop does not
   cost 100 frames of detection;
   Text is found by a learned detector confirmed by a recogniser, and the frame is
   read again after painting until the second reader reads nothing (``text_detector``);
3. for REDACT_SENSITIVE_TEXT, keep only the lines that read as PHI to either reader
   (``sensitive_text``);
4. paint the union of boxes on every frame with the photometric's black and re-encode
   (losslessly where the syntax allows, else Explicit VR Little Endian);
5. set BurnedInAnnotation to NO (not for custom regexes alone: other text stays), and
   drop overlay planes and the icon thumbnail, which can hold the same text.

Instances are not decoded at all when the mode redacts nothing, and frames are not
re-encoded when nothing was found, so their pixel data stays byte-identical.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from .pixels import floats
from .pixels.decode import decode, photometric_after_decode
from .pixels.encode import encode
from .pixels.fill import fill_value
from .pixels.grey import to_grey8
from .plan import ALL_TEXT, SENSITIVE_TEXT, ImagePlan
from .sensitive_text import sensitive_boxes
from .text_detector import Box, all_text_boxes


def _views(grey: np.ndarray) -> list[np.ndarray]:
    """The 8-bit images text is looked for in (see the module's step 2)."""
    if len(grey) == 1:
        return [grey[0]]
    if len(grey) == 3:  # already the first frame, minimum and maximum
        return list(grey)
    return [grey[0], grey.min(axis=0), grey.max(axis=0)]


def _detection_grey(ds: Dataset, frames: np.ndarray) -> np.ndarray:
    """8-bit grey of the first frame and of the temporal minimum and maximum.

    The minimum and maximum are taken on stored values (per colour channel), so only
    three images are converted to grey whatever the frame count; palette indices are
    not ordered by brightness, so palette frames are converted first.
    """
    if len(frames) <= 3 or photometric_after_decode(ds) == "PALETTE COLOR":
        return to_grey8(ds, frames)
    stack = np.stack([frames[0], frames.min(axis=0), frames.max(axis=0)])
    return to_grey8(ds, stack)


def _union(boxes: list[Box]) -> list[Box]:
    return sorted(set(boxes))


def find_boxes(grey: np.ndarray, plan: ImagePlan, known: dict[str, str]) -> list[Box]:
    """Boxes to paint, for frames of 8-bit grey shaped (frames, rows, columns)."""
    found: list[Box] = []
    for view in _views(grey):
        boxes = all_text_boxes(view)
        if plan.mode != ALL_TEXT:
            boxes = sensitive_boxes(view, boxes, known, plan.regexes,
                                    phi=plan.mode == SENSITIVE_TEXT)
        found.extend(boxes)
    return _union(found)


def _drop_overlays(ds: Dataset) -> None:
    tags = list(ds.keys())
    for tag in tags:
        if 0x6000 <= tag.group <= 0x601E and tag.group % 2 == 0:
            del ds[tag]


def _redact_floats(ds: Dataset, key: str, plan: ImagePlan, known: dict[str, str]
                   ) -> list[Box]:
    """Float or double pixel data: found and painted as integer frames are
    (``pixels.floats``), written back in place (always native)."""
    frames = floats.decode_floats(ds, key)
    boxes = find_boxes(floats.grey8(frames), plan, known)
    if boxes:
        value = floats.fill(frames)
        for left, top, right, bottom in boxes:
            frames[:, top:bottom, left:right] = value
        floats.encode_floats(ds, key, frames)
    return boxes


def redact_pixels(ds: Dataset, plan: ImagePlan, known: dict[str, str]) -> int:
    """Find and paint burned-in text in ``ds`` in place; the number of boxes painted.

    Raises :class:`~.pixels.messages.PixelError` when pixel data cannot be decoded or written:
    an instance is never passed on unredacted as if it had been redacted.
    """
    if not plan.redacts:
        return 0
    _drop_overlays(ds)
    if "IconImageSequence" in ds:  # a thumbnail of the same pixels, text included
        del ds.IconImageSequence
    float_key = floats.keyword(ds)
    if float_key is not None:
        boxes = _redact_floats(ds, float_key, plan, known)
    elif "PixelData" not in ds:
        return 0
    else:
        frames = decode(ds)
        boxes = find_boxes(_detection_grey(ds, frames), plan, known)
        if boxes:
            fill = fill_value(ds, frames)
            for left, top, right, bottom in boxes:
                frames[:, top:bottom, left:right, :] = fill
            encode(ds, frames)
    if plan.mode in (ALL_TEXT, SENSITIVE_TEXT):  # custom regexes alone leave other text
        ds.BurnedInAnnotation = "NO"
    return len(boxes)
