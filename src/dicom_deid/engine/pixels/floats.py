"""Float Pixel Data (7FE0,0008) and Double Float Pixel Data (7FE0,0009): parametric
maps and other computed images, searched and painted like integer pixels.

They are always native (no encapsulated syntax carries them), one sample per pixel,
in the dataset's byte order. Text burned into them is the map's extreme values; the
8-bit view for the text finder stretches the finite values' 0.5-99.5 percentiles, as
for integer frames, and NaN or infinite pixels count as black there. Painting writes
the frames' finite minimum, the map's own "black".
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from .decode import transfer_syntax
from .messages import PixelError

KEYWORDS = {"FloatPixelData": "f4", "DoubleFloatPixelData": "f8"}


def keyword(ds: Dataset) -> str | None:
    """Which float pixel element ``ds`` holds, if any."""
    return next((k for k in KEYWORDS if k in ds), None)


def _shape(ds: Dataset) -> tuple[int, int, int]:
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        rows, columns = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError) as exc:
        raise PixelError(f"float pixel data without a usable Rows, Columns or "
                         f"NumberOfFrames ({type(exc).__name__})") from None
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise PixelError("float pixel data with more than one sample per pixel")
    return frames, rows, columns


def _dtype(ds: Dataset, key: str) -> np.dtype:
    little = transfer_syntax(ds).is_little_endian
    return np.dtype(("<" if little else ">") + KEYWORDS[key])


def decode_floats(ds: Dataset, key: str) -> np.ndarray:
    """Every frame as (frames, rows, columns), in the native byte order."""
    frames, rows, columns = _shape(ds)
    raw = ds[key].value or b""
    dtype = _dtype(ds, key)
    need = frames * rows * columns * dtype.itemsize
    if len(raw) < need:
        raise PixelError(f"{key} holds {len(raw)} bytes, {frames} frame(s) of "
                         f"{rows}x{columns} need {need}")
    arr = np.frombuffer(raw, dtype=dtype, count=frames * rows * columns)
    return arr.reshape(frames, rows, columns).astype(dtype.newbyteorder("="))


def grey8(frames: np.ndarray) -> np.ndarray:
    """8-bit views for the text finder: the first frame and, for a multi-frame, the
    temporal minimum and maximum (as for integer frames)."""
    finite = np.isfinite(frames)
    if not finite.any():
        return np.zeros((1, *frames.shape[1:]), dtype=np.uint8)
    low, high = np.percentile(frames[finite], (0.5, 99.5))
    clean = np.where(finite, frames, low)
    views = clean if len(clean) <= 3 else np.stack(
        [clean[0], clean.min(axis=0), clean.max(axis=0)])
    scale = 255.0 / max(float(high - low), 1e-12)
    return np.clip((views - low) * scale, 0, 255).astype(np.uint8)


def fill(frames: np.ndarray) -> float:
    """The value painted: the frames' finite minimum (0 if none is finite)."""
    finite = frames[np.isfinite(frames)]
    return float(finite.min()) if finite.size else 0.0


def encode_floats(ds: Dataset, key: str, frames: np.ndarray) -> None:
    """Write painted frames back into ``key`` in the dataset's byte order."""
    ds[key].value = np.ascontiguousarray(frames, dtype=_dtype(ds, key)).tobytes()
