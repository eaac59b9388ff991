"""QIDO person-name wildcards: the same answers as a regex, without its backtracking."""

from __future__ import annotations

import random
import re
import time

from dicom_deid.server.catalog import wildcard_ci, wildcard_match


def _regex(pattern: str, value: str) -> bool:
    return re.fullmatch("".join(".*" if c == "*" else "." if c == "?" else re.escape(c)
                                for c in pattern), value, re.DOTALL) is not None


def test_agrees_with_the_regex_on_every_small_case() -> None:
    rng = random.Random(15)
    for _ in range(50_000):
        pattern = "".join(rng.choice("ab*?") for _ in range(rng.randint(0, 7)))
        value = "".join(rng.choice("ab^") for _ in range(rng.randint(0, 9)))
        assert wildcard_match(pattern, value) == _regex(pattern, value), (pattern, value)


def test_case_folded_in_any_script() -> None:
    assert wildcard_ci("MÜLLER^JÖRG", "müller^j*")
    assert wildcard_ci("Straße^Anna", "STRASSE*")
    assert not wildcard_ci(None, "*")


def test_backtracking_patterns_cost_no_more_than_pattern_times_value() -> None:
    """``*?*?...#`` made the regex matcher run for minutes on one row; the walk counts
    its steps here instead of timing them."""
    steps = 0

    class Counting(str):
        def __getitem__(self, index):  # noqa: ANN001, ANN204 - str's own signature
            nonlocal steps
            steps += 1
            return str.__getitem__(self, index)

    pattern = "*?" * 15 + "#"
    value = "Mustermann-Schmidt^Maximilian Alexander^von^Dr.^Jr." * 2
    assert not wildcard_match(Counting(pattern), Counting(value))
    assert steps <= 4 * (len(pattern) + 1) * (len(value) + 1)


def test_import_wildcards_match_by_segment_in_linear_time() -> None:
    """``dicomStores.import`` wildcards (``*`` in a segment, ``**`` across, ``?`` one
    character) are matched by RE2: ``*a`` x 30 + ``#`` against a 1,000-character name
    answers at once, where the Python regex it replaced backtracked over every split."""
    from dicom_deid.server.transfer import _pattern

    assert _pattern("in/*.dcm").fullmatch("in/x.dcm")
    assert not _pattern("in/*.dcm").fullmatch("in/a/x.dcm")
    assert _pattern("in/**.dcm").fullmatch("in/a/b/x.dcm")
    assert _pattern("in/?.dcm").fullmatch("in/x.dcm")
    assert not _pattern("in/?.dcm").fullmatch("in/xy.dcm")
    assert _pattern("a (b)+[c].dcm").fullmatch("a (b)+[c].dcm")
    start = time.perf_counter()
    assert not _pattern("*a" * 30 + "#").fullmatch("a" * 1000)
    assert time.perf_counter() - start < 0.5
