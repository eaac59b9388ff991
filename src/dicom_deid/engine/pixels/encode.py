"""Redacted frames back into a dataset.

``encode`` puts a painted array back. Uncompressed sources keep their transfer
syntax. Compressed sources that pydicom 3 can re-encode *losslessly* in the same
syntax (RLE, JPEG-LS Lossless, JPEG 2000 Lossless) are re-encoded, so the file stays
the size it was. Everything else (JPEG baseline/extended/lossless, JPEG-LS
near-lossless, lossy JPEG 2000, HTJ2K, ...) becomes Explicit VR Little Endian:
pydicom has no encoder for the lossless JPEG syntaxes or HTJ2K, and re-encoding a
lossy syntax would add a second generation of loss to a diagnostic image (the
redacted boxes would survive, the anatomy would not improve), so the decoded values
are stored as they are and the loss already suffered is recorded in
LossyImageCompression.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import compress, get_encoder, pack_bits
from pydicom.pixels.encoders.base import ENCODING_PROFILES
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from .decode import (
    KNOWN_PI,
    PIXEL_DATA,
    geometry,
    photometric,
    photometric_after_decode,
    transfer_syntax,
    value_range,
)
from .messages import PixelEncodeError, PixelError, pi_label, safe, ts_label

__all__ = ["encode"]

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
_OFFSET_TABLES = (0x7FE00001, 0x7FE00002)  # Extended Offset Table (+ Lengths)


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


def _reencode(ts: UID, arr: np.ndarray, pi: str, shape: tuple[int, ...]) -> Dataset:
    """A scratch dataset holding ``arr`` compressed in ``ts`` (the caller's is untouched)."""
    frames, rows, columns, samples, allocated, stored, representation = shape
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

    Raises PixelEncodeError on failure; ds is only changed after every new value is built.
    """
    ts = transfer_syntax(ds)
    shape = geometry(ds)
    n_frames, rows, columns, samples, allocated, stored, representation = shape
    source_pi = photometric(ds)
    pi = photometric_after_decode(ds)
    if pi not in KNOWN_PI:
        raise PixelEncodeError(f"PhotometricInterpretation {pi_label(source_pi)} is not supported")
    want = (n_frames, rows, columns, samples)
    if frames.shape != want:
        raise PixelEncodeError(f"array shape {frames.shape} does not match the dataset's {want}")
    if frames.dtype.kind not in "iu" or (frames.dtype.kind == "i") != bool(representation):
        raise PixelEncodeError(f"array dtype {frames.dtype} does not match "
                         f"PixelRepresentation {representation}")
    low, high = value_range(stored, representation)
    if frames.size and (int(frames.min()) < low or int(frames.max()) > high):
        raise PixelEncodeError(f"array values [{int(frames.min())}, {int(frames.max())}] exceed "
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
            pixel = DataElement(PIXEL_DATA, "OB" if allocated <= 8 else "OW",
                                _native_bytes(frames, allocated, ts.is_little_endian))
        elif _can_reencode(ts, coded_pi, samples, representation, allocated, stored):
            scratch = _reencode(ts, frames, coded_pi, shape)
            pixel = scratch["PixelData"]
            offsets = {tag: scratch[tag] for tag in _OFFSET_TABLES if tag in scratch}
        else:
            target = ExplicitVRLittleEndian
            pixel = DataElement(PIXEL_DATA, "OB" if allocated <= 8 else "OW",
                                _native_bytes(frames, allocated, True))
        changes["PhotometricInterpretation"] = coded_pi if target == ts else pi
    except PixelError:
        raise
    except Exception as exc:
        raise PixelEncodeError(f"cannot encode pixel data as {ts_label(target)}: "
                         f"{type(exc).__name__}: {safe(str(exc))}") from None

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
    ds[PIXEL_DATA] = pixel
    ds.file_meta.TransferSyntaxUID = target
    # Setting PixelData by item (above) is what clears pydicom's cached pixel_array.
