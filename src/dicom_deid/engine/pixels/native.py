"""Native (uncompressed) pixel data read where it lies and painted in place.

A native frame is an array over the Pixel Data bytes: ``view`` gives every frame as a
read-only view of them (no copy, no conversion), and ``paint`` copies the bytes once
and paints the boxes into the copy, so a cine loop costs one copy of its pixel data
and the strided slices under the boxes, not a decode, a conversion and an encode of
every frame. Every byte outside the boxes is the input's.

Only layouts whose bytes are the stored values that :func:`.decode.decode` would
give: 8, 16 or 32 bits allocated, MONOCHROME1/2, PALETTE COLOR or RGB (by pixel or
by plane), either byte order. YBR_* (decode gives RGB), 1-bit and float pixel data go
the general way. Bits above BitsStored are the caller's to check (``in_range``): a
file that keeps other bits there (old overlays) goes the general way too.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from .decode import (
    PIXEL_DATA,
    check_native_length,
    geometry,
    photometric,
    transfer_syntax,
    value_range,
)

__all__ = ["in_range", "paint", "view"]

Box = tuple[int, int, int, int]  # left, top, right, bottom (exclusive)


def _dtype(ds: Dataset) -> np.dtype:
    _, _, _, _, allocated, _, representation = geometry(ds)
    order = "<" if transfer_syntax(ds).is_little_endian else ">"
    return np.dtype(f"{order}{'i' if representation else 'u'}{allocated // 8}")


def _shaped(ds: Dataset, buffer: bytes | bytearray) -> np.ndarray:
    frames, rows, columns, samples = geometry(ds)[:4]
    flat = np.frombuffer(buffer, dtype=_dtype(ds), count=frames * rows * columns * samples)
    if samples > 1 and int(ds.get("PlanarConfiguration") or 0) == 1:
        return flat.reshape(frames, samples, rows, columns).transpose(0, 2, 3, 1)
    return flat.reshape(frames, rows, columns, samples)


def view(ds: Dataset) -> np.ndarray | None:
    """Every frame, (frames, rows, columns, samples), as a read-only view of the
    Pixel Data bytes in the file's byte order; None for what this module does not
    handle (see the module). PixelError for a length the attributes do not match,
    as :func:`.decode.decode` would raise."""
    if PIXEL_DATA not in ds or transfer_syntax(ds).is_encapsulated:
        return None
    shape = geometry(ds)
    samples, allocated = shape[3], shape[4]
    pi = photometric(ds)
    if allocated not in (8, 16, 32) or not isinstance(ds.PixelData, bytes | bytearray):
        return None
    if not ((samples == 1 and pi in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR"))
            or (samples == 3 and pi == "RGB")):
        return None
    check_native_length(ds, shape, pi)
    return _shaped(ds, ds.PixelData)


def in_range(ds: Dataset, low: np.ndarray, high: np.ndarray) -> bool:
    """Whether the frames' temporal minimum ``low`` and maximum ``high`` lie within
    what BitsStored and PixelRepresentation allow (else bits above BitsStored hold
    something else, and the raw values are not the stored values)."""
    _, _, _, _, allocated, stored, representation = geometry(ds)
    if stored == allocated:
        return True
    first, last = value_range(stored, representation)
    return bool(low.min() >= first and high.max() <= last)


def _runs(boxes: list[Box], rows: int, columns: int) -> list[tuple[int, int, int]]:
    """The union of ``boxes`` as (row, first column, end column) runs, in file order."""
    mask = np.zeros((rows, columns + 2), dtype=np.int8)  # a clear column either side
    for left, top, right, bottom in boxes:
        mask[max(0, top):max(0, bottom), max(0, left) + 1:max(0, right) + 1] = 1
    edges = np.diff(mask, axis=1)
    starts, ends = np.nonzero(edges == 1), np.nonzero(edges == -1)
    return list(zip(starts[0].tolist(), starts[1].tolist(), ends[1].tolist(), strict=True))


def paint(ds: Dataset, boxes: list[Box], fill: int | tuple[int, ...]) -> None:
    """Paint ``boxes`` with ``fill`` (stored values) on every frame: new Pixel Data
    made in one pass of the bytes, the input's bytes everywhere but the boxes."""
    frames, rows, columns, samples, allocated, stored, _ = geometry(ds)
    runs = _runs(boxes, rows, columns)
    if not runs:
        return
    data = ds.PixelData
    size = allocated // 8
    values = np.broadcast_to(np.asarray(fill), (samples,)).astype(_dtype(ds))
    planar = samples > 1 and int(ds.get("PlanarConfiguration") or 0) == 1
    # (offset in a frame, length, bytes) of every painted run: by pixel, a run is its
    # pixels' samples; by plane, one run per sample plane.
    if planar:
        plane = rows * columns * size
        painted = [(s * plane + (r * columns + c0) * size, (c1 - c0) * size,
                    values[s:s + 1].tobytes() * (c1 - c0))
                   for s in range(samples) for r, c0, c1 in runs]
    else:
        pixel = values.tobytes()
        painted = [((r * columns + c0) * samples * size, (c1 - c0) * samples * size,
                    pixel * (c1 - c0)) for r, c0, c1 in runs]
    painted.sort(key=lambda run: run[0])
    frame_bytes = rows * columns * samples * size
    source = memoryview(data)
    pieces: list[bytes | memoryview] = []
    at = 0
    for f in range(frames):
        base = f * frame_bytes
        for offset, length, fill_bytes in painted:
            pieces.append(source[at:base + offset])
            pieces.append(fill_bytes)
            at = base + offset + length
    pieces.append(source[at:])
    ds[PIXEL_DATA].value = b"".join(pieces)
    ds.HighBit = stored - 1
