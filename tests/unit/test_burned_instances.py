"""The burned-in text instance corpus: valid files, right pixels, visible text.

Real codecs and tools throughout (pydicom's encoders, pylibjpeg decoders, dcmtk's
dcmcjpeg / dcmcjpls / dcmdump), over a representative matrix rather than the whole
cross product: every photometric interpretation at 8 bits, grey at 12/16 bits and
signed 16, every transfer syntax in grey and (where it holds colour) RGB, and cine
loops of 10 frames.
"""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import pytest
from pydicom import dcmread, dcmwrite
from pydicom.pixels import pixel_array
from pydicom.uid import UID

from dicom_deid.corpus.burned_instances import (
    LOSSY,
    PHI_VALUES,
    PHOTOMETRICS,
    SYNTAXES,
    BurnedInstance,
    burned_instance,
)

DCMDUMP = shutil.which("dcmdump") or "/usr/bin/dcmdump"
needs_dcmtk = pytest.mark.skipif(not shutil.which(DCMDUMP),
                                 reason="dcmtk (dcmdump, dcmcjpeg, dcmcjpls) is not installed")

# (photometric, bits, signed, syntax, frames, modality)
MATRIX = [
    # every photometric interpretation at 8 bits
    ("MONOCHROME2", 8, False, "explicit", 1, "US"),
    ("MONOCHROME1", 8, False, "explicit", 1, "OT"),
    ("RGB", 8, False, "explicit", 1, "US"),
    ("YBR_FULL", 8, False, "explicit", 1, "US"),
    ("YBR_FULL_422", 8, False, "jpeg-baseline", 1, "US"),
    ("PALETTE COLOR", 8, False, "explicit", 1, "US"),
    # grey depths
    ("MONOCHROME2", 12, False, "explicit", 1, "OT"),
    ("MONOCHROME2", 16, False, "explicit", 1, "OT"),
    ("MONOCHROME2", 16, True, "explicit", 1, "OT"),
    # every syntax, grey and colour
    ("MONOCHROME2", 8, False, "implicit", 1, "US"),
    ("RGB", 8, False, "implicit", 1, "US"),
    ("MONOCHROME2", 12, False, "deflated", 1, "OT"),
    ("RGB", 8, False, "deflated", 1, "US"),
    ("MONOCHROME2", 16, True, "rle", 1, "OT"),
    ("RGB", 8, False, "rle", 1, "US"),
    ("YBR_FULL", 8, False, "rle", 1, "US"),
    ("PALETTE COLOR", 8, False, "rle", 1, "US"),
    ("MONOCHROME2", 8, False, "jpeg-baseline", 1, "US"),
    ("MONOCHROME1", 8, False, "jpeg-baseline", 1, "OT"),
    ("RGB", 8, False, "jpeg-baseline", 1, "US"),
    ("MONOCHROME2", 12, False, "jpeg-extended", 1, "OT"),
    ("MONOCHROME2", 16, True, "jpeg-lossless", 1, "OT"),
    ("RGB", 8, False, "jpeg-lossless", 1, "US"),
    ("MONOCHROME2", 12, False, "jpeg-lossless-p14", 1, "OT"),
    ("RGB", 8, False, "jpeg-lossless-p14", 1, "US"),
    ("MONOCHROME2", 16, True, "jpeg-ls", 1, "OT"),
    ("RGB", 8, False, "jpeg-ls", 1, "US"),
    ("PALETTE COLOR", 8, False, "jpeg-ls", 1, "US"),
    ("MONOCHROME2", 12, False, "jpeg-ls-near", 1, "OT"),
    ("RGB", 8, False, "jpeg-ls-near", 1, "US"),
    ("MONOCHROME2", 16, True, "j2k-lossless", 1, "OT"),
    ("RGB", 8, False, "j2k-lossless", 1, "US"),
    ("MONOCHROME2", 12, False, "j2k", 1, "OT"),
    ("RGB", 8, False, "j2k", 1, "US"),
    # cine loops
    ("MONOCHROME2", 8, False, "explicit", 10, "US"),
    ("MONOCHROME2", 8, False, "rle", 10, "US"),
    ("RGB", 8, False, "rle", 10, "US"),
]


def _id(case: tuple) -> str:
    photometric, bits, signed, syntax, frames, modality = case
    return (f"{photometric.replace(' ', '_')}-{bits}{'s' if signed else ''}-{syntax}"
            f"-{frames}f-{modality}")


def _make(case: tuple, seed: int, **kwargs: object) -> BurnedInstance:
    photometric, bits, signed, syntax, frames, modality = case
    return burned_instance(seed, photometric=photometric, bits=bits, signed=signed,
                           syntax=syntax, frames=frames, modality=modality, **kwargs)


def _decoded(ds) -> np.ndarray:
    """Decoded pixels as (frames, rows, cols, samples), in the space ``pixels`` uses:
    stored values, except for YBR_FULL_422 (JPEG baseline), which decodes to RGB."""
    arr = pixel_array(ds, as_rgb=ds.PhotometricInterpretation == "YBR_FULL_422")
    return arr.reshape(int(ds.get("NumberOfFrames", 1) or 1), ds.Rows, ds.Columns,
                       ds.SamplesPerPixel)


def _to_8bit(arr: np.ndarray, bits: int) -> np.ndarray:
    return arr.astype(np.float64) * 255.0 / ((1 << bits) - 1)


def _written(bi: BurnedInstance, tmp_path) -> tuple[bytes, object]:
    path = tmp_path / "instance.dcm"
    dcmwrite(path, bi.dataset, enforce_file_format=True)
    done = subprocess.run([DCMDUMP, str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "E:" not in done.stderr, done.stderr
    return path.read_bytes(), dcmread(path)


@needs_dcmtk
@pytest.mark.parametrize("case", MATRIX, ids=_id)
def test_instance_is_valid_decodes_right_and_shows_its_text(case, tmp_path) -> None:
    photometric, bits, signed, syntax, frames, modality = case
    seed = MATRIX.index(case)
    bi = _make(case, seed)
    _, ds = _written(bi, tmp_path)

    # header: transfer syntax, pixel module
    assert ds.file_meta.TransferSyntaxUID == SYNTAXES[syntax]
    samples = 1 if photometric in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR") else 3
    expected_pi = {("RGB", "j2k-lossless"): "YBR_RCT", ("RGB", "j2k"): "YBR_ICT"}.get(
        (photometric, syntax), photometric)
    assert ds.PhotometricInterpretation == expected_pi
    assert ds.SamplesPerPixel == samples
    assert (ds.Rows, ds.Columns) == (480, 640)
    assert ds.BitsAllocated == (8 if bits == 8 else 16)
    assert ds.BitsStored == bits and ds.HighBit == bits - 1
    assert ds.PixelRepresentation == int(signed)
    if samples == 3:
        assert ds.PlanarConfiguration == 0
    if frames > 1:
        assert ds.NumberOfFrames == frames
        assert ds.FrameIncrementPointer == 0x00181063 and float(ds.FrameTime) > 0
    else:
        assert int(ds.get("NumberOfFrames", 1) or 1) == 1
    assert ds.LossyImageCompression == ("01" if syntax in LOSSY else "00")
    if syntax in LOSSY:
        assert float(ds.LossyImageCompressionRatio) > 1
        assert ds.ImageType[0] == "DERIVED"
    sop = {"US": "Ultrasound", "OT": "Secondary Capture"}[modality]
    assert sop in UID(ds.SOPClassUID).name
    assert ("Multi-frame" in UID(ds.SOPClassUID).name) == (frames > 1)

    # pixels
    assert bi.pixels.shape == (frames, 480, 640, samples)
    decoded = _decoded(ds)
    assert decoded.shape == bi.pixels.shape
    if syntax in LOSSY:
        error = np.abs(_to_8bit(decoded, bits) - _to_8bit(bi.pixels, bits))
        assert error.mean() < 4.0
        if syntax == "jpeg-ls-near":
            assert error.max() <= 2 * 255 / ((1 << bits) - 1) + 1e-9
    else:
        assert decoded.dtype == bi.pixels.dtype
        assert np.array_equal(decoded, bi.pixels)
    if signed:
        assert bi.pixels.min() < 0 < bi.pixels.max()
    if bits == 12:
        assert 255 < bi.pixels.max() <= 4095

    # the text is visible in every region of every frame: compared with the same
    # instance drawn without text, every box differs clearly, and (for lossy syntaxes)
    # far more than the compression noise elsewhere
    clean = _make(case, seed, strings=0).pixels
    assert bi.regions
    diff = np.abs(_to_8bit(decoded, bits) - _to_8bit(clean, bits)).mean(axis=-1)
    outside = np.ones(diff.shape[1:], bool)
    for r in bi.regions:
        outside[r.box[1]:r.box[3], r.box[0]:r.box[2]] = False
    noise = float(diff[0][outside].mean())
    if syntax not in LOSSY:
        assert noise == 0.0
    for r in bi.regions:
        left, top, right, bottom = r.box
        shown = float(diff[0, top:bottom, left:right].mean())
        assert shown > 1.0 and shown > 3 * noise, (r, shown, noise)


@needs_dcmtk
@pytest.mark.parametrize("syntax", ["explicit", "rle"])
@pytest.mark.parametrize("photometric", ["MONOCHROME2", "RGB"])
def test_cine_text_is_static_while_the_image_moves(syntax, photometric, tmp_path) -> None:
    bi = burned_instance(7, photometric=photometric, syntax=syntax, frames=10)
    _, ds = _written(bi, tmp_path)
    decoded = _decoded(ds)
    assert decoded.shape[0] == 10
    still = np.zeros(decoded.shape[1:3], bool)
    for r in bi.regions:
        left, top, right, bottom = r.box
        still[top:bottom, left:right] = True
        for frame in decoded[1:]:
            assert np.array_equal(frame[top:bottom, left:right],
                                  decoded[0, top:bottom, left:right])
    for f in range(1, 10):
        moved = np.abs(decoded[f].astype(float) - decoded[f - 1].astype(float))[~still]
        assert moved.mean() > 1.0


def test_same_seed_same_bytes_and_variants_do_not_collide(tmp_path) -> None:
    cases = [dict(syntax="explicit"), dict(syntax="deflated"), dict(syntax="rle", frames=3),
             dict(syntax="j2k", photometric="RGB"),
             dict(syntax="jpeg-baseline", photometric="YBR_FULL_422"),
             dict(syntax="jpeg-ls-near")]
    uids = set()
    for kwargs in cases:
        first, second = io.BytesIO(), io.BytesIO()
        a, b = burned_instance(11, **kwargs), burned_instance(11, **kwargs)
        dcmwrite(first, a.dataset, enforce_file_format=True)
        dcmwrite(second, b.dataset, enforce_file_format=True)
        assert first.getvalue() == second.getvalue(), kwargs
        assert a.regions == b.regions and np.array_equal(a.pixels, b.pixels)
        uids.add(a.dataset.SOPInstanceUID)
        assert a.dataset.SOPInstanceUID.startswith("2.25.")
        assert a.dataset.file_meta.MediaStorageSOPInstanceUID == a.dataset.SOPInstanceUID
        assert a.dataset.StudyInstanceUID == burned_instance(11).dataset.StudyInstanceUID
    assert len(uids) == len(cases)
    other = burned_instance(12)
    assert other.dataset.StudyInstanceUID != burned_instance(11).dataset.StudyInstanceUID
    assert not np.array_equal(other.pixels, burned_instance(11).pixels)


def test_header_carries_the_phi_the_pixels_spell() -> None:
    bi = burned_instance(3, strings=12)
    ds = bi.dataset
    expected = {
        "PatientName": "SYNTHETIC^ALPHA", "ReferringPhysicianName": "PHANTOM^BRAVO",
        "PatientBirthDate": "19610412", "PatientID": "48213377",
        "AccessionNumber": "A1029384", "InstitutionName": "ST MARY CLINIC",
        "StudyDate": "20210307", "StudyTime": "142200", "OtherPatientIDs": "7721-3340",
    }
    assert expected == PHI_VALUES
    for keyword, value in expected.items():
        assert str(ds[keyword].value) == value, keyword
    assert ds.BurnedInAnnotation == "YES" and ds.Modality == "US"
    # each PHI string drawn corresponds to one of those values
    spelled = {"SYNTHETIC^ALPHA": "SYNTHETIC^ALPHA", "PHANTOM, BRAVO": "PHANTOM^BRAVO",
               "DOB 1961-04-12": "19610412", "MRN 48213377": "48213377",
               "ACC A1029384": "A1029384", "ST MARY CLINIC": "ST MARY CLINIC",
               "03/07/2021 14:22": "20210307", "ID 7721-3340": "7721-3340"}
    phi = [r.text for r in bi.regions if r.phi]
    assert phi and all(spelled[text] in expected.values() for text in phi)


def test_grey_encodings_display_alike() -> None:
    m2 = burned_instance(5, modality="OT").pixels.astype(int)
    m1 = burned_instance(5, photometric="MONOCHROME1", modality="OT").pixels.astype(int)
    assert np.array_equal(m1, 255 - m2)  # inverted stored values, same display
    s16 = burned_instance(5, bits=16, signed=True, modality="OT").pixels.astype(int)
    assert np.array_equal(s16, m2 * 257 - 32768)


def test_palette_is_a_monotonic_non_identity_colour_map() -> None:
    ds = burned_instance(2, photometric="PALETTE COLOR").dataset
    luts = []
    for channel in ("Red", "Green", "Blue"):
        assert list(ds[f"{channel}PaletteColorLookupTableDescriptor"].value) == [256, 0, 16]
        luts.append(np.frombuffer(ds[f"{channel}PaletteColorLookupTableData"].value, "<u2"))
    red, green, blue = (lut.astype(float) for lut in luts)
    assert len(red) == 256 and not (np.array_equal(red, green) and np.array_equal(green, blue))
    luma = 0.299 * red + 0.587 * green + 0.114 * blue
    assert np.all(np.diff(luma) > 0)


def test_colour_text_is_visible_in_luma() -> None:
    for seed in range(4):  # the ink colour is picked by the seed
        bi = burned_instance(seed, photometric="RGB")
        clean = burned_instance(seed, photometric="RGB", strings=0).pixels
        weights = np.array([0.299, 0.587, 0.114])
        luma = (bi.pixels[0].astype(float) @ weights) - (clean[0].astype(float) @ weights)
        for r in bi.regions:
            left, top, right, bottom = r.box
            assert np.abs(luma[top:bottom, left:right]).max() >= 15


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(syntax="jpeg-baseline", bits=16, modality="OT"), "8-bit"),
    (dict(photometric="YBR_FULL_422"), "YBR_FULL_422"),
    (dict(photometric="YBR_FULL", syntax="jpeg-baseline"), "YBR_FULL"),
    (dict(photometric="RGB", bits=16, modality="OT"), "8 bits"),
    (dict(photometric="PALETTE COLOR", syntax="j2k"), "palette"),
    (dict(syntax="jpeg-extended", bits=16, modality="OT"), "jpeg-extended"),
    (dict(bits=16), "ultrasound"),
    (dict(photometric="MONOCHROME1"), "ultrasound"),
    (dict(photometric="RGB", signed=True), "signed"),
    (dict(photometric="XYZ"), "photometric"),
    (dict(syntax="jpeg-xl"), "syntax"),
    (dict(bits=10, modality="OT"), "bits"),
    (dict(frames=0), "frames"),
    (dict(photometric="PALETTE COLOR", frames=3, modality="OT"), "PALETTE COLOR"),
])
def test_invalid_combinations_are_refused(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        burned_instance(0, **kwargs)


def test_every_syntax_and_photometric_is_in_the_matrix() -> None:
    assert {case[3] for case in MATRIX} == set(SYNTAXES)
    assert {case[0] for case in MATRIX} == set(PHOTOMETRICS)
    assert SYNTAXES["jpeg-lossless"] == "1.2.840.10008.1.2.4.70"
    assert SYNTAXES["jpeg-lossless-p14"] == "1.2.840.10008.1.2.4.57"
