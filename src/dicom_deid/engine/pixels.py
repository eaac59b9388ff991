"""Pixel data in and out, for redacting burned-in text.

Redaction paints boxes into the stored pixel values, so the values must come out of
the file and go back into it without any other change:

* ``decode`` gives every frame as one ``(frames, rows, columns, samples)`` array of
  *stored* values (no modality, VOI or palette applied), so what is painted is what
  is written. The one exception is colour: YBR_* data comes out as RGB. pydicom
  converts YBR_FULL/YBR_FULL_422 (``as_rgb``, and JPEG baseline colour is nearly
  always YCbCr inside, whatever the attribute says) and the JPEG 2000 codec undoes
  YBR_ICT/YBR_RCT itself; black is then (0, 0, 0), and RGB is what every writer path
  below can store without a colour transform of its own.
* ``encode`` puts a painted array back. Uncompressed sources keep their transfer
  syntax. Compressed sources that pydicom 3 can re-encode *losslessly* in the same
  syntax (RLE, JPEG-LS Lossless, JPEG 2000 Lossless) are re-encoded, so the file
  stays the size it was. Everything else (JPEG baseline/extended/lossless, JPEG-LS
  near-lossless, lossy JPEG 2000, HTJ2K, ...) becomes Explicit VR Little Endian:
  pydicom has no encoder for the lossless JPEG syntaxes or HTJ2K, and re-encoding a
  lossy syntax would add a second generation of loss to a diagnostic image (the
  redacted boxes would survive, the anatomy would not improve), so the decoded values
  are stored as they are and the loss already suffered is recorded in
  LossyImageCompression.
* ``to_grey8`` and ``fill_value`` are what text detection and painting need.

Errors are ``PixelError`` with a short reason built from numbers, attribute keywords
and transfer syntax UIDs only: a message may end up in logs and reports, and must
never carry a value of the dataset (a codec's own message is kept only with any
quoted text in it that is not a number or a DICOM keyword blanked out).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from pydicom.datadict import keyword_dict
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, compress, get_decoder, get_encoder, pack_bits
from pydicom.pixels.encoders.base import ENCODING_PROFILES
from pydicom.pixels.utils import as_pixel_options
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

__all__ = ["PixelError", "decode", "encode", "fill_value", "photometric_after_decode",
           "to_grey8"]


class PixelError(Exception):
    """Pixel data that cannot be decoded/encoded; message is a short reason with no PHI
    (no values from the dataset other than UIDs of transfer syntaxes / attribute
    keywords / numbers)."""


# Compressed syntaxes that pydicom 3 can write back losslessly, so a redacted image
# keeps its syntax. JPEG-LS Lossless needs pyjpegls, JPEG 2000 pylibjpeg-openjpeg.
_REENCODE = frozenset({RLELossless, JPEGLSLossless, JPEG2000Lossless})

# Syntaxes whose codestreams may be lossy, with the LossyImageCompressionMethod term.
# JPEG-LS near-lossless and JPEG 2000 (.91) can carry a lossless codestream too; we
# cannot tell cheaply and a lossless image marked lossy is the safe error.
_LOSSY_METHOD = {
    "1.2.840.10008.1.2.4.50": "ISO_10918_1",
    "1.2.840.10008.1.2.4.51": "ISO_10918_1",
    "1.2.840.10008.1.2.4.81": "ISO_14495_1",
    "1.2.840.10008.1.2.4.91": "ISO_15444_1",
    "1.2.840.10008.1.2.4.93": "ISO_15444_2",
    "1.2.840.10008.1.2.4.203": "ISO_15444_15",
    "1.2.840.10008.1.2.4.111": "ISO_18181_1",
    "1.2.840.10008.1.2.4.112": "ISO_18181_1",
}

_PIXEL_DATA = 0x7FE00010
_OFFSET_TABLES = (0x7FE00001, 0x7FE00002)  # Extended Offset Table (+ Lengths)
_GREY = ("MONOCHROME1", "MONOCHROME2")
_KNOWN_PI = (*_GREY, "PALETTE COLOR", "RGB")
_UID_RE = re.compile(r"[0-9]+(\.[0-9]+)*")
_QUOTED_RE = re.compile(r"'([^']*)'|\"([^\"]*)\"")
_NUMBER_RE = re.compile(r"[-+]?[0-9][0-9., x()-]*")
_KEYWORDS = frozenset(keyword_dict)
# PS3.3 C.7.6.3.1.2 terms: safe to name in a message, unlike whatever else a file holds.
_PI_TERMS = frozenset({*_KNOWN_PI, "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_422",
                       "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT", "HSV", "ARGB", "CMYK", "XYB"})


# ---------------------------------------------------------------------------- helpers


def _safe(text: str, limit: int = 240) -> str:
    """A codec/pydicom message on one line with quoted non-numbers blanked out.

    pydicom quotes the values it complains about ("invalid literal ... '1A'"); such a
    value comes from the dataset, so only numbers, UIDs and keywords survive.
    """

    def keep(match: re.Match[str]) -> str:
        inner = match.group(1) if match.group(1) is not None else match.group(2)
        ok = _NUMBER_RE.fullmatch(inner) or inner.replace(" ", "") in _KEYWORDS
        return match.group(0) if ok else "'…'"

    one_line = " ".join(_QUOTED_RE.sub(keep, text).split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


def _ts_label(ts: object) -> str:
    """A transfer syntax for a message: its UID (only if it looks like one) and name."""
    text = str(ts)
    if not _UID_RE.fullmatch(text) or len(text) > 64:
        return "a transfer syntax value that is not a UID"
    name = UID(text).name
    return text if name == text else f"{text} ({name})"


def _pi_label(value: str) -> str:
    return value if value in _PI_TERMS else "a non-standard value"


def _transfer_syntax(ds: Dataset) -> UID:
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


def _geometry(ds: Dataset) -> tuple[int, int, int, int, int, int, int]:
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


def _photometric(ds: Dataset) -> str:
    value = str(ds.get("PhotometricInterpretation") or "").strip().upper()
    if not value:
        raise PixelError("PhotometricInterpretation is missing or empty")
    return value


def _check_native_length(ds: Dataset, geometry: tuple[int, ...], pi: str) -> None:
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


def _value_range(stored: int, representation: int) -> tuple[int, int]:
    if representation:
        return -(2 ** (stored - 1)), 2 ** (stored - 1) - 1
    return 0, 2**stored - 1


# ----------------------------------------------------------------------------- decode


def photometric_after_decode(ds: Dataset) -> str:
    """The PhotometricInterpretation that describes decode()'s output (RGB for any
    YBR_*, else unchanged).

    YBR_FULL/YBR_FULL_422 are converted by pydicom (``as_rgb``); YBR_ICT/YBR_RCT are
    undone by the JPEG 2000 codec itself. Either way the array holds RGB.
    """
    pi = _photometric(ds)
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
    if _PIXEL_DATA not in ds:
        for keyword in ("FloatPixelData", "DoubleFloatPixelData"):
            if keyword in ds:
                raise PixelError(f"{keyword} is not supported, only integer PixelData")
        raise PixelError("no PixelData")
    ts = _transfer_syntax(ds)
    geometry = _geometry(ds)
    frames, rows, columns, samples = geometry[:4]
    pi = _photometric(ds)
    expected_pi = photometric_after_decode(ds)
    if expected_pi not in _KNOWN_PI:
        raise PixelError(f"PhotometricInterpretation {_pi_label(pi)} is not supported")
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise PixelError(f"unsupported transfer syntax {_ts_label(ts)}") from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies)
        raise PixelError(f"no decoder plugin for {_ts_label(ts)} (missing: {missing})")
    if not ts.is_encapsulated:
        _check_native_length(ds, geometry, pi)
    elif not isinstance(ds.PixelData, bytes | bytearray) or not ds["PixelData"].value:
        raise PixelError(f"encapsulated pixel data for {_ts_label(ts)} is empty")
    try:
        opts = as_pixel_options(ds, allow_excess_frames=False)
        arr, props = decoder.as_array(ds, validate=True, as_rgb=True, **opts)
    except PixelError:
        raise
    except Exception as exc:  # every codec raises its own kinds; all mean "undecodable"
        raise PixelError(
            f"cannot decode {_ts_label(ts)} pixel data: {type(exc).__name__}: {_safe(str(exc))}"
        ) from None
    got_pi = str(props.get("photometric_interpretation", pi))
    if got_pi != expected_pi:
        raise PixelError(f"decoder returned {_pi_label(got_pi)} pixels, "
                         f"expected {expected_pi}")
    if arr.size != frames * rows * columns * samples:
        raise PixelError(
            f"decoded {arr.size} samples, expected {frames * rows * columns * samples} for "
            f"{frames} frame(s) of {columns}x{rows}x{samples}"
        )
    arr = arr.reshape(frames, rows, columns, samples)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


# -------------------------------------------------------------------- detection, paint


def _luma(rgb: np.ndarray) -> np.ndarray:
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
                             f"{_safe(str(exc))}") from None
        planes = _luma(rgb)
        wide, low, high = rgb.dtype.itemsize > 1, 0.0, 255.0
    else:
        _, _, _, _, _, stored, representation = _geometry(ds)
        planes = _luma(frames) if frames.shape[-1] == 3 else frames[..., 0]
        low, high = (float(v) for v in _value_range(stored, representation))
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


def _palette_darkest(ds: Dataset) -> int:
    """The stored value whose palette entry has the smallest R+G+B."""
    try:
        entries, first = (int(v) for v in ds.RedPaletteColorLookupTableDescriptor[:2])
        _, _, _, _, _, stored, representation = _geometry(ds)
        low, high = _value_range(stored, representation)
        candidates = np.arange(max(first, low), min(first + (entries or 65536), high + 1))
        if not candidates.size:
            raise PixelError("palette descriptor maps no stored value")
        dtype = np.int32 if representation else np.uint32
        rgb = apply_color_lut(candidates.astype(dtype), ds)
    except PixelError:
        raise
    except Exception as exc:
        raise PixelError(f"cannot read the palette: {type(exc).__name__}: "
                         f"{_safe(str(exc))}") from None
    brightness = rgb[..., :3].astype(np.int64).sum(axis=-1)
    return int(candidates[int(np.argmin(brightness))])


def fill_value(ds: Dataset, frames: np.ndarray) -> int | tuple[int, ...]:
    """What to paint redacted pixels with in stored-value space: 'black'.

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
    raise PixelError(f"PhotometricInterpretation {_pi_label(pi)} is not supported")


# ----------------------------------------------------------------------------- encode


def _native_bytes(frames: np.ndarray, allocated: int, little: bool) -> bytes:
    """Frames as native (uncompressed) Pixel Data, colour by pixel (planar 0)."""
    if allocated == 1:
        return pack_bits(frames.ravel(), pad=True)
    kind = "i" if frames.dtype.kind == "i" else "u"
    dtype = np.dtype(f"{'<' if little else '>'}{kind}{allocated // 8}")
    data = frames.astype(dtype, copy=False).tobytes()
    return data + b"\0" if len(data) % 2 else data


def _can_reencode(ts: UID, pi: str, samples: int, representation: int, allocated: int,
                  stored: int) -> bool:
    """Whether pydicom has an available encoder for ``ts`` and this kind of image.

    pydicom's encoding profiles are narrower than the standard in places (RLE only
    up to 16 bits, for one), so a 32-bit RLE image is written native instead.
    """
    if ts not in _REENCODE or not get_encoder(ts).is_available:
        return False
    return any(
        pi == p and samples == s and representation in r and allocated in a and stored in b
        for p, s, r, a, b in ENCODING_PROFILES.get(ts, [])
    )


def _reencode(ts: UID, arr: np.ndarray, pi: str, geometry: tuple[int, ...]) -> Dataset:
    """A scratch dataset holding ``arr`` compressed in ``ts`` (the caller's is untouched)."""
    frames, rows, columns, samples, allocated, stored, representation = geometry
    scratch = Dataset()
    scratch.file_meta = FileMetaDataset()
    scratch.file_meta.TransferSyntaxUID = ts
    scratch.Rows, scratch.Columns, scratch.SamplesPerPixel = rows, columns, samples
    scratch.PhotometricInterpretation = pi
    if samples > 1:
        scratch.PlanarConfiguration = 0
    scratch.NumberOfFrames = frames
    scratch.BitsAllocated, scratch.BitsStored = allocated, stored
    scratch.HighBit, scratch.PixelRepresentation = stored - 1, representation
    shaped = arr[0] if frames == 1 else arr
    shaped = shaped[..., 0] if samples == 1 else shaped
    compress(scratch, ts, np.ascontiguousarray(shaped), generate_instance_uid=False)
    return scratch


def encode(ds: Dataset, frames: np.ndarray) -> None:
    """Write redacted frames (same shape/dtype as decode() gave) back into ds, in place.

    - uncompressed source (Explicit/Implicit VR LE, Explicit VR BE, Deflated): the
      transfer syntax is kept (big endian stays big endian: this project writes it,
      and turning it little endian would need every other OW element swapped too),
      PixelData native, colour by pixel (PlanarConfiguration 0); YBR_FULL(_422) is
      stored as RGB.
    - RLE Lossless, JPEG-LS Lossless (pyjpegls) and JPEG 2000 Lossless
      (pylibjpeg-openjpeg): re-encoded in that same syntax with ``compress``; a
      YBR_RCT source stays YBR_RCT (the codec applies the reversible colour
      transform), other colour is RGB. Images outside pydicom's encoding profile
      for the syntax (32-bit RLE) go native as below.
    - every other compressed source (JPEG Baseline .50, Extended .51, Lossless
      .57/.70, JPEG-LS near-lossless .81, JPEG 2000 .91, HTJ2K, ...): Explicit VR
      Little Endian native, since pydicom has no lossless encoder for the syntax and
      re-encoding a lossy one would lose more. PhotometricInterpretation becomes
      photometric_after_decode(ds), and LossyImageCompression '01' is kept or set if
      the source was lossy (LossyImageCompressionRatio/Method kept; the Method is
      added from the source syntax when absent).
    - NumberOfFrames is kept; encapsulated → native also drops the Extended Offset
      Table. The SOP Instance UID is never changed here (UIDs are the caller's).

    Raises PixelError on failure; ds is only changed after every new value is built.
    """
    ts = _transfer_syntax(ds)
    geometry = _geometry(ds)
    n_frames, rows, columns, samples, allocated, stored, representation = geometry
    source_pi = _photometric(ds)
    pi = photometric_after_decode(ds)
    if pi not in _KNOWN_PI:
        raise PixelError(f"PhotometricInterpretation {_pi_label(source_pi)} is not supported")
    want = (n_frames, rows, columns, samples)
    if frames.shape != want:
        raise PixelError(f"array shape {frames.shape} does not match the dataset's {want}")
    if frames.dtype.kind not in "iu" or (frames.dtype.kind == "i") != bool(representation):
        raise PixelError(f"array dtype {frames.dtype} does not match "
                         f"PixelRepresentation {representation}")
    low, high = _value_range(stored, representation)
    if frames.size and (int(frames.min()) < low or int(frames.max()) > high):
        raise PixelError(f"array values [{int(frames.min())}, {int(frames.max())}] exceed "
                         f"BitsStored {stored} range [{low}, {high}]")

    # JPEG 2000 Lossless keeps a YBR_RCT source's reversible colour transform.
    coded_pi = "YBR_RCT" if ts == JPEG2000Lossless and source_pi == "YBR_RCT" else pi
    changes: dict[str, Any] = {"HighBit": stored - 1}
    if samples > 1:
        changes["PlanarConfiguration"] = 0
    target = ts
    offsets: dict[int, DataElement] = {}
    try:
        if not ts.is_encapsulated:
            pixel = DataElement(_PIXEL_DATA, "OB" if allocated <= 8 else "OW",
                                _native_bytes(frames, allocated, ts.is_little_endian))
        elif _can_reencode(ts, coded_pi, samples, representation, allocated, stored):
            scratch = _reencode(ts, frames, coded_pi, geometry)
            pixel = scratch["PixelData"]
            offsets = {tag: scratch[tag] for tag in _OFFSET_TABLES if tag in scratch}
        else:
            target = ExplicitVRLittleEndian
            pixel = DataElement(_PIXEL_DATA, "OB" if allocated <= 8 else "OW",
                                _native_bytes(frames, allocated, True))
        changes["PhotometricInterpretation"] = coded_pi if target == ts else pi
    except PixelError:
        raise
    except Exception as exc:
        raise PixelError(f"cannot encode pixel data as {_ts_label(target)}: "
                         f"{type(exc).__name__}: {_safe(str(exc))}") from None

    method = _LOSSY_METHOD.get(str(ts))
    if method is not None or str(ds.get("LossyImageCompression", "")).strip() == "01":
        changes["LossyImageCompression"] = "01"
        if method is not None and "LossyImageCompressionMethod" not in ds:
            changes["LossyImageCompressionMethod"] = method

    # Everything is built: assign.
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    if samples == 1 and "PlanarConfiguration" in ds:
        del ds.PlanarConfiguration
    for tag in _OFFSET_TABLES:
        if tag in ds:
            del ds[tag]
    for tag, element in offsets.items():
        ds[tag] = element
    pixel.is_undefined_length = target.is_encapsulated
    ds[_PIXEL_DATA] = pixel
    ds.file_meta.TransferSyntaxUID = target
    ds._pixel_array = None  # pydicom's cached pixel_array, as its own setters do
    ds._pixel_id = {}
