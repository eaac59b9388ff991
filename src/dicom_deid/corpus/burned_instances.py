"""DICOM instances with text burned into their pixels, in every encoding a redactor meets.

:mod:`dicom_deid.corpus.burned_text` draws the text and knows where it went; this
module wraps such images into complete Part 10 instances, because a burned-in text
redactor does not see images, it sees *instances*: pixel data that must be decoded
first (and re-encoded after), whose stored values mean different things depending on
the photometric interpretation, the bit depth and the signedness, and whose header
holds the very names and dates that the pixels repeat.

Each photometric interpretation stands for a real source of burned-in text:

* ``MONOCHROME2`` -- the common grey case: ultrasound, secondary captures of grey
  screens, and (at 12/16 bits, signed or not) grey modalities whose vendor stamped
  annotations into the image;
* ``MONOCHROME1`` -- radiography (CR/DX, mammography) where white is 0; the stored
  values are inverted so the image *displays* the same, which is where a redactor that
  paints "black" boxes in stored values paints white ones;
* ``RGB`` -- colour ultrasound (Doppler), screen captures, photographs of documents;
  the text is drawn in a colour (white, yellow, green, cyan) on a tinted background,
  as ultrasound consoles do. Under JPEG baseline it stays untransformed RGB (as some
  capture devices write it, and some decoders mis-handle); under JPEG 2000 it is coded
  with the component transform, so the header says YBR_RCT / YBR_ICT as PS3.5 requires;
* ``YBR_FULL`` -- the same image stored in YCbCr, as some ultrasound vendors and
  RLE-writing archives do; stored values are not RGB, so a redactor must convert;
* ``YBR_FULL_422`` -- what colour JPEG baseline (lossy, chroma-subsampled) files say
  they hold; it only occurs compressed, so it is only produced as ``jpeg-baseline``;
* ``PALETTE COLOR`` -- 8-bit indices into a colour lookup table (older ultrasound and
  nuclear-medicine captures); the stored value of a pixel is not its brightness.

And each transfer syntax stands for a way the pixel data arrives: native (explicit,
implicit VR, deflated), RLE (common in ultrasound archives), JPEG baseline and extended
(lossy; the bulk of ultrasound and endoscopy), JPEG lossless (process 14, SV1 and any
predictor; CR/DX and PACS migrations), JPEG-LS (lossless and near-lossless) and JPEG
2000 (lossless and lossy; common in archives and in cloud stores). pydicom's own
encoders are used where it has them (RLE, JPEG 2000 through pylibjpeg-openjpeg); the
JPEG family and JPEG-LS are made by Debian's dcmtk command-line tools, the most common
real-world writers of those syntaxes; implicit VR and deflated need no encoder, pydicom
writes them from the dataset's transfer syntax when the instance is written.

The header is an ultrasound image (single- or multi-frame) or, for any other
``modality``, a secondary capture, and its PHI values are those that the drawn PHI
strings spell, so a redactor that matches an instance's own header values against the
text it reads has something to find. Everything follows from the seed: the same
arguments give the same bytes (for given pydicom, NumPy and dcmtk versions).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import convert_color_space
from pydicom.tag import Tag
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    MultiFrameTrueColorSecondaryCaptureImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
)

from .burned_text import TextRegion, text_image
from .ct import _ds

#: Short name -> transfer syntax UID, for every syntax :func:`burned_instance` makes.
SYNTAXES: dict[str, str] = {
    "explicit": ExplicitVRLittleEndian,
    "implicit": ImplicitVRLittleEndian,
    "deflated": DeflatedExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpeg-baseline": JPEGBaseline8Bit,
    "jpeg-extended": JPEGExtended12Bit,
    "jpeg-lossless": JPEGLosslessSV1,
    "jpeg-lossless-p14": JPEGLossless,
    "jpeg-ls": JPEGLSLossless,
    "jpeg-ls-near": JPEGLSNearLossless,
    "j2k-lossless": JPEG2000Lossless,
    "j2k": JPEG2000,
}

#: Every photometric interpretation :func:`burned_instance` makes.
PHOTOMETRICS = ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422",
                "PALETTE COLOR")

#: Syntaxes whose decoded pixels differ from :attr:`BurnedInstance.pixels`.
LOSSY = frozenset({"jpeg-baseline", "jpeg-extended", "jpeg-ls-near", "j2k"})

# The header values that the PHI strings of burned_text spell.
PHI_VALUES: dict[str, str] = {
    "PatientName": "SYNTHETIC^ALPHA",
    "ReferringPhysicianName": "PHANTOM^BRAVO",
    "PatientBirthDate": "19610412",
    "PatientID": "48213377",
    "AccessionNumber": "A1029384",
    "InstitutionName": "ST MARY CLINIC",
    "StudyDate": "20210307",
    "StudyTime": "142200",
    "OtherPatientIDs": "7721-3340",
}

# Ink colours of coloured text (ultrasound consoles annotate in these), and the warm
# grey the background is tinted with.
_INKS = {"white": (1.0, 1.0, 1.0), "yellow": (1.0, 1.0, 0.0), "green": (0.0, 1.0, 0.0),
         "cyan": (0.0, 1.0, 1.0)}
_TINT = np.array([1.0, 0.92, 0.80])
_FRAME_TIME_MS = "33.3"  # 30 frames a second, a usual ultrasound cine rate
_JPEG_QUALITY = 90
_JLS_NEAR = 2
_J2K_RATIO = 10.0

# Which tool makes which syntax, and with what arguments (dcmtk 3.6). "+un" keeps the
# SOP Instance UID (dcmtk would otherwise draw a random one for lossy output, and the
# corpus would no longer be reproducible); "+sr" scales lossy input by its bit range
# rather than by its min/max, which keeps stored values where they were.
_DCMTK: dict[str, tuple[str, ...]] = {
    "jpeg-baseline": ("dcmcjpeg", "+eb", "+q", str(_JPEG_QUALITY), "+sr", "+un"),
    "jpeg-extended": ("dcmcjpeg", "+ee", "+q", str(_JPEG_QUALITY), "+sr", "+un"),
    "jpeg-lossless": ("dcmcjpeg", "+e1", "+un"),
    "jpeg-lossless-p14": ("dcmcjpeg", "+el", "+sv", "6", "+un"),
    "jpeg-ls": ("dcmcjpls", "+el", "+un"),
    "jpeg-ls-near": ("dcmcjpls", "+en", "+md", str(_JLS_NEAR), "+un"),
}
# JPEG baseline colour: YBR_FULL_422 is dcmcjpeg's default (YCbCr, 4:2:2); an RGB
# instance keeps its components untransformed (+cr), as some capture devices write it.
_BASELINE_RGB = ("+cr",)


@dataclass(frozen=True)
class BurnedInstance:
    """One generated instance, with the truth a redactor is scored against.

    ``dataset`` is complete (file meta included) and writable with
    ``dcmwrite(..., enforce_file_format=True)``. ``regions`` are the boxes of the drawn
    strings in pixel coordinates, the same on every frame. ``pixels`` is what was given
    to the encoder, shaped (frames, rows, columns, samples): for lossless syntaxes it
    equals the decoded pixel data, for lossy ones it is the intended image. It holds
    stored values in the dataset's photometric interpretation (YCbCr for YBR_FULL,
    indices for PALETTE COLOR: compare with ``pixel_array(ds, as_rgb=False)``), except
    where the codec changes colour space itself (YBR_FULL_422 from JPEG baseline, and
    YBR_RCT / YBR_ICT from JPEG 2000 of RGB): there it is the RGB image the encoder
    was given, which is also what decoders return.
    """

    dataset: Dataset
    regions: tuple[TextRegion, ...]
    pixels: np.ndarray


def _uid(seed: int, *parts: object) -> str:
    """A 2.25 UID (a name-based UUID as an integer) that depends only on the seed and
    the path to the object it names; UUIDs need no registered root, and a name-based
    one is the same on every machine."""
    name = "/".join(["dicom-deid-burned", str(seed), *map(str, parts)])
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, name).int}"


def _validate(photometric: str, bits: int, signed: bool, syntax: str, frames: int,
              modality: str) -> None:
    """Refuse combinations that the standard (or the codecs) do not allow, clearly."""
    if photometric not in PHOTOMETRICS:
        raise ValueError(f"photometric {photometric!r} is not one of {PHOTOMETRICS}")
    if syntax not in SYNTAXES:
        raise ValueError(f"syntax {syntax!r} is not one of {tuple(SYNTAXES)}")
    if bits not in (8, 12, 16):
        raise ValueError(f"bits must be 8, 12 or 16, not {bits}")
    if frames < 1:
        raise ValueError(f"frames must be at least 1, not {frames}")
    grey = photometric in ("MONOCHROME1", "MONOCHROME2")
    if not grey and bits != 8:
        raise ValueError(f"{photometric} is generated with 8 bits only, not {bits}")
    if signed and (not grey or bits == 8):
        raise ValueError("only 12- and 16-bit grey pixels are generated signed, not "
                         f"{bits}-bit {photometric}")
    if photometric == "YBR_FULL_422" and syntax != "jpeg-baseline":
        raise ValueError("YBR_FULL_422 occurs only as JPEG baseline output: use "
                         "syntax='jpeg-baseline' (or RGB/YBR_FULL for other syntaxes)")
    if syntax == "jpeg-baseline" and (bits != 8 or signed):
        raise ValueError("jpeg-baseline holds 8-bit unsigned samples only")
    if syntax == "jpeg-baseline" and photometric == "YBR_FULL":
        raise ValueError("jpeg-baseline does not hold YBR_FULL (4:4:4 YCbCr is not a "
                         "standard baseline layout): use YBR_FULL_422 or RGB")
    if syntax == "jpeg-extended" and (not grey or bits == 16 or signed):
        raise ValueError("jpeg-extended is generated for unsigned 8- or 12-bit grey only")
    if signed and syntax == "jpeg-ls-near":
        raise ValueError("jpeg-ls-near of signed pixels is not produced: dcmcjpls refuses "
                         "signed near-lossless input")
    if photometric == "PALETTE COLOR" and syntax in LOSSY:
        raise ValueError("lossy compression of palette indices is not allowed "
                         f"(syntax {syntax!r})")
    if modality == "US" and (bits != 8 or signed or photometric == "MONOCHROME1"):
        raise ValueError("the ultrasound IOD allows 8-bit unsigned pixels and no "
                         "MONOCHROME1: use modality='OT' (secondary capture)")
    if modality != "US" and frames > 1:
        if photometric == "PALETTE COLOR":
            raise ValueError("no multi-frame secondary capture holds PALETTE COLOR: use "
                             "modality='US'")
        if photometric == "MONOCHROME1":
            raise ValueError("multi-frame secondary captures are MONOCHROME2 only")
        if signed:
            raise ValueError("multi-frame grayscale secondary captures are unsigned")


def _frames_grey(seed: int, frames: int, background: str, width: int, height: int,
                 strings: int) -> tuple[np.ndarray, np.ndarray, list[TextRegion]]:
    """(under, ink, regions): the background of each frame, float (F, R, C) in 0..255,
    with each text box showing the first frame's background, and the signed ink layer.

    A cine loop's annotations are static while the image moves: so every frame gets its
    own background (the first one is the seed's own, so frame 0 is exactly the
    single-frame image), but inside the text boxes all frames show the same pixels.
    """
    image, regions = text_image(seed, width, height, background=background, strings=strings)
    clean, _ = text_image(seed, width, height, background=background, strings=0)
    ink = image.astype(np.float64) - clean.astype(np.float64)
    under = np.stack([clean] + [
        text_image(seed * 1000 + f, width, height, background=background, strings=0)[0]
        for f in range(1, frames)]).astype(np.float64)
    for region in regions:
        left, top, right, bottom = region.box
        under[:, top:bottom, left:right] = clean[top:bottom, left:right]
    return under, ink, regions


def _grey_stored(grey8: np.ndarray, photometric: str, bits: int, signed: bool) -> np.ndarray:
    """8-bit grey levels as stored values: scaled to ``bits``, inverted for MONOCHROME1
    (so the image displays the same), offset to span negative values if ``signed``."""
    top = (1 << bits) - 1
    values = np.rint(grey8.astype(np.float64) * top / 255.0).astype(np.int64)
    if photometric == "MONOCHROME1":
        values = top - values
    if signed:
        values -= 1 << (bits - 1)
    dtype = np.uint8 if bits == 8 else np.int16 if signed else np.uint16
    return values.astype(dtype)[..., np.newaxis]


def _palette() -> np.ndarray:
    """A hot-metal-like 256-entry map, 16 bits per entry, shape (3, 256): red rises
    first, then green, then blue, so every channel is non-decreasing and luma increases
    strictly with the index -- a non-identity map under which grey still reads as grey."""
    t = np.arange(256) / 255.0
    ramps = [np.clip(t * 3 - k, 0.0, 1.0) for k in range(3)]
    return np.rint(np.stack(ramps) * 65535).astype(np.uint16)


def _rgb(under: np.ndarray, ink: np.ndarray, seed: int) -> np.ndarray:
    """Background tinted warm grey, ink in a colour picked by the seed, uint8 RGB."""
    name = sorted(_INKS)[int(np.random.default_rng([seed, 7]).integers(len(_INKS)))]
    colour = np.array(_INKS[name])
    rgb = under[..., np.newaxis] * _TINT + ink[np.newaxis, ..., np.newaxis] * colour
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _header(seed: int, sop_class: str, modality: str, variant: str) -> Dataset:
    """Patient, study, series, equipment and image values of an ultrasound / SC image.

    One seed is one patient and study, one series per modality; the instance UID also
    names the ``variant`` (every other argument), so the variants of a seed can share a
    store without overwriting one another.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = _uid(seed, "instance", modality, variant)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"] if modality == "US" else ["DERIVED", "SECONDARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = PHI_VALUES["StudyDate"]
    ds.StudyTime = PHI_VALUES["StudyTime"]
    ds.SeriesTime = ds.ContentTime = "142300"
    ds.AccessionNumber = PHI_VALUES["AccessionNumber"]
    ds.Modality = modality
    if modality != "US":
        ds.ConversionType = "WSD"
    ds.Manufacturer = "dicom-deid synthetic"
    ds.InstitutionName = PHI_VALUES["InstitutionName"]
    ds.ReferringPhysicianName = PHI_VALUES["ReferringPhysicianName"]
    ds.StudyDescription = "US ABDOMEN" if modality == "US" else "SCREEN CAPTURE"
    ds.SeriesDescription = "BURNED-IN TEXT"
    ds.PatientName = PHI_VALUES["PatientName"]
    ds.PatientID = PHI_VALUES["PatientID"]
    ds.PatientBirthDate = PHI_VALUES["PatientBirthDate"]
    ds.PatientSex = "O"
    ds.OtherPatientIDs = PHI_VALUES["OtherPatientIDs"]
    ds.StudyInstanceUID = _uid(seed, "study")
    ds.SeriesInstanceUID = _uid(seed, "series", modality)
    ds.StudyID = "1"
    ds.SeriesNumber = 1 if modality == "US" else 2
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "YES"
    return ds


def _sop_class(modality: str, photometric: str, bits: int, frames: int) -> str:
    """The storage class: ultrasound (single- or multi-frame) for "US", where most
    burned-in text lives; otherwise a secondary capture, the class screen grabs and
    scanned documents arrive as (the multi-frame ones split by grey byte / grey word /
    true colour, as the standard does)."""
    if modality == "US":
        return UltrasoundMultiFrameImageStorage if frames > 1 else UltrasoundImageStorage
    if frames == 1:
        return SecondaryCaptureImageStorage
    if photometric == "MONOCHROME2":
        if bits == 8:
            return MultiFrameGrayscaleByteSecondaryCaptureImageStorage
        return MultiFrameGrayscaleWordSecondaryCaptureImageStorage
    return MultiFrameTrueColorSecondaryCaptureImageStorage


def _dcmtk(ds: Dataset, syntax: str, photometric: str) -> Dataset:
    """``ds`` (explicit VR, native pixels) encoded by a dcmtk tool, read back."""
    program, *args = _DCMTK[syntax]
    if syntax == "jpeg-baseline" and photometric == "RGB":
        args += _BASELINE_RGB
    path = shutil.which(program, path=f"/usr/bin:{os.environ.get('PATH', '')}")
    if path is None:
        raise RuntimeError(f"{program} not found: install the Debian package dcmtk "
                           f"(needed for syntax {syntax!r})")
    with tempfile.TemporaryDirectory(prefix="burned-") as tmp:
        src, dst = Path(tmp, "in.dcm"), Path(tmp, "out.dcm")
        dcmwrite(src, ds, enforce_file_format=True)
        done = subprocess.run([path, *args, str(src), str(dst)], capture_output=True,
                              text=True, check=False)
        if done.returncode != 0 or not dst.exists():
            raise RuntimeError(f"{program} {' '.join(args)} failed for syntax {syntax!r} "
                               f"({done.returncode}): {done.stderr.strip()}")
        out = dcmread(BytesIO(dst.read_bytes()))
    # Keep the generator's own file meta (dcmtk writes its implementation UID), with the
    # new transfer syntax.
    meta = ds.file_meta
    meta.TransferSyntaxUID = out.file_meta.TransferSyntaxUID
    out.file_meta = meta
    return out


def _mark_lossy(ds: Dataset, raw_bytes: int, what: str) -> None:
    """Record lossy compression the way dcmtk does for JPEG (PS3.3 C.7.6.1.1.5): a
    DERIVED image type, the ratio and method, a derivation description and code."""
    ratio = _ds(round(raw_bytes / len(ds.PixelData), 4))
    ds.ImageType = ["DERIVED", *list(ds.ImageType)[1:]]
    ds.DerivationDescription = f"Lossy compression with {what}, compression ratio {ratio}"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "113040", "DCM"
    code.CodeMeaning = "Lossy Compression"
    ds.DerivationCodeSequence = [code]
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = ratio
    ds.LossyImageCompressionMethod = "ISO_15444_1"


def burned_instance(seed: int, *, photometric: str = "MONOCHROME2", bits: int = 8,
                    signed: bool = False, syntax: str = "explicit", frames: int = 1,
                    background: str = "speckle", width: int = 640, height: int = 480,
                    strings: int = 6, modality: str = "US") -> BurnedInstance:
    """An instance whose pixels carry ``strings`` burned-in strings, and their boxes.

    ``photometric``, ``bits`` and ``signed`` choose the stored values; ``syntax`` (a key
    of :data:`SYNTAXES`) the encoding; ``frames`` > 1 makes a cine loop whose text stays
    put while the image under it moves; ``modality`` "US" makes an ultrasound image
    (8-bit unsigned only, as the US IOD requires), anything else a secondary capture
    with that Modality. Combinations that the standard or the codecs do not allow raise
    ValueError; a missing dcmtk tool raises RuntimeError.
    """
    _validate(photometric, bits, signed, syntax, frames, modality)
    under, ink, regions = _frames_grey(seed, frames, background, width, height, strings)
    grey8 = np.clip(np.rint(under + ink), 0, 255).astype(np.uint8)

    colour = photometric in ("RGB", "YBR_FULL", "YBR_FULL_422")
    if photometric == "PALETTE COLOR":
        pixels = grey8[..., np.newaxis]
    elif colour:
        pixels = _rgb(under, ink, seed)
        if photometric == "YBR_FULL":
            pixels = convert_color_space(pixels, "RGB", "YBR_FULL")
    else:
        pixels = _grey_stored(grey8, photometric, bits, signed)

    variant = (f"{photometric}/{bits}/{signed}/{syntax}/{frames}/{background}/{width}x{height}"
               f"/{strings}")
    ds = _header(seed, _sop_class(modality, photometric, bits, frames), modality, variant)
    ds.SamplesPerPixel = 3 if colour else 1
    # dcmtk converts RGB to YCbCr 4:2:2 itself while encoding JPEG baseline.
    ds.PhotometricInterpretation = "RGB" if photometric == "YBR_FULL_422" else photometric
    if colour:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.FrameIncrementPointer = Tag("FrameTime")
        ds.FrameTime = _FRAME_TIME_MS
        ds.CineRate = 30
    ds.Rows, ds.Columns = height, width
    ds.BitsAllocated = 8 if bits == 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if signed else 0
    if photometric == "PALETTE COLOR":
        lut = _palette()
        for i, channel in enumerate(("Red", "Green", "Blue")):
            setattr(ds, f"{channel}PaletteColorLookupTableDescriptor", [256, 0, 16])
            setattr(ds, f"{channel}PaletteColorLookupTableData", lut[i].astype("<u2").tobytes())
    if not colour and photometric != "PALETTE COLOR":
        if modality != "US":  # SC images have a modality LUT; the US IOD has none
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "US"
        if bits > 8:  # a window over the whole range, so viewers show what was drawn
            low = -(1 << (bits - 1)) if signed else 0
            ds.WindowCenter = str(low + (1 << bits) // 2)
            ds.WindowWidth = str(1 << bits)
    ds.LossyImageCompression = "00"
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OB" if bits == 8 else "OW"

    if syntax in ("explicit", "implicit", "deflated"):
        ds.file_meta.TransferSyntaxUID = UID(SYNTAXES[syntax])
    elif syntax in _DCMTK:
        ds = _dcmtk(ds, syntax, photometric)
    else:  # pydicom's own encoders: RLE, JPEG 2000
        if photometric == "RGB" and syntax.startswith("j2k"):
            # JPEG 2000 colour uses its reversible / irreversible component transform
            ds.PhotometricInterpretation = "YBR_RCT" if syntax == "j2k-lossless" else "YBR_ICT"
        options = {"j2k_cr": [_J2K_RATIO]} if syntax == "j2k" else {}
        ds.compress(SYNTAXES[syntax], generate_instance_uid=False, **options)
        if syntax == "j2k":
            _mark_lossy(ds, pixels.nbytes, "JPEG 2000 irreversible wavelet")
    # A Part 10 preamble, so clients that write datasets as they are (dicomweb-client)
    # send files a store accepts.
    ds.preamble = b"\0" * 128
    return BurnedInstance(ds, tuple(regions), pixels)
