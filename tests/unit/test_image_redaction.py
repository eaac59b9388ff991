"""Burned-in text redaction of whole instances (``config.image``), end to end.

Real components throughout: the burned-text corpus (pydicom encoders and dcmtk),
``deidentify_bytes`` with the shape finder and Tesseract, pydicom decoders to read the
result back, dcmtk's ``dcmdump`` to validate it, and Tesseract again (in another page
segmentation mode) as an independent reader of what is left. Quality floors are
aggregates over several seeds, set just under the levels measured on them; the
measured figures are in every assertion message.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread, dcmwrite
from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_color_lut, pack_bits, pixel_array
from pydicom.uid import ExplicitVRLittleEndian

from dicom_deid.api_schema import ConfigError
from dicom_deid.corpus.burned_instances import (
    LOSSY,
    PHI_VALUES,
    SYNTAXES,
    BurnedInstance,
    burned_instance,
)
from dicom_deid.engine import image_redaction, ocr
from dicom_deid.engine.instance import DeidentifyError, deidentify_bytes
from dicom_deid.engine.pixels import jpeg_dct
from dicom_deid.engine.pixels.decode import decode
from dicom_deid.engine.pixels.grey import to_grey8
from dicom_deid.engine.plan import ALL_TEXT, ImagePlan, build_plan
from dicom_deid.engine.reading import UnreadableInstance
from tests.helpers import pixel_format
from tests.unit.test_image_redaction_jpeg import reach_mask

KEY = b"k" * 32
BASIC = {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}
KEEP_ALL = {"filterProfile": "KEEP_ALL_PROFILE"}
CLEAN_PIXEL_CODE = "113101"
# Syntaxes pydicom re-encodes losslessly in place (or that are native): kept as they are.
# JPEG baseline is painted in the DCT domain and kept where libturbojpeg is installed.
KEPT_SYNTAXES = {"explicit", "implicit", "deflated", "rle", "jpeg-ls", "j2k-lossless",
                 *(["jpeg-baseline"] if jpeg_dct.available() else [])}
DCMDUMP = shutil.which("dcmdump") or "/usr/bin/dcmdump"
needs_dcmtk = pytest.mark.skipif(not os.path.exists(DCMDUMP),
                                 reason="dcmtk (dcmdump, dcmcjpeg, dcmcjpls) is not installed")


def _plan(mode: str | None, dicom: dict | None = None, **image: object):
    config: dict = {"dicom": dict(dicom or KEEP_ALL)}
    if mode is not None or image:
        config["image"] = dict(image, **({"textRedactionMode": mode} if mode else {}))
    return build_plan(config, KEY)


def _bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _read(data: bytes) -> Dataset:
    return dcmread(io.BytesIO(data))


def _frames(ds: Dataset) -> np.ndarray:
    """pydicom's own decoding, (frames, rows, columns, samples); YBR_* comes out RGB."""
    arr = pixel_array(ds)
    return arr.reshape(int(ds.get("NumberOfFrames", 1) or 1), ds.Rows, ds.Columns,
                       int(ds.SamplesPerPixel))


def _truth(shape: tuple[int, int], bi: BurnedInstance) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for r in bi.regions:
        left, top, right, bottom = r.box
        mask[top:bottom, left:right] = True
    return mask


def _expected_fill(src: Dataset, before: np.ndarray) -> np.ndarray:
    """'Black' in the decoded output's value space, worked out without the engine.

    JPEG baseline painted in the DCT domain is black at the end of the sample range
    (a flat block clamped by the decoder), not at the frames' own minimum."""
    pi = str(src.PhotometricInterpretation)
    if pi in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT"):
        return np.zeros(3, before.dtype)
    if src.file_meta.TransferSyntaxUID == SYNTAXES["jpeg-baseline"] \
            and "jpeg-baseline" in KEPT_SYNTAXES:
        return np.array([255 if pi == "MONOCHROME1" else 0], before.dtype)
    if pi == "PALETTE COLOR":
        rgb = apply_color_lut(np.arange(256, dtype=np.uint8), src)
        return np.array([int(np.argmin(rgb.astype(np.int64).sum(axis=-1)))], before.dtype)
    if pi == "MONOCHROME1":
        return np.array([before.max()], before.dtype)
    return np.array([before.min()], before.dtype)


def _codes(ds: Dataset) -> list[str]:
    return [str(item.CodeValue) for item in ds.get("DeidentificationMethodCodeSequence", [])]


def _painted_boxes(src: Dataset) -> list[tuple[int, int, int, int]]:
    """The boxes the engine paints for ``src`` under REDACT_ALL_TEXT (real finder)."""
    ds = _read(_bytes(src))
    return image_redaction.find_boxes(to_grey8(ds, decode(ds)),
                                      ImagePlan(ALL_TEXT), {})


def _header_bytes(data: bytes, ds: Dataset) -> bytes:
    """The written instance without its pixel data (pixel bytes can spell anything)."""
    return data.replace(bytes(ds.PixelData), b"") if "PixelData" in ds else data


# ------------------------------------------------------------------------ 1. the matrix

# (photometric, bits, signed, syntax, modality, seed): every photometric interpretation,
# grey depths, and every syntax; seeds are ones on which the finder covers every string.
MATRIX = [
    ("MONOCHROME2", 8, False, "explicit", "US", 0),
    ("MONOCHROME1", 8, False, "explicit", "OT", 1),
    ("MONOCHROME2", 16, False, "explicit", "OT", 2),
    ("MONOCHROME2", 16, True, "explicit", "OT", 3),
    ("RGB", 8, False, "explicit", "US", 4),
    ("YBR_FULL", 8, False, "explicit", "US", 0),
    ("YBR_FULL_422", 8, False, "jpeg-baseline", "US", 1),
    ("PALETTE COLOR", 8, False, "explicit", "US", 2),
    ("MONOCHROME2", 8, False, "implicit", "US", 3),
    ("MONOCHROME2", 8, False, "deflated", "US", 4),
    ("MONOCHROME2", 8, False, "rle", "US", 0),
    ("MONOCHROME2", 8, False, "jpeg-baseline", "US", 1),
    ("MONOCHROME2", 12, False, "jpeg-extended", "OT", 2),
    ("MONOCHROME2", 8, False, "jpeg-lossless", "US", 3),
    ("MONOCHROME2", 8, False, "jpeg-ls", "US", 4),
    ("MONOCHROME2", 8, False, "jpeg-ls-near", "US", 0),
    ("MONOCHROME2", 8, False, "j2k-lossless", "US", 1),
    ("MONOCHROME2", 8, False, "j2k", "US", 2),
    # colour through the codecs that transform it, and deep grey through RLE / JPEG
    ("RGB", 8, False, "jpeg-baseline", "US", 3),
    ("RGB", 8, False, "j2k-lossless", "US", 4),
    ("RGB", 8, False, "j2k", "US", 0),
    ("PALETTE COLOR", 8, False, "rle", "US", 1),
    ("MONOCHROME2", 16, True, "rle", "OT", 2),
    ("MONOCHROME2", 16, True, "jpeg-lossless", "OT", 3),
]


def _id(case: tuple) -> str:
    photometric, bits, signed, syntax, modality, seed = case
    return f"{photometric.replace(' ', '_')}-{bits}{'s' if signed else ''}-{syntax}-{modality}"


@needs_dcmtk
@pytest.mark.parametrize("case", MATRIX, ids=_id)
def test_all_text_matrix_paints_every_string_and_writes_a_valid_instance(case, tmp_path
                                                                         ) -> None:
    """Every photometric, depth and syntax: text painted black, rest intact, valid file."""
    photometric, bits, signed, syntax, modality, seed = case
    bi = burned_instance(seed, photometric=photometric, bits=bits, signed=signed,
                         syntax=syntax, modality=modality)
    data = _bytes(bi.dataset)
    src = _read(data)
    out, outcome = deidentify_bytes(data, _plan("REDACT_ALL_TEXT", BASIC))
    ds = _read(out)

    # header: annotation flag, clean pixel option, syntax, lossy flag
    assert ds.BurnedInAnnotation == "NO"
    assert CLEAN_PIXEL_CODE in _codes(ds), _codes(ds)
    expected_ts = SYNTAXES[syntax] if syntax in KEPT_SYNTAXES else ExplicitVRLittleEndian
    assert ds.file_meta.TransferSyntaxUID == expected_ts
    assert outcome.transfer_syntax == expected_ts
    if syntax in LOSSY:
        assert ds.LossyImageCompression == "01"
        assert ds.get("LossyImageCompressionMethod")
    else:
        assert ds.get("LossyImageCompression", "00") == "00"
    assert (ds.Rows, ds.Columns, ds.BitsStored) == (480, 640, bits)
    assert ds.PixelRepresentation == int(signed)

    # pixels: decodable, same shape; every true box painted with the photometric's black
    before, after = _frames(src), _frames(ds)
    assert after.shape == before.shape == (1, 480, 640, after.shape[-1])
    assert after.dtype == before.dtype
    fill = _expected_fill(src, before)
    is_fill = (after[0] == fill).all(axis=-1)
    partly = [(r.text, round(float(is_fill[r.box[1]:r.box[3], r.box[0]:r.box[2]].mean()), 3))
              for r in bi.regions
              if not is_fill[r.box[1]:r.box[3], r.box[0]:r.box[2]].all()]
    assert not partly, f"strings not fully painted with {fill}: {partly}"

    # outside what the engine painted, nothing changed (lossy sources: the decoded
    # values are stored as they were, so they compare equal too; JPEG baseline kept:
    # the blocks under the boxes and the chroma upsampling ring around them may change)
    boxes = _painted_boxes(bi.dataset)
    painted = np.zeros((480, 640), bool)
    for left, top, right, bottom in boxes:
        painted[top:bottom, left:right] = True
    assert is_fill[painted].all()
    changed = (after[0] != before[0]).any(axis=-1)
    dct = expected_ts == SYNTAXES["jpeg-baseline"]
    may_change = reach_mask(src, boxes) if dct else painted
    assert not (changed & ~may_change).any(), int((changed & ~may_change).sum())
    if not dct:
        assert is_fill[changed].all()
    truth = _truth((480, 640), bi)
    spurious = float((painted & ~truth).mean())
    assert spurious < 0.03, f"painted outside the true boxes: {spurious:.2%} of the image"
    if syntax not in LOSSY:
        assert float((changed & ~truth).mean()) < 0.03

    # dcmtk reads it without complaint
    path = tmp_path / "out.dcm"
    path.write_bytes(out)
    done = subprocess.run([DCMDUMP, str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "E:" not in done.stderr, done.stderr


# ---------------------------------------------------------------------- 2. cine loops


@pytest.mark.parametrize("syntax", ["rle", "explicit"])
def test_cine_loop_is_painted_identically_on_every_frame(syntax, monkeypatch) -> None:
    """30 frames: one set of boxes on every frame, the rest of each frame untouched, and
    three text detections whatever the number of frames."""
    calls = []
    real = image_redaction.all_text_boxes

    def counting(grey: np.ndarray) -> list:
        calls.append(grey.shape)
        return real(grey)

    monkeypatch.setattr(image_redaction, "all_text_boxes", counting)
    bi = burned_instance(7, syntax=syntax, frames=30)
    data = _bytes(bi.dataset)
    src = _read(data)
    out, _ = deidentify_bytes(data, _plan("REDACT_ALL_TEXT", BASIC))
    assert len(calls) == 3, calls  # frame 0, temporal minimum, temporal maximum
    ds = _read(out)
    assert ds.file_meta.TransferSyntaxUID == SYNTAXES[syntax]
    assert int(ds.NumberOfFrames) == 30 and ds.BurnedInAnnotation == "NO"
    before, after = _frames(src), _frames(ds)
    assert after.shape == before.shape == (30, 480, 640, 1)

    fill = before.min()
    calls.clear()
    painted = np.zeros((480, 640), bool)
    for left, top, right, bottom in _painted_boxes(bi.dataset):
        painted[top:bottom, left:right] = True
    assert painted.any()
    for f in range(30):  # the same boxes, painted on every frame; the rest as it was
        assert (after[f, ..., 0][painted] == fill).all(), f
        assert np.array_equal(after[f][~painted], before[f][~painted]), f
    missed = [r.text for r in bi.regions
              if not (after[:, r.box[1]:r.box[3], r.box[0]:r.box[2]] == fill).all()]
    assert not missed, f"strings not painted on every frame: {missed}"
    spurious = float((painted & ~_truth((480, 640), bi)).mean())
    assert spurious < 0.03, f"painted outside the true boxes: {spurious:.2%}"
    # the moving image outside the text still moves
    outside = after[:, ~painted, 0].astype(int)
    assert np.abs(np.diff(outside, axis=0)).mean() > 1.0

    # the detection count does not grow with frames: 100 frames, still three
    calls.clear()
    stack = np.concatenate([to_grey8(src, decode(src))] * 4)[:100]
    boxes_100 = image_redaction.find_boxes(stack, ImagePlan(ALL_TEXT), {})
    assert len(calls) == 3, calls
    calls.clear()
    boxes_30 = image_redaction.find_boxes(stack[:30], ImagePlan(ALL_TEXT), {})
    assert boxes_100 == boxes_30  # the same text, the same frame 0, min and max


def test_cine_text_that_appears_mid_loop_is_painted_on_every_frame() -> None:
    """Text absent from frame 0 (a clock, a late label) is found in the temporal
    extremes and painted on all frames, the ones before it appeared included."""
    for seed in (0, 3):
        bi = burned_instance(seed, frames=30)
        clean = burned_instance(seed, strings=0).pixels[0]
        stored = bi.pixels.copy()
        late = bi.regions[::2]
        for r in late:  # these strings show only from frame 15 on
            left, top, right, bottom = r.box
            stored[:15, top:bottom, left:right] = clean[top:bottom, left:right]
        ds = bi.dataset
        ds.PixelData = stored.tobytes()
        out, _ = deidentify_bytes(_bytes(ds), _plan("REDACT_ALL_TEXT"))
        after = _frames(_read(out))
        fill = stored.min()
        missed = [(r.text, r in late) for r in bi.regions
                  if not (after[:, r.box[1]:r.box[3], r.box[0]:r.box[2]] == fill).all()]
        assert not missed, f"seed {seed}: (string, appears late) not painted: {missed}"


# --------------------------------------------------------- 3. REDACT_SENSITIVE_TEXT


def test_sensitive_text_covers_phi_and_keeps_measurements() -> None:
    """PHI painted (a string's label may stay), measurement strings left alone,
    header PHI gone (BASIC)."""
    plan = _plan("REDACT_SENSITIVE_TEXT", BASIC)
    phi_full, kept, leaks = [], [], []
    for background in ("speckle", "noise"):
        for seed in range(16):
            bi = burned_instance(seed, background=background)
            data = _bytes(bi.dataset)
            before = _frames(_read(data))[0, ..., 0]
            out, _ = deidentify_bytes(data, plan)
            ds = _read(out)
            after = _frames(ds)[0, ..., 0]
            fill = before.min()
            for r in bi.regions:
                left, top, right, bottom = r.box
                if r.phi:  # what identifies painted; a label ("DOB", "MRN") may stay
                    a, b, c, d = r.identifying
                    phi_full.append(bool((after[b:d, a:c] == fill).all()))
                else:
                    kept.append(bool(np.array_equal(after[top:bottom, left:right],
                                                    before[top:bottom, left:right])))
            header = _header_bytes(out, ds)
            leaks += [(background, seed, k) for k, v in PHI_VALUES.items()
                      if v.encode() in header]
    phi_rate, kept_rate = float(np.mean(phi_full)), float(np.mean(kept))
    figures = (f"PHI strings fully painted {phi_rate:.3f} ({sum(phi_full)}/{len(phi_full)}), "
               f"measurement strings untouched {kept_rate:.3f} ({sum(kept)}/{len(kept)})")
    assert phi_rate >= 0.95, figures
    assert kept_rate >= 0.8, figures
    assert not leaks, leaks


# ------------------------------------------------------ 4. an independent OCR pass


def _alnum(text: str) -> str:
    return "".join(c for c in text.upper() if c.isalnum())


def _phi_tokens(bi: BurnedInstance) -> set[str]:
    """Tokens of 5+ letters/digits of the planted PHI strings, as a reader would spell
    them: each word without punctuation (``1961-04-12`` → ``19610412``), and each run."""
    tokens = set()
    for r in bi.regions:
        if r.phi:
            tokens |= {_alnum(t) for t in r.text.split()}
            tokens |= {t.upper() for t in re.split(r"[^A-Za-z0-9]+", r.text)}
    return {t for t in tokens if len(t) >= 5}


@pytest.fixture(scope="module")
def page_api():
    """Tesseract in automatic page segmentation, unlike the engine's sparse/line modes."""
    tesserocr = pytest.importorskip("tesserocr")
    with tesserocr.PyTessBaseAPI(path=ocr.tessdata(), psm=tesserocr.PSM.AUTO) as api:
        yield api


def _page_text(api, image: Image.Image) -> str:
    api.SetImage(image)
    return _alnum(api.GetUTF8Text() or "")


@pytest.fixture(scope="module")
def page_reader(page_api):
    """What the independent reader sees on the first frame of a written instance."""
    def read(data: bytes) -> str:
        ds = _read(data)
        grey = to_grey8(ds, decode(ds))[0]
        return _page_text(page_api, Image.fromarray(grey))

    return read


@pytest.mark.parametrize(("seed", "photometric"),
                         [(0, "MONOCHROME2"), (1, "MONOCHROME2"), (3, "MONOCHROME2"),
                          (2, "RGB")])
def test_independent_ocr_finds_no_phi_after_redaction(seed, photometric, page_reader) -> None:
    """A second reader, in another mode, finds planted PHI in the input but not after."""
    bi = burned_instance(seed, background="flat", photometric=photometric)
    data = _bytes(bi.dataset)
    tokens = _phi_tokens(bi)
    seen = sorted(t for t in tokens if t in page_reader(data))
    assert seen, f"the reader finds none of {sorted(tokens)} in the input: test is vacuous"
    for mode in ("REDACT_ALL_TEXT", "REDACT_SENSITIVE_TEXT"):
        out, _ = deidentify_bytes(data, _plan(mode, BASIC))
        text = page_reader(out)
        left = sorted(t for t in tokens if t in text)
        assert not left, f"{mode}: {left} still readable (input showed {seen}); read {text!r}"


class IconLeak(AssertionError):
    """PHI still readable in the output's icon image."""


def _icon_text(api, item: Dataset) -> str:
    icon = np.frombuffer(item.PixelData, np.uint8).reshape(item.Rows, item.Columns)
    big = Image.fromarray(icon).resize((item.Columns * 4, item.Rows * 4),
                                       Image.Resampling.BICUBIC)
    return _page_text(api, big)


def test_icon_image_is_not_left_with_the_burned_in_text(page_api) -> None:
    """The icon is a copy of the image: its text must go too (redacted or icon dropped)."""
    bi = burned_instance(0, background="flat")
    ds = bi.dataset
    icon = Image.fromarray(bi.pixels[0, ..., 0]).resize((128, 96), Image.Resampling.BOX)
    item = Dataset()
    item.SamplesPerPixel, item.PhotometricInterpretation = 1, "MONOCHROME2"
    item.Rows, item.Columns = 96, 128
    item.BitsAllocated, item.BitsStored, item.HighBit, item.PixelRepresentation = 8, 8, 7, 0
    item.PixelData = np.asarray(icon, np.uint8).tobytes()
    ds.IconImageSequence = [item]
    tokens = _phi_tokens(bi)
    seen = sorted(t for t in tokens if t in _icon_text(page_api, item))
    assert seen, f"the reader finds none of {sorted(tokens)} in the input icon: vacuous"

    config = {"dicom": {"filterProfile": "DEIDENTIFY_TAG_CONTENTS"},
              "image": {"textRedactionMode": "REDACT_ALL_TEXT"}}
    out, _ = deidentify_bytes(_bytes(ds), build_plan(config, KEY))
    result = _read(out)
    assert result.BurnedInAnnotation == "NO" and CLEAN_PIXEL_CODE in _codes(result)
    for kept in result.get("IconImageSequence", []):
        left = sorted(t for t in tokens if t in _icon_text(page_api, kept))
        if left:
            raise IconLeak(f"icon still reads {left} (input icon read {seen})")


# ------------------------------------------------------- 5. pydicom's own test files


def _pydicom_images() -> list[str]:
    """pydicom's bundled files with pixel data that pydicom decodes, under ~2 MB."""
    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(get_testdata_files()):
            if os.path.getsize(path) > 2_000_000:
                continue
            try:
                ds = dcmread(path)
                if "PixelData" not in ds:
                    continue
                ds.pixel_array  # noqa: B018 - decodable by pydicom, or skipped
            except Exception:
                continue
            found.append(path)
    return found


@pytest.fixture(scope="module")
def pydicom_images() -> list[str]:
    paths = _pydicom_images()
    assert len(paths) >= 40, len(paths)
    return paths


def test_no_text_modes_leave_pixel_data_byte_identical(pydicom_images) -> None:
    """REDACT_NO_TEXT and an unspecified mode neither decode nor re-encode pixels."""
    plans = {"none": _plan(None), "unspecified": _plan("TEXT_REDACTION_MODE_UNSPECIFIED"),
             "no text": _plan("REDACT_NO_TEXT")}
    checked, differ = 0, []
    for path in pydicom_images:
        data = Path(path).read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            src = dcmread(io.BytesIO(data))
            for name, plan in plans.items():
                try:
                    out, _ = deidentify_bytes(data, plan)
                except UnreadableInstance:
                    break  # the engine's reader rejects it (no Study Instance UID, ...)
                ds = _read(out)
                same = (bytes(ds.PixelData) == bytes(src.PixelData)
                        and ds.file_meta.TransferSyntaxUID == src.file_meta.TransferSyntaxUID
                        and ds.get("BurnedInAnnotation") == src.get("BurnedInAnnotation"))
                if not same:
                    differ.append((os.path.basename(path), name))
            else:
                checked += 1
    assert checked >= 40, checked
    assert not differ, differ


def test_all_text_on_pydicom_files_is_decodable_or_a_pixel_error(pydicom_images) -> None:
    """Every decodable input comes out decodable, painted with one value, or is refused
    with a 'pixel data:' error: never an undecodable output.

    One file per pixel format (the smallest): the property is the pixel path's, and
    the real-world corpus test runs every file through REDACT_ALL_TEXT anyway.
    """
    plan = _plan("REDACT_ALL_TEXT", KEEP_ALL)
    problems, redacted, refused = [], 0, 0
    by_format: dict[tuple | None, str] = {}
    for path in sorted(pydicom_images, key=os.path.getsize):
        by_format.setdefault(pixel_format(path), path)  # quiet: it silences pydicom
    assert len(by_format) >= 60, len(by_format)
    for path in by_format.values():
        name = os.path.basename(path)
        data = Path(path).read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out, _ = deidentify_bytes(data, plan)
            except UnreadableInstance:
                continue
            except DeidentifyError as exc:
                refused += 1
                if not str(exc).startswith(("pixel decode failed", "pixel encode failed")):
                    problems.append((name, str(exc)))
                continue
            try:
                before, after = _frames(dcmread(io.BytesIO(data))), _frames(_read(out))
            except Exception as exc:
                problems.append((name, f"undecodable output: {type(exc).__name__}: {exc}"))
                continue
        redacted += 1
        if after.shape != before.shape:
            problems.append((name, f"shape {before.shape} -> {after.shape}"))
            continue
        changed = (after != before).any(axis=-1)
        if _read(out).file_meta.TransferSyntaxUID == SYNTAXES["jpeg-baseline"]:
            # painted in the DCT domain: black blocks, and around them the ring where a
            # decoder's chroma upsampling blends (two pixels each side at most)
            black = (after == (255 if _read(out).PhotometricInterpretation == "MONOCHROME1"
                               else 0)).all(axis=-1) & changed
            stray = changed & ~black & ~_grown(black, 4)
            if stray.any():
                problems.append((name, f"{int(stray.sum())} changed pixels away from black"))
            continue
        values = np.unique(after[changed], axis=0)
        if len(values) > 1:
            problems.append((name, f"changed pixels hold {len(values)} values, not one fill"))
    assert redacted >= 40, (redacted, refused)
    assert not problems, problems


def _grown(mask: np.ndarray, by: int) -> np.ndarray:
    """``mask`` (frames, rows, columns) grown by ``by`` pixels in every direction."""
    padded = np.pad(mask, ((0, 0), (by, by), (by, by)))
    rows, columns = mask.shape[1:]
    out = np.zeros_like(mask)
    for dy in range(2 * by + 1):
        for dx in range(2 * by + 1):
            out |= padded[:, dy:dy + rows, dx:dx + columns]
    return out


# ------------------------------------------------------------------- 6. bad input


def _truncated() -> bytes:
    ds = burned_instance(0).dataset
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    return _bytes(ds)


def _unknown_syntax() -> bytes:
    data = _bytes(burned_instance(0, syntax="rle").dataset)
    old = SYNTAXES["rle"].encode() + b"\0"
    assert data.count(old) == 1
    return data.replace(old, b"1.2.3.4.5.6.7.8.9.10")  # same length: meta stays valid


def _garbage_jpeg() -> bytes:
    ds = burned_instance(0, syntax="jpeg-baseline").dataset
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8 + b"\xff\xd9"])
    return _bytes(ds)


def _float_short() -> bytes:
    ds = burned_instance(0, modality="OT").dataset
    del ds.PixelData
    ds.BitsAllocated = 32
    del ds.BitsStored, ds.HighBit, ds.PixelRepresentation
    ds.FloatPixelData = np.linspace(0, 1, 480 * 64, dtype="<f4").tobytes()  # a tenth
    return _bytes(ds)


def _phi_photometric() -> bytes:
    ds = burned_instance(0).dataset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.PhotometricInterpretation = PHI_VALUES["PatientName"]
    return _bytes(ds)


@pytest.mark.parametrize("make", [_truncated, _unknown_syntax, _garbage_jpeg, _float_short,
                                  _phi_photometric],
                         ids=lambda f: f.__name__.strip("_"))
def test_bad_pixel_data_is_refused_without_quoting_phi(make) -> None:
    """Pixel data that cannot be redacted fails the instance, with a PHI-free reason."""
    with pytest.raises(DeidentifyError) as info:
        deidentify_bytes(make(), _plan("REDACT_ALL_TEXT", BASIC))
    message = str(info.value)
    assert message.startswith(("pixel decode failed", "pixel encode failed")), message
    quoted = [v for v in PHI_VALUES.values() if v in message or _alnum(v) in _alnum(message)]
    assert not quoted, message


@pytest.mark.parametrize("kind", ["f4", "f8"])
def test_float_pixel_data_is_searched_and_painted(kind: str) -> None:
    """Float and Double Float Pixel Data (parametric maps): text drawn as the map's
    extreme values is painted with its finite minimum; the rest of the map, NaNs
    included, is left as it was, and the output keeps its float element."""
    bi = burned_instance(3, modality="OT", background="noise")
    ds = bi.dataset
    grey = _frames(ds)[0, ..., 0].astype(np.float64)
    values = (grey / 255.0 * 7.5 - 2.0).astype(kind)
    values[0, :8] = np.nan  # a map's undefined pixels, away from the text
    keyword = "FloatPixelData" if kind == "f4" else "DoubleFloatPixelData"
    del ds.PixelData, ds.BitsStored, ds.HighBit, ds.PixelRepresentation
    ds.BitsAllocated = 32 if kind == "f4" else 64
    setattr(ds, keyword, values.astype("<" + kind).tobytes())
    out, _ = deidentify_bytes(_bytes(ds), _plan("REDACT_ALL_TEXT", BASIC))
    result = _read(out)
    assert keyword in result and "PixelData" not in result
    after = np.frombuffer(result[keyword].value, dtype="<" + kind).reshape(values.shape)
    fill = np.nanmin(values)
    missed = [r.text for r in bi.regions
              if not (after[r.box[1]:r.box[3], r.box[0]:r.box[2]] == fill).all()]
    assert not missed, missed
    changed = ~((after == values) | (np.isnan(after) & np.isnan(values)))
    assert float((changed & ~_truth(values.shape, bi)).mean()) < 0.03
    assert np.isnan(after[0, :8]).all()
    assert result.BurnedInAnnotation == "NO"


# ------------------------------------------------------------------------ 7. overlays

OVERLAY_NOTE = "Overlay: PHANTOM BRAVO 1961-04-12"


def _with_overlays() -> bytes:
    ds = burned_instance(0).dataset
    mask = np.zeros((480, 640), np.uint8)
    mask[100:120, 50:300] = 1
    for group in (0x6000, 0x6002):
        ds.add_new((group, 0x0010), "US", 480)
        ds.add_new((group, 0x0011), "US", 640)
        ds.add_new((group, 0x0022), "LO", OVERLAY_NOTE)
        ds.add_new((group, 0x0040), "CS", "G")
        ds.add_new((group, 0x0050), "SS", [1, 1])
        ds.add_new((group, 0x0100), "US", 1)
        ds.add_new((group, 0x0102), "US", 0)
        ds.add_new((group, 0x3000), "OW", pack_bits(mask))
    return _bytes(ds)


def _overlay_tags(ds: Dataset) -> list[int]:
    return [int(e.tag) for e in ds if 0x6000 <= e.tag.group <= 0x60FF]


def test_overlays_are_dropped_when_text_is_redacted() -> None:
    """Overlay planes can carry text too: REDACT_ALL_TEXT removes every 60xx element."""
    out, _ = deidentify_bytes(_with_overlays(), _plan("REDACT_ALL_TEXT", KEEP_ALL))
    ds = _read(out)
    assert not _overlay_tags(ds), [hex(t) for t in _overlay_tags(ds)]
    assert OVERLAY_NOTE.encode() not in out
    assert ds.BurnedInAnnotation == "NO"


def test_overlays_stay_when_no_text_is_redacted() -> None:
    """REDACT_NO_TEXT touches neither pixels nor overlays."""
    data = _with_overlays()
    out, _ = deidentify_bytes(data, _plan("REDACT_NO_TEXT", KEEP_ALL))
    src, ds = _read(data), _read(out)
    assert len(_overlay_tags(ds)) == 16
    for tag in _overlay_tags(src):
        assert ds[tag].value == src[tag].value, hex(tag)
    assert bytes(ds.PixelData) == bytes(src.PixelData)
    assert ds.BurnedInAnnotation == "YES"


# ------------------------------------------------------------------ 8. customRegexes


def test_custom_regex_redacts_only_matching_lines_in_no_text_mode() -> None:
    """REDACT_NO_TEXT + customRegexes paints the lines the regex matches and no others."""
    seed = next(s for s in range(40)
                if "MRN 48213377" in [r.text for r in burned_instance(s).regions])
    bi = burned_instance(seed)
    data = _bytes(bi.dataset)
    plan = _plan("REDACT_NO_TEXT", KEEP_ALL, customRegexes=[{"pattern": r"MRN\s*\d+"}])
    out, _ = deidentify_bytes(data, plan)
    before, after = _frames(_read(data))[0, ..., 0], _frames(_read(out))[0, ..., 0]
    fill = before.min()
    state = {}
    for r in bi.regions:
        left, top, right, bottom = r.box
        region = after[top:bottom, left:right]
        state[r.text] = ("painted" if (region == fill).all() else
                         "untouched" if np.array_equal(region, before[top:bottom, left:right])
                         else "partly")
    assert state["MRN 48213377"] == "painted", (seed, state)
    assert [t for t, s in state.items() if t != "MRN 48213377" and s == "untouched"], state
    # Other text stays on purpose, so the instance must not claim to be clean of it.
    assert _read(out).BurnedInAnnotation == bi.dataset.BurnedInAnnotation == "YES"
    basic = _plan("REDACT_NO_TEXT", BASIC, customRegexes=[{"pattern": r"MRN\s*\d+"}])
    codes = _codes(_read(deidentify_bytes(data, basic)[0]))
    assert codes and CLEAN_PIXEL_CODE not in codes


@pytest.mark.parametrize("patterns", [["MRN("], ["ok", "[a-"]])
def test_bad_custom_regex_is_a_config_error_naming_its_path(patterns) -> None:
    """A regex that does not compile is refused up front, with where it is."""
    index = len(patterns) - 1
    with pytest.raises(ConfigError) as info:
        _plan("REDACT_NO_TEXT", customRegexes=[{"pattern": p} for p in patterns])
    assert info.value.path == f"config.image.customRegexes[{index}].pattern"
    assert f"config.image.customRegexes[{index}].pattern" in str(info.value)


@pytest.mark.parametrize(("pattern", "why"), [
    (r"(MRN)\s*\1", "invalid escape sequence"),  # a backreference: Python re, not RE2
    (r"(?<=MRN )\d+", "invalid perl operator"),  # lookbehind
    ("a{1001}", "invalid repetition size"),
])
def test_custom_regex_outside_re2_is_a_config_error(pattern: str, why: str) -> None:
    """Patterns are RE2, the syntax Google's de-identification takes: what needs
    backtracking is refused up front with RE2's reason, not run."""
    with pytest.raises(ConfigError) as info:
        _plan("REDACT_NO_TEXT", customRegexes=[{"pattern": pattern}])
    assert why in str(info.value) and "RE2" in str(info.value)


@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(a|aa)*c", r"(x+x+)+y",
                                     "(" * 500 + "a*" + ")*" * 500 + "#"])
def test_custom_regex_matches_in_linear_time(pattern: str) -> None:
    """Backtracking patterns that take Python's ``re`` 2**n steps on a line of n
    characters (an audit's ``customRegexes`` kept an operation pending for minutes)
    answer at once: RE2 matches in time linear in the text."""
    [regex] = _plan("REDACT_NO_TEXT", customRegexes=[{"pattern": pattern}]).image.regexes
    text = "a" * 5_000 + "!" if "a" in pattern else "x" * 5_000
    start = time.perf_counter()
    assert not regex.matches(text)
    assert time.perf_counter() - start < 0.5
