"""Native multi-frame pixel data painted in place (``pixels.native``, ``image_redaction``).

The guarantee: on every frame, every byte outside the boxes is the input's and every
pixel inside them is the fill; frames whose boxes already hold the fill are unchanged;
layouts whose bytes are not the stored values (bits above BitsStored in use, YBR)
take the general path, which gives the same image.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import pixel_array
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from dicom_deid.corpus.burned_instances import burned_instance
from dicom_deid.engine import image_redaction
from dicom_deid.engine.instance import deidentify_bytes
from dicom_deid.engine.pixels import native
from dicom_deid.engine.plan import build_plan

#: Boxes at every edge, sizes that are no multiple of 8 or 16, two that overlap.
BOXES = [(0, 0, 7, 5), (30, 9, 47, 22), (40, 15, 60, 29), (85, 60, 97, 70), (3, 63, 20, 70),
         (96, 0, 97, 70)]
ROWS, COLUMNS, FRAMES = 70, 97, 9


def _dataset(pixels: np.ndarray, photometric: str, *, bits_stored: int | None = None,
             planar: int = 0, syntax: str = ExplicitVRLittleEndian) -> Dataset:
    """A multi-frame instance holding ``pixels`` (frames, rows, columns, samples)."""
    frames, rows, columns, samples = pixels.shape
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7.2"  # multi-frame grayscale byte SC
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "OT"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.NumberOfFrames = rows, columns, samples, frames
    ds.PhotometricInterpretation = photometric
    if samples == 3:
        ds.PlanarConfiguration = planar
    allocated = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored = allocated, bits_stored or allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(pixels.dtype.kind == "i")
    if photometric == "PALETTE COLOR":
        ramp = (np.arange(256) * 257).astype("<u2")
        for i, channel in enumerate(("Red", "Green", "Blue")):
            setattr(ds, f"{channel}PaletteColorLookupTableDescriptor", [256, 0, 16])
            setattr(ds, f"{channel}PaletteColorLookupTableData",
                    np.roll(ramp[::-1], 40 * i).tobytes())
    little = syntax != ExplicitVRBigEndian
    stored = pixels.transpose(0, 3, 1, 2) if planar else pixels
    ds.PixelData = stored.astype(pixels.dtype.newbyteorder("<" if little else ">")).tobytes()
    ds["PixelData"].VR = "OB" if allocated == 8 else "OW"
    return ds


def _written(ds: Dataset) -> Dataset:
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return dcmread(io.BytesIO(buf.getvalue()))


def _stack(dtype: str, samples: int = 1, low: int = 0, high: int = 255,
           seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(low, high + 1, (FRAMES, ROWS, COLUMNS, samples)).astype(dtype)


def _mask() -> np.ndarray:
    mask = np.zeros((ROWS, COLUMNS), bool)
    for left, top, right, bottom in BOXES:
        mask[top:bottom, left:right] = True
    return mask


def _paint(ds: Dataset) -> image_redaction.Pixels:
    pixels = image_redaction.read_pixels(ds)
    image_redaction.paint(ds, pixels, BOXES)
    return pixels


LAYOUTS = {
    # id: (pixels, photometric, keyword arguments of _dataset, fill)
    "mono2-8": (_stack("u1", low=3), "MONOCHROME2", {}, 3),
    "mono1-8": (_stack("u1", high=250), "MONOCHROME1", {}, 250),
    "mono2-16-signed": (_stack("i2", low=-900, high=3000), "MONOCHROME2", {}, -900),
    "mono2-12-in-16": (_stack("u2", low=10, high=4095), "MONOCHROME2", {"bits_stored": 12}, 10),
    "mono2-32": (_stack("u4", low=7, high=70000), "MONOCHROME2", {}, 7),
    "rgb-by-pixel": (_stack("u1", 3), "RGB", {}, (0, 0, 0)),
    "rgb-by-plane": (_stack("u1", 3), "RGB", {"planar": 1}, (0, 0, 0)),
    "palette": (_stack("u1"), "PALETTE COLOR", {}, None),
    "big-endian-16": (_stack("u2", low=5, high=60000), "MONOCHROME2",
                      {"syntax": ExplicitVRBigEndian}, 5),
    "implicit": (_stack("u1", low=1), "MONOCHROME2", {"syntax": ImplicitVRLittleEndian}, 1),
    "deflated": (_stack("u1", low=2), "MONOCHROME2",
                 {"syntax": DeflatedExplicitVRLittleEndian}, 2),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_native_frames_are_painted_in_place_and_nothing_else_changes(layout: str) -> None:
    pixels, photometric, kwargs, fill = LAYOUTS[layout]
    pixels = pixels.copy()
    already = fill is not None
    if already:  # frame 4 all fill (so the fill is still the frames' min or max)
        pixels[4, ..., :] = np.asarray(fill, pixels.dtype)
    ds = _written(_dataset(pixels, photometric, **kwargs))
    before = bytes(ds.PixelData)
    route = _paint(ds).route
    assert route == "native"
    after = _written(ds)
    assert len(after.PixelData) == len(before)
    assert after.get("PlanarConfiguration") == ds.get("PlanarConfiguration")

    # stored values, frame by frame: outside the boxes the input's, inside the fill
    got = pixel_array(after, as_rgb=False).reshape(pixels.shape)
    mask = _mask()
    assert np.array_equal(got[:, ~mask], pixels[:, ~mask])
    if fill is None:  # palette: the index whose colour is darkest
        lut = np.stack([np.frombuffer(getattr(after, f"{c}PaletteColorLookupTableData"),
                                      "<u2").astype(int) for c in ("Red", "Green", "Blue")])
        fill = int(np.argmin(lut.sum(axis=0)))
    assert (got[:, mask] == np.asarray(fill, got.dtype)).all()

    # and in the bytes: every byte outside the boxes is the input's
    stride = pixels.dtype.itemsize
    order = "<" if kwargs.get("syntax") != ExplicitVRBigEndian else ">"
    raw_in = np.frombuffer(before, f"{order}{pixels.dtype.kind}{stride}")
    raw_out = np.frombuffer(bytes(after.PixelData), raw_in.dtype)
    shape = ((FRAMES, 3, ROWS, COLUMNS) if kwargs.get("planar")
             else (FRAMES, ROWS, COLUMNS, pixels.shape[-1]))
    raw_in, raw_out = raw_in.reshape(shape), raw_out.reshape(shape)
    if kwargs.get("planar"):
        raw_in, raw_out = raw_in.transpose(0, 2, 3, 1), raw_out.transpose(0, 2, 3, 1)
    assert np.array_equal(raw_in[:, ~mask], raw_out[:, ~mask])
    if already:  # a frame whose boxes already hold the fill is as it was
        assert np.array_equal(raw_in[4], raw_out[4])


@pytest.mark.parametrize("layout", ["mono2-8", "mono2-16-signed", "rgb-by-plane", "palette",
                                    "big-endian-16"])
def test_in_place_paint_gives_what_decode_paint_encode_gives(layout: str, monkeypatch) -> None:
    """The general path (decode every frame, paint, encode) is the reference."""
    pixels, photometric, kwargs, _ = LAYOUTS[layout]
    fast = _written(_dataset(pixels, photometric, **kwargs))
    slow = _written(_dataset(pixels, photometric, **kwargs))
    assert _paint(fast).route == "native"
    monkeypatch.setattr(native, "view", lambda ds: None)
    assert _paint(slow).route == "decoded"
    assert np.array_equal(pixel_array(_written(fast)), pixel_array(_written(slow)))
    if not kwargs.get("planar"):
        assert bytes(fast.PixelData) == bytes(slow.PixelData)


def test_bits_above_bits_stored_in_use_take_the_general_path() -> None:
    """12 bits stored with something in the top 4 bits (an old overlay): the raw values
    are not the stored values, so the frames are decoded (pydicom masks them)."""
    pixels = _stack("u2", low=10, high=4095)
    ds = _dataset(pixels, "MONOCHROME2", bits_stored=12)
    raw = np.frombuffer(ds.PixelData, "<u2").copy()
    raw[::7] |= 0x8000
    ds.PixelData = raw.tobytes()
    ds = _written(ds)
    assert _paint(ds).route == "decoded"
    got = pixel_array(_written(ds)).reshape(pixels.shape)
    mask = _mask()
    assert (got[:, mask] == pixels.min()).all()
    assert np.array_equal(got[:, ~mask], pixels[:, ~mask])


def test_ybr_full_takes_the_general_path() -> None:
    pixels = _stack("u1", 3)
    ds = _written(_dataset(pixels, "YBR_FULL"))
    assert _paint(ds).route == "decoded"
    assert _written(ds).PhotometricInterpretation == "RGB"


def test_native_cine_end_to_end_keeps_every_byte_outside_the_boxes() -> None:
    """deidentify_bytes on a generated 12-frame cine: the boxes found are painted on
    every frame, and every pixel byte outside them is the input's."""
    bi = burned_instance(5, photometric="RGB", frames=12)
    buf = io.BytesIO()
    dcmwrite(buf, bi.dataset, enforce_file_format=True)
    plan = build_plan({"image": {"textRedactionMode": "REDACT_ALL_TEXT"}}, b"k" * 32)
    src = dcmread(io.BytesIO(buf.getvalue()))
    pixels = image_redaction.read_pixels(src)
    assert pixels.route == "native"
    boxes = image_redaction.find_boxes(image_redaction.detection_grey(src, pixels),
                                       plan.image, {})
    assert boxes
    out, _ = deidentify_bytes(buf.getvalue(), plan)
    ds = dcmread(io.BytesIO(out))
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    before = np.frombuffer(src.PixelData, np.uint8).reshape(12, 480, 640, 3)
    after = np.frombuffer(ds.PixelData, np.uint8).reshape(12, 480, 640, 3)
    mask = np.zeros((480, 640), bool)
    for left, top, right, bottom in boxes:
        mask[top:bottom, left:right] = True
    assert np.array_equal(after[:, ~mask], before[:, ~mask])
    assert (after[:, mask] == 0).all()
    for region in bi.regions:
        left, top, right, bottom = region.box
        assert (after[:, top:bottom, left:right] == 0).all(), region.text
