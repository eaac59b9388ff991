"""Pixel data in and out for burned-in text redaction, on real files.

pydicom's bundled test files cover the photometric interpretations and transfer
syntaxes met in practice; dcmtk makes the few that pydicom does not ship (JPEG lossless
.57, colour JPEG-LS lossless) and, as an independent decoder, checks what we re-encode.
Every case round-trips: decode, paint a 10x10 block with fill_value, encode, write,
re-read, decode: the painted array must come back exactly, in the expected syntax.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread, dcmwrite
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, encapsulate_extended, generate_frames
from pydicom.pixels import apply_color_lut
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from dicom_deid.engine.pixels.decode import decode, decode_frame, photometric_after_decode
from dicom_deid.engine.pixels.encode import encode
from dicom_deid.engine.pixels.fill import fill_value
from dicom_deid.engine.pixels.grey import array_grey8, frame_grey8, to_grey8
from dicom_deid.engine.pixels.messages import PixelError

# pydicom warns about oddities of some bundled files (JFIF markers, padding, ...).
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

DCMDUMP = "/usr/bin/dcmdump"
EXPLICIT, IMPLICIT, BIG = ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian
NAME, PID = "Secretname^Jane", "PID-31337-Q"

# (bundled file, decoded shape, transfer syntax after encode, LossyImageCompression after)
CASES = [
    ("image_dfl.dcm", (1, 512, 512, 1), DeflatedExplicitVRLittleEndian, None),  # MONO2 8-bit
    ("CT_small.dcm", (1, 128, 128, 1), EXPLICIT, None),  # signed 16-bit
    ("examples_overlay.dcm", (1, 300, 484, 1), EXPLICIT, None),  # 12 of 16 bits
    ("MR_small_implicit.dcm", (1, 64, 64, 1), IMPLICIT, None),
    ("MR_small_bigendian.dcm", (1, 64, 64, 1), BIG, None),
    ("MR_small_padded.dcm", (1, 64, 64, 1), EXPLICIT, None),  # trailing padding dropped
    ("rtdose.dcm", (15, 10, 10, 1), IMPLICIT, None),  # multi-frame, 32-bit
    ("rtdose_expb.dcm", (15, 10, 10, 1), BIG, None),
    ("liver_1frame.dcm", (1, 512, 512, 1), EXPLICIT, "00"),  # 1-bit
    ("examples_rgb_color.dcm", (1, 240, 320, 3), EXPLICIT, None),  # RGB planar 0
    ("ExplVR_BigEnd.dcm", (1, 60, 80, 3), BIG, None),  # RGB planar 1
    ("SC_ybr_full_422_uncompressed.dcm", (1, 100, 100, 3), EXPLICIT, "01"),
    ("examples_palette.dcm", (1, 350, 800, 1), EXPLICIT, "00"),
    ("MR_small_RLE.dcm", (1, 64, 64, 1), RLELossless, None),
    ("SC_rgb_rle_2frame.dcm", (2, 100, 100, 3), RLELossless, None),
    ("SC_rgb_rle_16bit.dcm", (1, 100, 100, 3), RLELossless, None),
    ("rtdose_rle.dcm", (15, 10, 10, 1), EXPLICIT, None),  # 32-bit: outside pydicom's RLE
    ("MR_small_jpeg_ls_lossless.dcm", (1, 64, 64, 1), JPEGLSLossless, None),
    ("MR_small_jp2klossless.dcm", (1, 64, 64, 1), JPEG2000Lossless, None),
    ("examples_jpeg2k.dcm", (1, 480, 640, 3), JPEG2000Lossless, "00"),  # YBR_RCT
    ("JPEG2000.dcm", (1, 1024, 256, 1), EXPLICIT, "01"),  # J2K lossy, signed
    ("SC_rgb_gdcm_KY.dcm", (1, 100, 100, 3), EXPLICIT, "01"),  # J2K lossy RGB
    ("SC_rgb_jpeg_dcmtk.dcm", (1, 100, 100, 3), EXPLICIT, "01"),  # baseline YBR_FULL
    ("SC_rgb_dcmtk_+eb+cy+np.dcm", (1, 100, 100, 3), EXPLICIT, "01"),  # YBR_FULL_422
    ("SC_rgb_jpeg.dcm", (1, 256, 256, 3), EXPLICIT, "01"),  # baseline labelled RGB
    ("examples_ybr_color.dcm", (30, 240, 320, 3), EXPLICIT, "01"),  # multi-frame baseline
    ("JPGExtended.dcm", (1, 1024, 256, 1), EXPLICIT, "01"),  # 12-bit extended
    ("SC_rgb_jpeg_gdcm.dcm", (1, 100, 100, 3), EXPLICIT, None),  # JPEG lossless SV1
    ("JPEGLSNearLossless_16.dcm", (1, 50, 10, 1), EXPLICIT, "01"),
    ("SC_rgb_jls_lossy_line.dcm", (1, 100, 100, 3), EXPLICIT, "01"),
]


def _read(name: str) -> Dataset:
    return dcmread(get_testdata_file(name))


def _write(ds: Dataset) -> bytes:
    for _ in ds.iterall():  # some bundled bodies are implicit VR under an explicit syntax
        pass
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def _dcmdump_ok(data: bytes, path: Path) -> None:
    if not Path(DCMDUMP).exists():
        pytest.skip("dcmtk's dcmdump is not installed")
    path.write_bytes(data)
    run = subprocess.run([DCMDUMP, str(path)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, timeout=60)
    errors = run.stderr.decode(errors="replace")
    assert run.returncode == 0 and "E: " not in errors, errors


def _round_trip(ds: Dataset, expected_ts: UID, tmp_path: Path) -> tuple[Dataset, np.ndarray]:
    """Paint, encode, write and re-read; returns the re-read dataset and painted array."""
    original_pi = photometric_after_decode(ds)
    sop_uid, frames_attr = ds.SOPInstanceUID, ds.get("NumberOfFrames")
    frames = decode(ds)
    frames[:, :10, :10] = fill_value(ds, frames)
    encode(ds, frames)
    data = _write(ds)
    back = dcmread(io.BytesIO(data))
    assert back.file_meta.TransferSyntaxUID == expected_ts
    assert np.array_equal(decode(back), frames)
    assert photometric_after_decode(back) == original_pi
    assert back.SOPInstanceUID == sop_uid
    assert back.get("NumberOfFrames") == frames_attr
    if frames.shape[-1] == 3:
        assert back.PlanarConfiguration == 0
    else:
        assert "PlanarConfiguration" not in back
    if not expected_ts.is_encapsulated:
        assert "ExtendedOffsetTable" not in back
    _dcmdump_ok(data, tmp_path / "out.dcm")
    return back, frames


@pytest.mark.parametrize(("name", "shape", "expected_ts", "lossy"), CASES,
                         ids=[c[0] for c in CASES])
def test_decode_paint_encode_round_trip(name, shape, expected_ts, lossy, tmp_path) -> None:
    ds = _read(name)
    source_pi = ds.PhotometricInterpretation
    frames = decode(ds)
    assert frames.shape == shape and frames.dtype.isnative and frames.flags.writeable
    assert (frames.dtype.kind == "i") == (ds.PixelRepresentation == 1)

    grey = to_grey8(ds, frames)
    assert grey.dtype == np.uint8 and grey.shape == shape[:3]
    assert int(grey.max()) - int(grey.min()) > 50

    back, painted = _round_trip(ds, expected_ts, tmp_path)
    assert back.get("LossyImageCompression") == lossy
    if source_pi == "YBR_RCT":  # JPEG 2000 lossless keeps its reversible colour transform
        assert back.PhotometricInterpretation == "YBR_RCT"
    else:
        assert back.PhotometricInterpretation == photometric_after_decode(back)
    assert back.BitsAllocated == painted.dtype.itemsize * 8 or back.BitsAllocated == 1


@pytest.mark.parametrize(("tool", "flag", "source", "made_ts", "expected_ts"), [
    ("dcmcjpeg", "+el", "MR_small.dcm", "1.2.840.10008.1.2.4.57", EXPLICIT),
    ("dcmcjpeg", "+el", "examples_rgb_color.dcm", "1.2.840.10008.1.2.4.57", EXPLICIT),
    ("dcmcjpeg", "+e1", "image_dfl.dcm", JPEGLosslessSV1, EXPLICIT),
    ("dcmcjpls", "+el", "examples_rgb_color.dcm", JPEGLSLossless, JPEGLSLossless),
])
def test_syntaxes_made_by_dcmtk(tool, flag, source, made_ts, expected_ts, tmp_path) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"dcmtk's {tool} is not installed")
    made = tmp_path / "made.dcm"
    subprocess.run([tool, flag, get_testdata_file(source), str(made)], check=True, timeout=60)
    ds = dcmread(made)
    assert ds.file_meta.TransferSyntaxUID == made_ts
    expected = decode(_read(source))
    assert np.array_equal(decode(ds), expected)  # lossless, so exactly the source
    back, _ = _round_trip(ds, expected_ts, tmp_path)
    assert "LossyImageCompression" not in back or back.LossyImageCompression != "01"


@pytest.mark.parametrize(("name", "tool"), [
    ("MR_small_RLE.dcm", "dcmdrle"),
    ("SC_rgb_rle_2frame.dcm", "dcmdrle"),
    ("MR_small_jpeg_ls_lossless.dcm", "dcmdjpls"),
])
def test_dcmtk_decodes_what_we_reencode(name, tool, tmp_path) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"dcmtk's {tool} is not installed")
    ds = _read(name)
    frames = decode(ds)
    frames[:, 5:15, 5:15] = fill_value(ds, frames)
    encode(ds, frames)
    (tmp_path / "ours.dcm").write_bytes(_write(ds))
    subprocess.run([tool, str(tmp_path / "ours.dcm"), str(tmp_path / "plain.dcm")],
                   check=True, timeout=60)
    plain = dcmread(tmp_path / "plain.dcm")
    assert not plain.file_meta.TransferSyntaxUID.is_encapsulated
    assert np.array_equal(decode(plain), frames)


def test_jpeg_ybr_comes_out_as_rgb_colours() -> None:
    """The same test card losslessly (RLE, RGB) and as baseline JPEG in YBR_FULL."""
    reference = decode(_read("SC_rgb_rle.dcm")).astype(int)
    for name in ("SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_dcmtk_+eb+cy+s2.dcm",
                 "SC_ybr_full_422_uncompressed.dcm"):
        ds = _read(name)
        assert ds.PhotometricInterpretation.startswith("YBR")
        assert photometric_after_decode(ds) == "RGB"
        rgb = decode(ds).astype(int)
        assert np.abs(rgb - reference).mean() < 2  # YBR read as RGB would be far off
        assert np.abs(rgb[0, 5, 50] - [255, 0, 0]).max() <= 8  # the red band is red


def test_monochrome1_is_inverted_for_detection_and_painted_with_its_maximum() -> None:
    ds = _synthetic("MONOCHROME1", np.array([[[0, 255], [255, 0]]], np.uint8))
    frames = decode(ds)
    assert to_grey8(ds, frames)[0].tolist() == [[255, 0], [0, 255]]
    assert fill_value(ds, frames) == 255
    ds.PhotometricInterpretation = "MONOCHROME2"
    assert to_grey8(ds, frames)[0].tolist() == [[0, 255], [255, 0]]
    assert fill_value(ds, frames) == 0

    wide = _synthetic("MONOCHROME1", np.arange(4000, dtype=np.uint16).reshape(1, 40, 100),
                      bits_stored=12)
    grey = to_grey8(wide, decode(wide))
    assert grey[0, 0, 0] == 255 and grey[0, -1, -1] == 0  # stretched, then inverted


def test_monochrome1_file_round_trip(tmp_path) -> None:
    ds = _read("MR_small.dcm")
    ds.PhotometricInterpretation = "MONOCHROME1"
    frames = decode(ds)
    assert fill_value(ds, frames) == int(frames.max())
    back, painted = _round_trip(ds, EXPLICIT, tmp_path)
    assert back.PhotometricInterpretation == "MONOCHROME1"
    assert (painted[0, :10, :10, 0] == frames.max()).all()


def test_signed_and_percentiles_computed_over_all_frames() -> None:
    signed = _synthetic("MONOCHROME2", np.array([[[-128, 127]]], np.int8))
    assert to_grey8(signed, decode(signed))[0].tolist() == [[0, 255]]
    # Two 16-bit frames: a bright one and a faint one stay bright and faint.
    stack = np.zeros((2, 20, 20), np.int16)
    stack[0] = np.linspace(-1000, 1000, 400, dtype=np.int16).reshape(20, 20)
    stack[1] = np.linspace(-1000, -800, 400, dtype=np.int16).reshape(20, 20)
    ds = _synthetic("MONOCHROME2", stack, bits_stored=12)
    grey = to_grey8(ds, decode(ds))
    assert grey[0].max() >= 250 and grey[1].max() < 40


def test_fill_value_for_each_photometric() -> None:
    ct = _read("CT_small.dcm")
    assert fill_value(ct, decode(ct)) == int(decode(ct).min()) == 128
    for name in ("examples_rgb_color.dcm", "SC_rgb_jpeg_dcmtk.dcm", "examples_jpeg2k.dcm"):
        ds = _read(name)
        assert fill_value(ds, decode(ds)) == (0, 0, 0)
    palette = _read("examples_palette.dcm")
    indices = np.arange(256, dtype=np.uint8)
    darkest = int(np.argmin(apply_color_lut(indices, palette).astype(int).sum(axis=-1)))
    assert fill_value(palette, decode(palette)) == darkest


def test_palette_darkest_entry_need_not_be_index_zero(tmp_path) -> None:
    ds = _synthetic("PALETTE COLOR", np.array([[[0, 37], [200, 255]]], np.uint8))
    lut = np.full((3, 256), 40000, np.uint16)
    lut[0, 0] = 65535  # index 0 is bright red
    lut[:, 37] = (900, 300, 100)  # the darkest entry
    lut[:, 200] = (0, 0, 1500)  # darker in red and green, not overall
    for colour, values in zip(("Red", "Green", "Blue"), lut, strict=True):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", values.astype("<u2").tobytes())
    frames = decode(ds)
    assert fill_value(ds, frames) == 37
    grey = to_grey8(ds, frames)
    assert grey[0, 0, 1] < grey[0, 0, 0]  # the palette applied: 37 is darker than 0
    frames[:] = 37
    encode(ds, frames)
    assert decode(dcmread(io.BytesIO(_write(ds)))).tolist() == frames.tolist()


def test_lossy_metadata_kept_and_completed() -> None:
    ds = _read("JPEG2000.dcm")
    ds.LossyImageCompressionMethod = "ISO_15444_1"
    encode(ds, decode(ds))
    assert (ds.LossyImageCompression, ds.LossyImageCompressionRatio,
            ds.LossyImageCompressionMethod) == ("01", 2097, "ISO_15444_1")
    near = _read("JPEGLSNearLossless_16.dcm")
    assert "LossyImageCompression" not in near
    encode(near, decode(near))
    assert (near.LossyImageCompression, near.LossyImageCompressionMethod) == (
        "01", "ISO_14495_1")


def test_extended_offset_table_dropped_when_written_native(tmp_path) -> None:
    ds = _read("examples_ybr_color.dcm")
    fragments = list(generate_frames(ds.PixelData, number_of_frames=30))
    ds.PixelData, ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = (
        encapsulate_extended(fragments))
    ds["PixelData"].is_undefined_length = True
    back, _ = _round_trip(ds, EXPLICIT, tmp_path)
    assert "ExtendedOffsetTableLengths" not in back and back.NumberOfFrames == 30


# ------------------------------------------------------------------------- bad input


def _with_identity(ds: Dataset) -> tuple[Dataset, list[str]]:
    """The file's own identifiers (when distinctive) and planted ones, to look for."""
    values = [str(ds.get(k, "")) for k in ("PatientName", "PatientID")]
    ds.PatientName, ds.PatientID = NAME, PID
    return ds, [v for v in values if len(v) >= 4] + [NAME, PID, "Secretname", "31337"]


def _refused(ds: Dataset, values: list[str], *fragments: str) -> str:
    with pytest.raises(PixelError) as info:
        decode(ds)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message
    for value in values:
        assert value not in message
    return message


def test_truncated_pixel_data() -> None:
    ds, values = _with_identity(_read("CT_small.dcm"))
    ds.PixelData = ds.PixelData[:1000]
    assert _refused(ds, values) == (
        "pixel data length 1000 bytes, expected 32768 for 1 frame(s) of 128x128x1 at 16 bits")
    ds, values = _with_identity(_read("MR_truncated.dcm"))
    _refused(ds, values, "pixel data length 8130 bytes, expected 8192")


def test_a_whole_frame_too_many_is_refused() -> None:
    ds, values = _with_identity(_read("CT_small.dcm"))
    ds.PixelData = ds.PixelData * 2
    _refused(ds, values, "pixel data length 65536 bytes, expected 32768")


def test_made_up_transfer_syntax() -> None:
    ds, values = _with_identity(_read("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.3.999.42"
    _refused(ds, values, "unsupported transfer syntax 1.2.3.999.42")
    ds.file_meta.TransferSyntaxUID = "Secretname"  # not even a UID: not repeated
    _refused(ds, values, "unsupported transfer syntax a transfer syntax value that is not")


def test_missing_pixel_data_and_float_pixel_data() -> None:
    ds, values = _with_identity(_read("CT_small.dcm"))
    del ds.PixelData
    assert _refused(ds, values) == "no PixelData"
    ds.FloatPixelData = np.zeros(128 * 128, "<f4").tobytes()
    _refused(ds, values, "FloatPixelData is not supported")


@pytest.mark.parametrize("name", ["MR_small_jpeg_ls_lossless.dcm", "SC_rgb_jpeg_dcmtk.dcm",
                                  "MR_small_jp2klossless.dcm", "MR_small_RLE.dcm"])
def test_garbage_in_an_encapsulated_frame(name) -> None:
    ds, values = _with_identity(_read(name))
    garbage = b"\xff\xd8" + bytes(range(256)) * 3 + NAME.encode() + b"\xff\xd9"
    ds.PixelData = encapsulate([garbage])
    ts = str(ds.file_meta.TransferSyntaxUID)
    _refused(ds, values, f"cannot decode {ts} ")


def test_undecodable_real_file_and_non_integer_attributes() -> None:
    ds, values = _with_identity(_read("JPEG-lossy.dcm"))
    _refused(ds, values, "cannot decode 1.2.840.10008.1.2.4.51", "libjpeg error")
    ds, values = _with_identity(_read("badVR.dcm"))  # NumberOfFrames '1A'
    assert _refused(ds, values + ["1A"]) == "NumberOfFrames is not an integer"
    ds, values = _with_identity(_read("CT_small.dcm"))
    ds.PhotometricInterpretation = "SECRETNAME"
    _refused(ds, values + ["SECRETNAME"], "PhotometricInterpretation a non-standard value")


def test_failed_encode_leaves_the_dataset_untouched() -> None:
    ds = _read("MR_small_RLE.dcm")
    frames = decode(ds)
    before = (ds.PixelData, ds.file_meta.TransferSyntaxUID, ds.PhotometricInterpretation)
    bad_inputs = [
        (frames[:, :32], "array shape"),
        (frames.astype(np.uint16), "does not match PixelRepresentation"),
        (frames.astype(np.int32) * 40, "exceed BitsStored 16 range"),
    ]
    for bad, fragment in bad_inputs:
        with pytest.raises(PixelError, match=fragment):
            encode(ds, bad)
        assert (ds.PixelData, ds.file_meta.TransferSyntaxUID,
                ds.PhotometricInterpretation) == before
    assert np.array_equal(decode(ds), frames)


def _synthetic(photometric: str, frames: np.ndarray, bits_stored: int | None = None) -> Dataset:
    """A tiny single-sample Explicit VR Little Endian image of ``frames`` (F, R, C)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", "1.2.3.4"
    ds.NumberOfFrames, ds.Rows, ds.Columns = frames.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated = frames.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit, ds.PixelRepresentation = ds.BitsStored - 1, int(frames.dtype.kind == "i")
    ds.PixelData = frames.astype(frames.dtype.newbyteorder("<")).tobytes()
    return ds


def _multiframe_mono8() -> Dataset:
    stack = np.stack([np.full((6, 8), 10 * k, np.uint8) + np.arange(8, dtype=np.uint8)
                      for k in range(4)])
    return _synthetic("MONOCHROME2", stack)


@pytest.mark.parametrize("make", [_multiframe_mono8,
                                  lambda: _read("SC_rgb_rle_2frame.dcm"),
                                  lambda: _read("examples_ybr_color.dcm")],
                         ids=["mono8", "rgb-rle", "ybr-jpeg"])
def test_frame_grey8_is_that_frame_of_to_grey8(make) -> None:
    ds = make()
    everything = to_grey8(ds, decode(ds))
    assert len(everything) > 1
    for k in range(len(everything)):
        one = frame_grey8(ds, k)
        assert one.dtype == np.uint8 and one.ndim == 2
        assert np.array_equal(one, everything[k]), k
        assert decode_frame(ds, k).shape == (1, *decode(ds).shape[1:])
    with pytest.raises(PixelError, match="out of range"):
        frame_grey8(ds, len(everything))


def test_frame_grey8_inverts_monochrome1() -> None:
    ds = _multiframe_mono8()
    bright = frame_grey8(ds, 2)
    ds.PhotometricInterpretation = "MONOCHROME1"
    assert np.array_equal(frame_grey8(ds, 2), 255 - bright)


def test_array_grey8_stretches_inverts_and_takes_luma() -> None:
    ramp = np.arange(1000, dtype=np.uint16).reshape(10, 100)
    grey = array_grey8(ramp)
    assert grey.dtype == np.uint8 and grey[0, 0] == 0 and grey[-1, -1] == 255
    assert np.array_equal(array_grey8(ramp, "MONOCHROME1"), array_grey8(ramp.max() - ramp))
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[2:, :, 1] = 200  # green: luma 0.587 x 200
    assert array_grey8(rgb)[0, 0] == 0 and array_grey8(rgb)[3, 3] == 255


def test_encode_resets_a_cached_pixel_array() -> None:
    ds = _multiframe_mono8()
    assert int(ds.pixel_array.max()) > 0  # cached by pydicom
    frames = decode(ds)
    frames[:] = 0
    encode(ds, frames)
    assert int(ds.pixel_array.max()) == 0
