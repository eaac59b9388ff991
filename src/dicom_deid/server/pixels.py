"""Pixel-level views of stored instances: frames, rendered images, transcoding.

Decoding uses pydicom's pixel handlers with the pylibjpeg plugins (JPEG, JPEG-LS,
JPEG 2000, RLE); nothing here runs unless a client asks for pixels.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels import apply_voi_lut, pixel_array
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from ..engine.inflate import InflateLimitExceeded
from ..engine.pixels.decode import check_decoded_size
from ..engine.pixels.messages import PixelError
from . import errors

UNCOMPRESSED = {ExplicitVRLittleEndian, ImplicitVRLittleEndian}


def read_stored(path: Path, *, stop_before_pixels: bool = False) -> Dataset:
    """A stored instance, read by pydicom within the process's inflate limit.

    STOW and import refuse instances that inflate past the limit, but one may have
    been stored before the limit existed, or under a larger one: reading it is
    refused too, with 400 FAILED_PRECONDITION (the request is sound, the instance is
    what cannot be read, and retrying will not change that) naming the limit.
    """
    try:
        return dcmread(path, stop_before_pixels=stop_before_pixels)
    except InflateLimitExceeded as exc:
        raise errors.ApiError(400, str(exc), "FAILED_PRECONDITION") from None


def number_of_frames(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def _frame_numbers(spec: str, total: int) -> list[int]:
    try:
        numbers = [int(n) for n in spec.split(",")]
    except ValueError:
        raise errors.invalid("frame numbers must be integers") from None
    bad = [n for n in numbers if n < 1 or n > total]
    if bad:
        raise errors.ApiError(404, f"frame {bad[0]} does not exist: the instance has {total}")
    if len(set(numbers)) != len(numbers):
        # Each frame once: ``1,1,1,...`` made one request copy a frame thousands of times.
        raise errors.invalid("frame numbers must not repeat")
    return numbers


def frames(path: Path, spec: str) -> tuple[str, list[bytes]]:
    """Raw frames (uncompressed bytes, or the compressed fragments) and their media type."""
    ds = read_stored(path)
    if "PixelData" not in ds:
        raise errors.ApiError(404, "the instance has no pixel data")
    total = number_of_frames(ds)
    numbers = _frame_numbers(spec, total)
    ts = UID(ds.file_meta.TransferSyntaxUID)
    if not ts.is_transfer_syntax:  # is_compressed would raise ValueError: a 500
        raise errors.ApiError(406, "the frames cannot be read: the instance's transfer "
                              "syntax is not one DICOM defines")
    if ts.is_compressed:
        all_frames = list(generate_frames(ds.PixelData, number_of_frames=total))
        kind = _COMPRESSED_TYPES.get(str(ts), "application/octet-stream")
        return kind, [all_frames[n - 1] for n in numbers]
    data = ds.PixelData
    bits = int(ds.get("BitsAllocated") or 8)
    # The frame size from the image's dimensions, so that the even-length padding byte
    # is not returned as pixel data; bit-packed (1-bit) frames are not byte-aligned.
    frame_len = (int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel") or 1)
                 * bits // 8 if bits % 8 == 0 else len(data) // total)
    out = [bytes(data[(n - 1) * frame_len : n * frame_len]) for n in numbers]
    if not ts.is_little_endian and bits in (16, 32, 64):
        # application/octet-stream frames are little endian (the default syntax).
        out = [np.frombuffer(f, f">u{bits // 8}").astype(f"<u{bits // 8}").tobytes()
               for f in out]
    return "application/octet-stream", out


_COMPRESSED_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}


def to_display(ds: Dataset, arr: np.ndarray) -> np.ndarray:
    """An 8-bit image for viewing: VOI window applied, MONOCHROME1 inverted."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if arr.ndim == 3 and arr.shape[-1] == 3:
        # Already RGB: pydicom's decoding converts YBR_* to RGB by default (as_rgb).
        arr = arr.astype(np.float64)
    else:
        if "RescaleSlope" in ds or "RescaleIntercept" in ds or "WindowCenter" in ds:
            with contextlib.suppress(Exception):
                arr = apply_voi_lut(arr, ds)
        arr = arr.astype(np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    out = scaled.round().astype(np.uint8)
    if photometric == "MONOCHROME1":
        out = 255 - out
    return out


def _decodable(ds: Dataset, frames: int | None) -> None:
    """406 before decoding what would decode beyond ``--max-decoded-mb``."""
    try:
        check_decoded_size(ds, frames)
    except PixelError as exc:
        raise errors.ApiError(406, f"the pixel data cannot be decoded here: {exc}") from None


def rendered(path: Path, frame: int, kind: str) -> bytes:
    """Frame ``frame`` (1-based) as PNG or JPEG bytes."""
    ds = read_stored(path)
    if "PixelData" not in ds:
        raise errors.ApiError(404, "the instance has no pixel data")
    total = number_of_frames(ds)
    _frame_numbers(str(frame), total)
    _decodable(ds, 1)
    try:
        arr = pixel_array(ds, index=frame - 1) if total > 1 else ds.pixel_array
    except Exception as exc:
        raise errors.ApiError(
            406, f"the pixel data cannot be decoded for rendering ({type(exc).__name__})"
        ) from None
    if "PALETTE" in str(ds.get("PhotometricInterpretation", "")):
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, ds)
        arr = (arr / max(1, arr.max()) * 255).astype(np.uint8) if arr.dtype != np.uint8 else arr
    img = Image.fromarray(to_display(ds, arr))
    buf = io.BytesIO()
    if kind == "image/png":
        img.save(buf, format="PNG")
    else:
        img.convert("RGB" if img.mode not in ("L", "RGB") else img.mode).save(
            buf, format="JPEG", quality=90
        )
    return buf.getvalue()


_WORD_BYTES = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def _to_little_endian(ds: Dataset) -> None:
    """Turn a dataset read as big endian into one that writes as little endian.

    pydicom refuses to change byte order on write, so the binary values it keeps as
    raw bytes (pixel data, LUTs, float arrays) are swapped here and each dataset's
    original encoding is reset; numeric VRs were already decoded to Python values.
    """
    for elem in list(ds.iterall()):  # decodes every raw element with the old encoding
        if elem.VR not in _WORD_BYTES or not elem.value:
            continue
        width = _WORD_BYTES[elem.VR]
        if elem.tag == 0x7FE00010:
            width = max(1, int(ds.get("BitsAllocated") or 16) // 8)
        if width > 1:
            data = elem.value[: len(elem.value) // width * width]
            elem.value = np.frombuffer(data, f">u{width}").astype(f"<u{width}").tobytes()

    def reset(node: Dataset) -> None:
        node.set_original_encoding(False, True, node.original_character_set)
        for elem in node:
            if elem.VR == "SQ":
                for item in elem.value:
                    reset(item)

    reset(ds)


def transcode(path: Path, target: str) -> bytes:
    """The instance re-encoded in an uncompressed little-endian transfer syntax."""
    if target not in UNCOMPRESSED:
        raise errors.ApiError(
            406, f"transcoding to transfer syntax {target} is not supported; "
            "ask for transfer-syntax=* or an uncompressed syntax"
        )
    ds = read_stored(path)
    ts = UID(ds.file_meta.TransferSyntaxUID)
    if ts == target:
        return path.read_bytes()
    if ts.is_compressed and "PixelData" in ds:
        _decodable(ds, None)
    try:
        if ts.is_compressed and "PixelData" in ds:
            # Same instance, other encoding: keep its UIDs (pydicom makes new ones by default).
            ds.decompress(generate_instance_uid=False)
        elif not ts.is_little_endian:
            _to_little_endian(ds)
        buf = io.BytesIO()
        ds.file_meta.TransferSyntaxUID = target
        ds.save_as(buf, implicit_vr=target == ImplicitVRLittleEndian, little_endian=True)
    except Exception as exc:
        raise errors.ApiError(
            406, f"the instance cannot be transcoded ({type(exc).__name__})"
        ) from None
    return buf.getvalue()
