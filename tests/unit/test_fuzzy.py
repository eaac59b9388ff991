"""Approximate matching of OCR text: the rule both the de-identifier (what to paint)
and verification (what survived) apply, so they cannot disagree."""

from __future__ import annotations

import pytest

from dicom_deid.engine.fuzzy import fuzzy_in


@pytest.mark.parametrize(("needle", "haystack", "edits", "found"), [
    ("SMITHJOHN", "XXSMITHJOHNYY", 0, True),      # exact, anywhere
    ("SMITHJOHN", "XXSMlTHJOHNYY", 0, False),     # one misread, none allowed
    ("SMITHJOHN", "XXSMlTHJOHNYY", 1, True),      # substitution
    ("SMITHJOHN", "SMTHJOHN", 1, True),           # deletion
    ("SMITHJOHN", "SMIITHJOHN", 1, True),         # insertion
    ("SMITHJOHN", "SMXTHJXHN", 1, False),         # two edits, one allowed
    ("SMITHJOHN", "SMXTHJXHN", 2, True),
    ("19800101", "DOB19800101AGE", 1, True),
    ("WILIAMS", "WIUAMS", 2, True),               # OCR reads LI as U: two edits
    ("ABCDEF", "", 1, False),
    ("", "ANY", 0, True),                         # the empty string is in everything
])
def test_sellers_matching(needle: str, haystack: str, edits: int, found: bool) -> None:
    assert fuzzy_in(needle, haystack, edits) is found


def test_a_needle_no_longer_than_the_edits_allowed_always_matches() -> None:
    """Deleting every character leaves the empty string: the callers' minimum lengths
    (four characters and more) keep that from matching everything."""
    assert fuzzy_in("AB", "XYZ", 2)


def test_work_is_bounded_by_the_two_lengths() -> None:
    """A frame's worth of OCR text against a long identifier returns promptly."""
    assert not fuzzy_in("Q" * 64, "A" * 20_000, 8)
