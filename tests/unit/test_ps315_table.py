"""The PS3.15 table as the engine sees it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dicom_deid.engine.ps315 import table

SHARED = Path(__file__).resolve().parents[3] / "shared" / "reference" / "ps3.15-table-e1-1.json"


def test_every_row_is_loaded():
    assert len(table()) == 621
    assert sorted(r.tag for r in table().wildcard_rules) == [
        "(50XX,XXXX)", "(60XX,3000)", "(60XX,4000)"]


@pytest.mark.skipif(not SHARED.exists(), reason="shared/ reference not beside the checkout")
def test_packaged_copy_matches_the_shared_reference():
    packaged = Path(__file__).resolve().parents[2] / "src/dicom_deid/engine/data"
    assert json.loads((packaged / SHARED.name).read_text()) == json.loads(SHARED.read_text())


@pytest.mark.parametrize("tag, action", [
    (0x00100010, "Z"),      # Patient's Name
    (0x00080018, "U"),      # SOP Instance UID
    (0x00080050, "Z"),      # Accession Number
    (0x00184000, "X"),      # Acquisition Comments
    (0x0008002A, "X/Z/D"),  # Acquisition DateTime
])
def test_exact_rows(tag, action):
    assert table().rule(tag).action() == action


@pytest.mark.parametrize("tag, name", [
    (0x50000010, "Curve Data"),
    (0x501E3000, "Curve Data"),
    (0x60004000, "Overlay Comments"),
    (0x60124000, "Overlay Comments"),
    (0x60003000, "Overlay Data"),
    (0x601E3000, "Overlay Data"),
])
def test_wildcard_rows_cover_every_repeating_group(tag, name):
    rule = table().rule(tag)
    assert rule is not None and rule.name == name
    assert rule.action() == "X"


def test_odd_groups_are_private_and_unlisted_tags_unmatched():
    for tag in (0x60014000, 0x00091001, 0x7FE10010):  # odd groups: private attributes
        rule = table().rule(tag)
        assert rule is table().private and rule.action() == "X"
        assert rule.action(("rtnSafePrivOpt",)) == "C"
    assert table().rule(0x00280010) is None  # Rows: not in the table, kept


def test_options_override_the_basic_action():
    acquisition_date = table().rule(0x00080022)
    assert acquisition_date.action() == "X/Z"
    assert acquisition_date.action(("rtnLongFullDatesOpt",)) == "K"
    assert acquisition_date.action(("rtnLongModifDatesOpt",)) == "C"
    # Retaining beats cleaning when both are selected.
    assert acquisition_date.action(("rtnLongModifDatesOpt", "rtnLongFullDatesOpt")) == "K"
    assert table().rule(0x00080018).action(("rtnUIDsOpt",)) == "K"
