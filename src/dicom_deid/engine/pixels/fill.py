"""What to paint redacted pixels with: 'black' in stored-value space."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut

from .decode import geometry, photometric_after_decode, value_range
from .messages import PixelError, pi_label, safe

__all__ = ["fill_value"]


def _palette_darkest(ds: Dataset) -> int:
    """The stored value whose palette entry has the smallest R+G+B."""
    try:
        entries, first = (int(v) for v in ds.RedPaletteColorLookupTableDescriptor[:2])
        _, _, _, _, _, stored, representation = geometry(ds)
        low, high = value_range(stored, representation)
        candidates = np.arange(max(first, low), min(first + (entries or 65536), high + 1))
        if not candidates.size:
            raise PixelError("palette descriptor maps no stored value")
        dtype = np.int32 if representation else np.uint32
        rgb = apply_color_lut(candidates.astype(dtype), ds)
    except PixelError:
        raise
    except Exception as exc:
        raise PixelError(f"cannot read the palette: {type(exc).__name__}: "
                         f"{safe(str(exc))}") from None
    brightness = rgb[..., :3].astype(np.int64).sum(axis=-1)
    return int(candidates[int(np.argmin(brightness))])


def fill_value(ds: Dataset, frames: np.ndarray) -> int | tuple[int, ...]:
    """What to paint redacted pixels with in stored-value space: 'black'.

    ``frames`` are decoded frames, or any stack holding their minimum and maximum (the
    temporal extremes ``image_redaction`` detects on).
    MONOCHROME2 → frames.min(); MONOCHROME1 → frames.max() (its black is the largest
    value); RGB (after decode) → (0, 0, 0); PALETTE COLOR → the palette index whose RGB
    entry is darkest (sum of channels), which need not be index 0.
    """
    pi = photometric_after_decode(ds)
    if pi == "RGB":
        return (0,) * int(frames.shape[-1])
    if pi == "PALETTE COLOR":
        return _palette_darkest(ds)
    if pi == "MONOCHROME1":
        return int(frames.max())
    if pi == "MONOCHROME2":
        return int(frames.min())
    raise PixelError(f"PhotometricInterpretation {pi_label(pi)} is not supported")
