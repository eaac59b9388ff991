"""JPEG baseline painted in the DCT domain (``pixels.jpeg_dct``, ``image_redaction``).

The guarantee, checked here with pydicom's decoders (pylibjpeg and Pillow), not the
engine's own: the instance stays JPEG baseline; on every frame every pixel of every
box decodes to black; outside the boxes grown to the block grid (and, where chroma is
subsampled, the one-chroma-sample ring a decoder's upsampling blends across) every
decoded pixel is the input's, exactly; frames whose boxes already decode to black keep
their compressed bytes. Layouts: grey (MONOCHROME1/2), RGB coded without a colour
transform (dcmtk), YCbCr 4:4:4, 4:2:2 and 4:2:0 (Pillow and dcmtk), frame sizes and
boxes that are no multiple of 8 or 16, boxes at every edge.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import get_decoder
from pydicom.pixels.utils import as_pixel_options
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

from dicom_deid.corpus.burned_instances import burned_instance
from dicom_deid.engine import image_redaction
from dicom_deid.engine.instance import deidentify_bytes
from dicom_deid.engine.pixels import jpeg_dct
from dicom_deid.engine.plan import build_plan

needs_turbojpeg = pytest.mark.skipif(not jpeg_dct.available(),
                                     reason="libturbojpeg (Debian libturbojpeg0) is missing")
DECODERS = ("pylibjpeg", "pillow")


# --------------------------------------------------------------------- the grid


def _sof(frame: bytes) -> list[tuple[int, int]]:
    """(h, v) sampling factors of each component, walking the markers to the SOF."""
    i = 2
    while i < len(frame):
        marker, length = frame[i + 1], int.from_bytes(frame[i + 2:i + 4], "big")
        if marker in (0xC0, 0xC1):
            count = frame[i + 9]
            return [(frame[i + 11 + 3 * k] >> 4, frame[i + 11 + 3 * k] & 15)
                    for k in range(count)]
        i += 2 + length
    raise AssertionError("no SOF0/SOF1")


def reach_mask(ds: Dataset, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Where a DCT-domain paint of ``boxes`` may change decoded pixels: each box grown
    by the chroma ring, snapped out to the block grid of every component, grown by the
    ring again (an independent statement of what ``pixels.jpeg_dct`` promises)."""
    frame = next(generate_frames(ds.PixelData,
                                 number_of_frames=int(ds.get("NumberOfFrames") or 1)))
    sampling = _sof(frame)
    hmax, vmax = max(h for h, _ in sampling), max(v for _, v in sampling)
    ux, uy = 8 * hmax // min(h for h, _ in sampling), 8 * vmax // min(v for _, v in sampling)
    subsampled = len(set(sampling)) > 1
    ring = max(max(hmax // h, vmax // v) for h, v in sampling) if subsampled else 0
    mask = np.zeros((int(ds.Rows), int(ds.Columns)), bool)
    for left, top, right, bottom in boxes:
        left, top, right, bottom = left - ring, top - ring, right + ring, bottom + ring
        left, top = max(0, left // ux * ux - ring), max(0, top // uy * uy - ring)
        right, bottom = -(-right // ux) * ux + ring, -(-bottom // uy) * uy + ring
        mask[top:bottom, left:right] = True
    return mask


# --------------------------------------------------------------------- inputs


def _instance(frames: list[bytes], rows: int, columns: int, samples: int,
              photometric: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"  # US multi-frame
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "US"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, samples
    ds.NumberOfFrames = len(frames)
    ds.PhotometricInterpretation = photometric
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.LossyImageCompression = "01"
    ds.PixelData = encapsulate(frames, has_bot=True)
    ds["PixelData"].VR = "OB"
    return _written(ds)


def _written(ds: Dataset) -> Dataset:
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return dcmread(io.BytesIO(buf.getvalue()))


def _pillow_cine(samples: int, subsampling: int, photometric: str, rows: int, columns: int,
                 blank: tuple[int, ...] = (), blank_value: int = 0, progressive: bool = False,
                 ) -> Dataset:
    """A cine of moving noise with bright 'text' blocks, coded by Pillow (libjpeg-turbo,
    JFIF, YCbCr for colour); frames in ``blank`` are one flat ``blank_value``."""
    rng = np.random.default_rng(samples * 10 + subsampling)
    coded = []
    for f in range(7):
        image = rng.integers(20, 230, (rows, columns, samples), dtype=np.uint8)
        image[5:20, 3:50] = 255
        image[rows - 9:, columns - 30:] = [250, 240, 30][:samples]
        if f in blank:
            image[:] = blank_value
        buf = io.BytesIO()
        picture = Image.fromarray(image[..., 0] if samples == 1 else image,
                                  "L" if samples == 1 else "RGB")
        picture.save(buf, "JPEG", quality=85, subsampling=subsampling, progressive=progressive)
        coded.append(buf.getvalue())
    return _instance(coded, rows, columns, samples, photometric)


def _decoded(ds: Dataset, plugin: str) -> np.ndarray:
    decoder = get_decoder(ds.file_meta.TransferSyntaxUID)
    arr, _ = decoder.as_array(ds, as_rgb=True, decoding_plugin=plugin,
                              **as_pixel_options(ds))
    return arr.reshape(int(ds.get("NumberOfFrames") or 1), ds.Rows, ds.Columns, -1)


def _fragments(ds: Dataset) -> list[bytes]:
    return list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))


def _edge_boxes(rows: int, columns: int) -> list[tuple[int, int, int, int]]:
    """Boxes at every edge and corner and in the middle, of sizes no multiple of 8."""
    return [(3, 5, 50, 20), (0, 0, 7, 9), (columns - 30, rows - 9, columns, rows),
            (columns // 2 - 9, rows // 2 - 5, columns // 2 + 8, rows // 2 + 6),
            (columns - 3, 0, columns, rows // 3), (0, rows - 1, 11, rows)]


def _check_painted(src: Dataset, out: Dataset, boxes: list, fill: np.ndarray,
                   kept: set[int]) -> None:
    """The guarantee, with both of pydicom's decoders (see the module)."""
    assert out.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert int(out.NumberOfFrames) == int(src.NumberOfFrames)
    before, after = _fragments(src), _fragments(out)
    for f in kept:
        assert after[f] == before[f], f"frame {f} needed no paint but was re-coded"
    reach = reach_mask(src, boxes)
    for plugin in DECODERS:
        old, new = _decoded(src, plugin), _decoded(out, plugin)
        for left, top, right, bottom in boxes:
            inside = new[:, top:bottom, left:right]
            assert (inside == fill).all(), (plugin, (left, top, right, bottom))
        outside = ~reach
        assert np.array_equal(new[:, outside], old[:, outside]), plugin


LAYOUTS = {
    # id: (samples, Pillow subsampling, photometric, rows, columns)
    "grey": (1, 0, "MONOCHROME2", 75, 101),
    "ycbcr-444": (3, 0, "YBR_FULL", 64, 96),
    "ycbcr-422": (3, 1, "YBR_FULL_422", 75, 101),
    "ycbcr-420": (3, 2, "YBR_FULL_422", 83, 131),
}


@needs_turbojpeg
@pytest.mark.parametrize("layout", LAYOUTS)
def test_jpeg_cine_is_painted_in_the_dct_domain(layout: str) -> None:
    samples, subsampling, photometric, rows, columns = LAYOUTS[layout]
    src = _pillow_cine(samples, subsampling, photometric, rows, columns, blank=(2, 5))
    out = dcmread(io.BytesIO(_bytes(src)))
    pixels = image_redaction.read_pixels(out)
    assert pixels.route == "jpeg"
    boxes = _edge_boxes(rows, columns)
    image_redaction.paint(out, pixels, boxes)
    out = _written(out)
    _check_painted(src, out, boxes, np.zeros(samples, np.uint8), kept={2, 5})
    assert out.LossyImageCompression == "01"
    assert out.LossyImageCompressionMethod == "ISO_10918_1"


@needs_turbojpeg
def test_monochrome1_is_painted_white_in_the_dct_domain() -> None:
    """MONOCHROME1's black is the largest value; a frame already all white is kept."""
    src = _pillow_cine(1, 0, "MONOCHROME1", 75, 101, blank=(3,), blank_value=255)
    out = dcmread(io.BytesIO(_bytes(src)))
    pixels = image_redaction.read_pixels(out)
    boxes = _edge_boxes(75, 101)
    image_redaction.paint(out, pixels, boxes)
    _check_painted(src, _written(out), boxes, np.array([255], np.uint8), kept={3})


def _bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


@needs_turbojpeg
@pytest.mark.parametrize(("photometric", "seed"), [("RGB", 3), ("YBR_FULL_422", 1),
                                                    ("MONOCHROME2", 4)])
def test_dcmtk_jpeg_cine_end_to_end(photometric: str, seed: int) -> None:
    """deidentify_bytes on dcmtk's JPEG baseline (RGB without a colour transform,
    YCbCr 4:2:2, grey): the instance stays JPEG baseline, every string is black on
    every frame, and the rest decodes as it did."""
    bi = burned_instance(seed, photometric=photometric, syntax="jpeg-baseline", frames=5)
    data = _bytes(bi.dataset)
    src = dcmread(io.BytesIO(data))
    plan = build_plan({"image": {"textRedactionMode": "REDACT_ALL_TEXT"}}, b"k" * 32)
    pixels = image_redaction.read_pixels(src)
    assert pixels.route == "jpeg"
    boxes = image_redaction.find_boxes(image_redaction.detection_grey(src, pixels),
                                       plan.image, {})
    assert boxes
    out, outcome = deidentify_bytes(data, plan)
    assert outcome.transfer_syntax == JPEGBaseline8Bit
    ds = dcmread(io.BytesIO(out))
    fill = np.zeros(int(src.SamplesPerPixel), np.uint8)
    _check_painted(src, ds, boxes, fill, kept=set())
    for plugin in DECODERS:
        new = _decoded(ds, plugin)
        for region in bi.regions:
            left, top, right, bottom = region.box
            assert (new[:, top:bottom, left:right] == fill).all(), (plugin, region.text)
    assert len(out) < 1.2 * len(data)  # not written native (5x the size)


def _painted_natively(src: Dataset, rows: int, columns: int, route: str
                     ) -> tuple[np.ndarray, list[tuple[int, int, int, int]], Dataset]:
    """``src`` read by the route named, painted at the edge boxes, written: the output
    must have left JPEG for Explicit VR Little Endian; (its frames, the boxes, it)."""
    out = dcmread(io.BytesIO(_bytes(src)))
    pixels = image_redaction.read_pixels(out)
    assert pixels.route == route
    boxes = _edge_boxes(rows, columns)
    image_redaction.paint(out, pixels, boxes)
    out = _written(out)
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    return out.pixel_array, boxes, out


@needs_turbojpeg
def test_progressive_frames_take_the_general_path() -> None:
    """A progressive frame (not baseline, though some files say so) is not painted in
    the DCT domain: decoded, painted and written native, as every lossy syntax was."""
    src = _pillow_cine(3, 2, "YBR_FULL_422", 64, 80, progressive=True)
    got, boxes, _ = _painted_natively(src, 64, 80, "jpeg")  # refused when painting
    for left, top, right, bottom in boxes:
        assert (got[:, top:bottom, left:right] == 0).all()


def test_without_libturbojpeg_jpeg_is_decoded_and_written_native(monkeypatch) -> None:
    monkeypatch.setattr(jpeg_dct, "_load", lambda: None)
    src = _pillow_cine(3, 1, "YBR_FULL_422", 48, 64)
    got, boxes, out = _painted_natively(src, 48, 64, "decoded")
    assert out.PhotometricInterpretation == "RGB"
    for left, top, right, bottom in boxes:
        assert (got[:, top:bottom, left:right] == 0).all()


@needs_turbojpeg
def test_a_frame_that_fails_the_check_sends_the_instance_the_general_way(monkeypatch
                                                                        ) -> None:
    """If a painted frame did not decode to the fill in its boxes (here: a wrong DC),
    the DCT route gives up before changing anything and the general path paints."""
    monkeypatch.setattr(jpeg_dct, "_dc", lambda kind, quant: 0)  # mid grey, not black
    src = _pillow_cine(1, 0, "MONOCHROME2", 48, 64)
    got, boxes, _ = _painted_natively(src, 48, 64, "jpeg")
    for left, top, right, bottom in boxes:
        assert (got[:, top:bottom, left:right] == got.min()).all()
