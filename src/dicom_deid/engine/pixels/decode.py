"""Pixel data out of a dataset: its geometry, and its frames as stored values.

``decode`` gives every frame as one ``(frames, rows, columns, samples)`` array of
*stored* values (no modality, VOI or palette applied), so what is painted is what is
written. The one exception is colour: YBR_* data comes out as RGB. pydicom converts
YBR_FULL/YBR_FULL_422 (``as_rgb``, and JPEG baseline colour is nearly always YCbCr
inside, whatever the attribute says) and the JPEG 2000 codec undoes YBR_ICT/YBR_RCT
itself; black is then (0, 0, 0), and RGB is what every writer path in :mod:`.encode`
can store without a colour transform of its own. ``decode_frame`` decodes one frame
only, so memory stays bounded on a large multi-frame.
"""

from __future__ import annotations

import os

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.pixels.utils import as_pixel_options
from pydicom.uid import UID

from .messages import PixelError, pi_label, safe, ts_label

__all__ = ["KNOWN_PI", "PIXEL_DATA", "check_decoded_size", "check_native_length", "decode",
           "decode_frame", "geometry", "max_decoded_bytes", "photometric",
           "photometric_after_decode", "transfer_syntax", "value_range"]

PIXEL_DATA = 0x7FE00010
#: PhotometricInterpretation values decode() can return.
KNOWN_PI = ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR", "RGB")


def transfer_syntax(ds: Dataset) -> UID:
    """The dataset's TransferSyntaxUID (PixelError if the file meta has none)."""
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if not ts:
        raise PixelError("no TransferSyntaxUID in the file meta information")
    return UID(str(ts))


def _int(ds: Dataset, keyword: str, default: int | None = None) -> int:
    value = ds.get(keyword)
    if value is None or value == "":
        if default is not None:
            return default
        raise PixelError(f"{keyword} is missing or empty")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PixelError(f"{keyword} is not an integer") from None


def geometry(ds: Dataset) -> tuple[int, int, int, int, int, int, int]:
    """(frames, rows, columns, samples, bits allocated, bits stored, representation)."""
    frames = _int(ds, "NumberOfFrames", 1)
    rows, columns = _int(ds, "Rows"), _int(ds, "Columns")
    samples = _int(ds, "SamplesPerPixel")
    allocated = _int(ds, "BitsAllocated")
    stored = _int(ds, "BitsStored", allocated)
    representation = _int(ds, "PixelRepresentation", 0)
    if min(frames, rows, columns, samples) < 1:
        raise PixelError(f"image of {frames} frame(s) of {columns}x{rows}x{samples} is empty")
    if samples not in (1, 3):
        raise PixelError(f"SamplesPerPixel {samples} is not supported (1 or 3)")
    if allocated not in (1, 8, 16, 32) or not 0 < stored <= allocated:
        raise PixelError(f"BitsAllocated {allocated} with BitsStored {stored} is not supported")
    if representation not in (0, 1):
        raise PixelError(f"PixelRepresentation {representation} is not 0 or 1")
    return frames, rows, columns, samples, allocated, stored, representation


def photometric(ds: Dataset) -> str:
    """The dataset's PhotometricInterpretation, stripped and upper case."""
    value = str(ds.get("PhotometricInterpretation") or "").strip().upper()
    if not value:
        raise PixelError("PhotometricInterpretation is missing or empty")
    return value


def check_native_length(ds: Dataset, geometry: tuple[int, ...], pi: str) -> None:
    """Refuse native pixel data shorter than its attributes say, or a frame longer.

    pydicom decodes the start of longer data with only a warning. Less than a frame
    of excess is trailing padding (some writers pad to a block size; encode drops
    it), but a whole frame or more means NumberOfFrames or the geometry is wrong, and
    redacting a misread image would leave the text where it really is.
    """
    frames, rows, columns, samples, allocated = geometry[:5]
    frame_bits = rows * columns * samples * allocated
    if pi == "YBR_FULL_422" and samples == 3:
        frame_bits = frame_bits // 3 * 2
    expected = (frame_bits * frames + 7) // 8
    actual = len(ds.PixelData or b"")
    if not expected <= actual < max(expected + expected % 2 + 1, (frame_bits * (frames + 1)) // 8):
        raise PixelError(
            f"pixel data length {actual} bytes, expected {expected} for {frames} frame(s) "
            f"of {columns}x{rows}x{samples} at {allocated} bits"
        )


def value_range(stored: int, representation: int) -> tuple[int, int]:
    """The smallest and largest stored value BitsStored/PixelRepresentation allow."""
    if representation:
        return -(2 ** (stored - 1)), 2 ** (stored - 1) - 1
    return 0, 2**stored - 1


def photometric_after_decode(ds: Dataset) -> str:
    """The PhotometricInterpretation that describes decode()'s output (RGB for any
    YBR_*, else unchanged).

    YBR_FULL/YBR_FULL_422 are converted by pydicom (``as_rgb``); YBR_ICT/YBR_RCT are
    undone by the JPEG 2000 codec itself. Either way the array holds RGB.
    """
    pi = photometric(ds)
    return "RGB" if pi.startswith("YBR") else pi


def decode(ds: Dataset) -> np.ndarray:
    """All frames as one array shaped (frames, rows, columns, samples) — always 4-D,
    samples=1 for grey/palette — in stored-value space (signed dtype if
    PixelRepresentation=1), NOT modality/VOI/palette-applied.

    YBR_FULL / YBR_FULL_422 / YBR_ICT / YBR_RCT are returned converted to RGB
    (pydicom's as_rgb) so colour is RGB. The array is in native byte order (big
    endian sources too) and writeable.

    Uses the transfer syntax's pydicom Decoder directly rather than
    ``pydicom.pixels.pixel_array`` because only the decoder reports the colour space
    of what it returned; that report is checked against photometric_after_decode().

    Raises PixelError for: no PixelData, unsupported transfer syntax or missing
    decoder plugin, corrupt/undecodable data, length mismatch between PixelData and
    Rows*Columns*Samples*Frames*Bits, FloatPixelData etc.
    """
    return _decode(ds, None)


def decode_frame(ds: Dataset, index: int) -> np.ndarray:
    """Frame ``index`` (0-based) as decode() would give it, shaped (1, rows, columns,
    samples), decoding that frame only (the others are not held in memory).

    Same checks and errors as decode(), and PixelError for an index out of range.
    """
    return _decode(ds, index)


#: Where ``serve --max-decoded-mb`` leaves the limit for every process of the server.
DECODED_LIMIT_ENV = "DICOM_DEID_MAX_DECODED_MB"
#: 2 GiB: a 1,000-frame 640x480 RGB cine (921 MB) fits; a header claiming 100,000
#: frames of 1024x1024 over a 100 MB upload of tiny JPEGs (100 GB decoded) does not.
DEFAULT_MAX_DECODED_MB = 2048


def max_decoded_bytes() -> int:
    """The process's limit on decoded pixel data (``DECODED_LIMIT_ENV`` in MiB)."""
    value = os.environ.get(DECODED_LIMIT_ENV, "").strip()
    mb = int(value) if value.isascii() and value.isdigit() and int(value) > 0 \
        else DEFAULT_MAX_DECODED_MB
    return mb << 20


def check_decoded_size(ds: Dataset, frames: int | None = None) -> None:
    """PixelError before decoding compressed pixel data whose ``frames`` (all if None)
    would decode beyond :func:`max_decoded_bytes`.

    A compressed frame's size says nothing of its decoded size (a black 1024x1024 JPEG
    is ~1 kB), so a small upload can claim gigabytes through its header; native pixel
    data is as large as it says (``check_native_length``) and needs no check."""
    try:
        if not transfer_syntax(ds).is_encapsulated:
            return
        total, rows, columns = (_int(ds, k, d) for k, d in (
            ("NumberOfFrames", 1), ("Rows", 0), ("Columns", 0)))
        samples, allocated = _int(ds, "SamplesPerPixel", 1), _int(ds, "BitsAllocated", 8)
    except (PixelError, ValueError):  # ValueError: a UID that is no transfer syntax
        return  # not a size to judge: the decoder's own checks name what is wrong
    size = (max(0, rows) * max(0, columns) * max(1, samples) * max(1, allocated // 8)
            * (max(1, total) if frames is None else frames))
    limit = max_decoded_bytes()
    if size > limit:
        raise PixelError(f"the compressed pixel data would decode to {size >> 20} MiB, "
                         f"beyond the limit of {limit >> 20} MiB")


def _decode(ds: Dataset, index: int | None) -> np.ndarray:
    if PIXEL_DATA not in ds:
        for keyword in ("FloatPixelData", "DoubleFloatPixelData"):
            if keyword in ds:
                raise PixelError(f"{keyword} is not supported, only integer PixelData")
        raise PixelError("no PixelData")
    ts = transfer_syntax(ds)
    shape = geometry(ds)
    frames, rows, columns, samples = shape[:4]
    if index is not None and not 0 <= index < frames:
        raise PixelError(f"frame index {index} is out of range for {frames} frame(s)")
    check_decoded_size(ds, None if index is None else 1)
    pi = photometric(ds)
    expected_pi = photometric_after_decode(ds)
    if expected_pi not in KNOWN_PI:
        raise PixelError(f"PhotometricInterpretation {pi_label(pi)} is not supported")
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise PixelError(f"unsupported transfer syntax {ts_label(ts)}") from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies)
        raise PixelError(f"no decoder plugin for {ts_label(ts)} (missing: {missing})")
    if not ts.is_encapsulated:
        check_native_length(ds, shape, pi)
    elif not isinstance(ds.PixelData, bytes | bytearray) or not ds["PixelData"].value:
        raise PixelError(f"encapsulated pixel data for {ts_label(ts)} is empty")
    try:
        opts = as_pixel_options(ds, allow_excess_frames=False)
        arr, props = decoder.as_array(ds, index=index, validate=True, as_rgb=True, **opts)
    except PixelError:
        raise
    except Exception as exc:  # every codec raises its own kinds; all mean "undecodable"
        raise PixelError(
            f"cannot decode {ts_label(ts)} pixel data: {type(exc).__name__}: {safe(str(exc))}"
        ) from None
    got_pi = str(props.get("photometric_interpretation", pi))
    if got_pi != expected_pi:
        raise PixelError(f"decoder returned {pi_label(got_pi)} pixels, "
                         f"expected {expected_pi}")
    count = frames if index is None else 1
    if arr.size != count * rows * columns * samples:
        raise PixelError(
            f"decoded {arr.size} samples, expected {count * rows * columns * samples} for "
            f"{count} frame(s) of {columns}x{rows}x{samples}"
        )
    arr = arr.reshape(count, rows, columns, samples)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr
