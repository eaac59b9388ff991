"""Text burned into pixel data, found and painted over (``config.image``).

The steps, per instance, when the config asks for REDACT_ALL_TEXT or
REDACT_SENSITIVE_TEXT and the instance has pixel data (``read_pixels``, ``find_boxes``,
``paint``):

1. read every frame as stored values (``pixels``: any photometric, bit depth and
   transfer syntax with a decoder) and bring what detection looks at to 8-bit grey.
   Native pixel data is not decoded at all: the frames are a view of its bytes
   (``pixels.native``); JPEG baseline frames are decoded by libjpeg-turbo
   (``pixels.jpeg_dct``); everything else by pydicom (``pixels.decode``);
2. find text on the first frame and, for multi-frame instances, on the temporal
   minimum and maximum of all frames: burned-in annotations are static while the image
   moves, so the minimum keeps bright text and darkens moving speckle (the maximum does
   the same for dark text), and text that changes (a clock) shows as the union of its
   states. Three detections whatever the frame count, so a 100-frame cine loop does not
   cost 100 frames of detection; the minimum and maximum are taken frame by frame on
   stored values, and only those three images are made grey;
   Text is found by a learned detector confirmed by a recogniser, and the frame is
   read again after painting until the second reader reads nothing (``text_detector``;
   for JPEG baseline painted as it will be written, the boxes grown to the block grid);
3. for REDACT_SENSITIVE_TEXT, keep only the lines that read as PHI to either reader
   (``sensitive_text``);
4. paint the union of boxes on every frame with the photometric's black: native pixel
   data in a copy of its bytes, nothing outside the boxes touched; JPEG baseline in the
   DCT domain, only the blocks under the boxes (grown to the MCU grid) set to black and
   the frame entropy-coded again, so the rest of every frame keeps its coefficients,
   the instance stays JPEG baseline and a frame whose boxes are already black keeps
   its bytes; anything else re-encoded (losslessly where the syntax allows, else
   Explicit VR Little Endian);
5. set BurnedInAnnotation to NO (not for custom regexes alone: other text stays), and
   drop overlay planes and the icon thumbnail, which can hold the same text.

Instances are not decoded at all when the mode redacts nothing, and frames are not
re-encoded when nothing was found, so their pixel data stays byte-identical.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from .pixels import floats, native
from .pixels.decode import decode, photometric_after_decode
from .pixels.encode import encode
from .pixels.fill import fill_value
from .pixels.grey import to_grey8
from .pixels.jpeg_dct import JpegFrames, Unfit
from .plan import ALL_TEXT, SENSITIVE_TEXT, ImagePlan
from .sensitive_text import sensitive_boxes
from .text_detector import Box, all_text_boxes
from .text_detector import _covered as covered
from .text_detector import _read_again as read_again

Footprint = Callable[[list[Box]], list[Box]]


def _views(grey: np.ndarray) -> list[np.ndarray]:
    """The 8-bit images text is looked for in (see the module's step 2)."""
    if len(grey) == 1:
        return [grey[0]]
    if len(grey) == 3:  # already the first frame, minimum and maximum
        return list(grey)
    return [grey[0], grey.min(axis=0), grey.max(axis=0)]


def _extremes(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The temporal minimum and maximum, per pixel and sample, in native byte order:
    one frame at a time, so nothing the size of all frames is made."""
    low = np.array(frames[0], dtype=frames.dtype.newbyteorder("="))
    high = low.copy()
    for frame in frames[1:]:
        np.minimum(low, frame, out=low)
        np.maximum(high, frame, out=high)
    return low, high


def _detection_views(ds: Dataset, frames: np.ndarray) -> np.ndarray:
    """Stored values of what text is looked for in: the first frame and the temporal
    minimum and maximum, or every frame of an instance of three or fewer.

    The minimum and maximum are taken on stored values (per colour channel), so only
    three images are converted to grey whatever the frame count; palette indices are
    not ordered by brightness, so palette frames are all kept (and made grey first).
    The views' own minimum and maximum are those of all frames (``fill_value``).
    """
    if len(frames) <= 3 or photometric_after_decode(ds) == "PALETTE COLOR":
        return frames
    low, high = _extremes(frames)
    return np.stack([np.asarray(frames[0], dtype=low.dtype), low, high])


@dataclass
class Pixels:
    """An instance's integer pixel data as read for detection and painting.

    ``route`` says how it was read and will be painted: "native" (``frames`` is a
    read-only view of the Pixel Data bytes), "jpeg" (JPEG baseline decoded by
    libjpeg-turbo, painted in the DCT domain by ``jpeg``) or "decoded" (pydicom's
    decoders; painted and re-encoded). ``views`` are the stored values detection
    and the fill look at (``_detection_views``).
    """

    route: str
    frames: np.ndarray
    views: np.ndarray
    jpeg: JpegFrames | None = None

    @property
    def footprint(self) -> Footprint | None:
        """What painting boxes covers, where that is more than the boxes (the JPEG
        blocks under them), for ``find_boxes``; None where it is the boxes."""
        return self.jpeg.footprint if self.route == "jpeg" and self.jpeg else None


def read_pixels(ds: Dataset) -> Pixels:
    """Every frame of ``ds``'s PixelData, read the cheapest way that paints exactly.

    Raises PixelError as ``pixels.decode.decode`` does.
    """
    frames = native.view(ds)
    if frames is not None:
        views = _detection_views(ds, frames)
        if native.in_range(ds, views.min(axis=0), views.max(axis=0)):
            return Pixels("native", frames, views)
    jpeg = JpegFrames.open(ds)
    if jpeg is not None:
        try:
            frames = jpeg.decode()
        except Unfit:
            pass
        else:
            return Pixels("jpeg", frames, _detection_views(ds, frames), jpeg)
    frames = decode(ds)
    return Pixels("decoded", frames, _detection_views(ds, frames))


def detection_grey(ds: Dataset, pixels: Pixels) -> np.ndarray:
    """8-bit grey of ``pixels.views``, what ``find_boxes`` takes."""
    return to_grey8(ds, pixels.views)


def paint(ds: Dataset, pixels: Pixels, boxes: list[Box]) -> None:
    """Paint ``boxes`` on every frame with the photometric's black and put the pixel
    data back into ``ds`` (see the module, step 4)."""
    if not boxes:
        return
    if pixels.route == "native":
        native.paint(ds, boxes, fill_value(ds, pixels.views))
        return
    if pixels.route == "jpeg" and pixels.jpeg is not None:
        try:
            pixels.jpeg.write(pixels.jpeg.paint(boxes, pixels.frames))
            return
        except Unfit:  # a frame the DCT route does not handle: decode as always
            frames = decode(ds)
            pixels = Pixels("decoded", frames, frames)
    frames = pixels.frames
    fill = fill_value(ds, pixels.views)
    for left, top, right, bottom in boxes:
        frames[:, top:bottom, left:right, :] = fill
    encode(ds, frames)


def _union(boxes: list[Box]) -> list[Box]:
    return sorted(set(boxes))


#: Looks at a frame, the first included, as ``text_detector.all_text_boxes`` takes.
_ROUNDS = 3


def _text_boxes_as_written(grey: np.ndarray, footprint: Footprint) -> list[Box]:
    """``all_text_boxes``, with its looks again at the painted frame painting what will
    be written: the boxes grown by ``footprint``.

    The detector judges a glyph by its surroundings, so a label that reads as nothing
    beside an icon may read once a larger area around it is black (JPEG blocks grown
    to the MCU grid): the frame is looked at again as it will be.
    """
    grey = np.ascontiguousarray(grey, dtype=np.uint8)
    found = all_text_boxes(grey, rounds=1)
    painted, fresh = grey.copy(), found
    for _ in range(_ROUNDS - 1):
        if not fresh:
            break
        for left, top, right, bottom in footprint(fresh):
            painted[top:bottom, left:right] = 0
        fresh = [box for box in read_again(painted) if covered(box, found) < 0.9]
        found = found + fresh
    return found


def find_boxes(grey: np.ndarray, plan: ImagePlan, known: dict[str, str],
               footprint: Footprint | None = None) -> list[Box]:
    """Boxes to paint, for frames of 8-bit grey shaped (frames, rows, columns).

    ``footprint`` gives what painting boxes will really cover where that is more than
    the boxes (``Pixels.footprint``); detection looks again at the frame painted so.
    """
    found: list[Box] = []
    for view in _views(grey):
        boxes = (all_text_boxes(view) if footprint is None
                 else _text_boxes_as_written(view, footprint))
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
        pixels = read_pixels(ds)
        boxes = find_boxes(detection_grey(ds, pixels), plan, known, pixels.footprint)
        paint(ds, pixels, boxes)
    if plan.mode in (ALL_TEXT, SENSITIVE_TEXT):  # custom regexes alone leave other text
        ds.BurnedInAnnotation = "NO"
    return len(boxes)
