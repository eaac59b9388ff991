"""The OCR check and the header search on their own, without a server.

Why test private helpers: the store-level tests use one RGB image; these cover every
pixel format the verifier must render (MONOCHROME1 shown inverted, more than 8 bits,
signed, palette, YBR from RLE and JPEG, multi-frame) and the digit-boundary rule of the
header search, whose edge cases a whole run would hit only by chance.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from dicom_deid_airflow.verification.checks import found
from dicom_deid_airflow.verification.pixel_text import check_pixels
from pydicom.data import get_testdata_file
from pydicom.filereader import dcmread

from dicom_deid.corpus.burned_instances import burned_instance

FORMATS = [
    {"photometric": "MONOCHROME1", "bits": 12, "modality": "OT"},
    {"photometric": "MONOCHROME2", "bits": 16, "signed": True, "modality": "OT"},
    {"photometric": "PALETTE COLOR"},
    {"photometric": "YBR_FULL", "syntax": "rle"},
    {"photometric": "YBR_FULL_422", "syntax": "jpeg-baseline"},
    {"photometric": "MONOCHROME2", "frames": 3},
]


@pytest.mark.parametrize("kwargs", FORMATS, ids=lambda k: "-".join(map(str, k.values())))
def test_burned_in_phi_is_read_in_every_pixel_format(kwargs: dict) -> None:
    ds = burned_instance(5, background="flat", **kwargs).dataset
    reasons, words = check_pixels(ds, copy.deepcopy(ds))
    assert any(r.endswith(":in_pixels") for r in reasons), reasons
    assert words > 0


def test_a_blank_frame_is_clean() -> None:
    ds = burned_instance(5, background="flat").dataset
    dest = copy.deepcopy(ds)
    dest.PixelData = np.zeros((dest.Rows, dest.Columns), np.uint8).tobytes()
    assert check_pixels(ds, dest) == ([], 0)


def test_an_instance_without_pixels_has_nothing_to_read() -> None:
    plan = dcmread(get_testdata_file("rtplan.dcm"))
    assert check_pixels(plan, copy.deepcopy(plan)) == ([], 0)


def test_numbers_inside_longer_numbers_are_not_leaks() -> None:
    header = b"\x00UI2.25.8812345990\x00LO ID1234X\x00"
    assert not found(b"12345", header)  # inside the UID's digits
    assert found(b"1234", header)  # "ID1234X": letters around it
    assert found(b"2.25.8812345990", header)
    assert not found(b"QZ99", header)
