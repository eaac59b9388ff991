"""UID replacement and date shifting: deterministic, keyed, interval-preserving."""

from __future__ import annotations

from datetime import date

import pytest

from dicom_deid.engine.dates import MAX_SHIFT_DAYS, shift_da, shift_days, shift_dt
from dicom_deid.engine.uids import new_uid

KEY = b"k" * 32


def test_uids_are_deterministic_keyed_and_valid():
    original = "1.2.840.113619.2.55.3.604688119.969.1268071029.320"
    uid = new_uid(original, KEY)
    assert uid == new_uid(original, KEY)
    assert uid != new_uid(original, b"other key")
    assert uid != new_uid(original + "1", KEY)
    assert uid.startswith("2.25.") and len(uid) <= 64
    assert all(part.isdigit() and (part == "0" or not part.startswith("0"))
               for part in uid.split("."))


def test_shift_is_per_patient_nonzero_and_bounded():
    shifts = {shift_days(f"PATIENT-{i}", KEY) for i in range(500)}
    assert 0 not in shifts
    assert min(shifts) >= -MAX_SHIFT_DAYS and max(shifts) <= MAX_SHIFT_DAYS
    assert len(shifts) > 100  # patients get different shifts
    assert shift_days("PATIENT-1", KEY) == shift_days("PATIENT-1", KEY)


def test_intervals_between_a_patients_dates_are_kept():
    days = shift_days("PATIENT-7", KEY)
    a, b = shift_da("20200131", days), shift_da("20210301", days)
    gap = date(2021, 3, 1) - date(2020, 1, 31)
    assert date(int(b[:4]), int(b[4:6]), int(b[6:])) - date(int(a[:4]), int(a[4:6]),
                                                             int(a[6:])) == gap
    assert a != "20200131"


@pytest.mark.parametrize("value, days, expected", [
    ("20200101", -1, "20191231"),
    ("20200228", 1, "20200229"),
    ("202003", -1, "202002"),      # partial: shifted as its first day
    ("2020", 10, "2020"),
    ("20200101\\20200105", 2, "20200103\\20200107"),
    ("", 5, ""),
    ("2020013", 1, None),          # malformed
    ("20201301", 1, None),         # no such month
    ("JOHN", 1, None),
])
def test_da(value, days, expected):
    assert shift_da(value, days) == expected


@pytest.mark.parametrize("value, days, expected", [
    ("20200101120000.123456+0100", -1, "20191231120000.123456+0100"),
    ("20200101", 3, "20200104"),
    ("2020010112", 1, "2020010212"),
    ("2020", 1, "2020"),
    ("20200101T12", 1, None),
])
def test_dt(value, days, expected):
    assert shift_dt(value, days) == expected
