"""8-bit grey views of pixel data: what text detection reads and what a viewer shows.

* ``to_grey8``: decode() output (all frames) → uint8 grey frames, for text detection.
* ``frame_grey8``: one frame of a dataset, decoded on its own, the same way (bright =
  white, MONOCHROME1 inverted, colour and palette through luma, more than 8 bits
  stretched between the 0.5th and 99.5th percentiles).
* ``array_grey8``: a raw array with no dataset (one frame, samples last for colour),
  always stretched between its 0.5th and 99.5th percentiles.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut

from .decode import decode_frame, geometry, photometric_after_decode, value_range
from .messages import PixelError, safe

__all__ = ["array_grey8", "frame_grey8", "luma", "to_grey8"]


def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of (..., 3) samples, as float32."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return rgb[..., :3].astype(np.float32) @ weights


def to_grey8(ds: Dataset, frames: np.ndarray) -> np.ndarray:
    """decode() output → uint8 grey frames (frames, rows, cols) for text detection.

    MONOCHROME1 is inverted so text polarity is like MONOCHROME2; signed values are
    handled; data of more than 8 bits is stretched by the 0.5–99.5 percentile of the
    whole array (computed once for all frames, so frames are comparable: a frame of
    only text is not stretched differently from its neighbours); data of 8 bits or
    fewer is mapped from its BitsStored range unchanged in contrast (1-bit → 0/255);
    RGB → BT.601 luma; PALETTE COLOR → the palette LUT applied, then luma.
    """
    if frames.ndim != 4:
        raise PixelError(f"expected a 4-D (frames, rows, columns, samples) array, "
                         f"got {frames.ndim}-D")
    pi = photometric_after_decode(ds)
    planes: np.ndarray
    if pi == "PALETTE COLOR":
        try:
            rgb = apply_color_lut(frames[..., 0], ds)
        except Exception as exc:
            raise PixelError(f"cannot apply the palette: {type(exc).__name__}: "
                             f"{safe(str(exc))}") from None
        planes = luma(rgb)
        wide, low, high = rgb.dtype.itemsize > 1, 0.0, 255.0
    else:
        _, _, _, _, _, stored, representation = geometry(ds)
        planes = luma(frames) if frames.shape[-1] == 3 else frames[..., 0]
        low, high = (float(v) for v in value_range(stored, representation))
        wide = stored > 8
    if wide and planes.size:
        low, high = (float(v) for v in np.percentile(planes, (0.5, 99.5)))
        if high <= low:
            low, high = float(planes.min()), float(planes.max())
    out = np.zeros(planes.shape, dtype=np.uint8)
    if high > low:
        scale = 255.0 / (high - low)
        for i in range(planes.shape[0]):  # frame by frame: one float frame at a time
            grey = (planes[i].astype(np.float32) - low) * scale
            out[i] = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    if pi == "MONOCHROME1":
        np.subtract(255, out, out=out)
    return out


def frame_grey8(ds: Dataset, index: int = 0) -> np.ndarray:
    """Frame ``index`` of ``ds`` as a 2-D uint8 array, bright = white, the way a viewer
    shows it: to_grey8() of that frame alone, decoding only that frame.

    A frame of more than 8 bits is stretched by its own percentiles (to_grey8 of all
    frames stretches by those of the whole array). Raises PixelError like decode().
    """
    return to_grey8(ds, decode_frame(ds, index))[0]


def array_grey8(pixels: np.ndarray, photometric: str = "MONOCHROME2") -> np.ndarray:
    """One frame as 8-bit grey with the 0.5-99.5 percentile range stretched to 0-255.

    For a raw array without a dataset: 2-D grey, or 3-D colour with samples last
    (pydicom's layout) brought to ITU-R BT.601 luma; MONOCHROME1 is inverted.
    """
    frame = np.asarray(pixels)
    if frame.ndim == 3:  # colour, samples last (pydicom's layout): ITU-R BT.601 luma
        frame = luma(frame)
    frame = frame.astype(np.float32)
    if photometric == "MONOCHROME1":
        frame = frame.max() - frame
    low, high = np.percentile(frame, (0.5, 99.5))
    if high <= low:
        high = low + 1
    return np.clip((frame - low) * (255.0 / (high - low)), 0, 255).astype(np.uint8)
