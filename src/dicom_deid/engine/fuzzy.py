"""Approximate substring matching, for text read by OCR.

Tesseract misreads a character now and then (``LI`` as ``U``, ``0`` as ``O``), so
"does this identifier appear in what was read" has to allow a few edits. The
de-identifier uses it to decide which burned-in words to paint over, verification
to decide whether a burned-in identifier survived: one definition, so both agree.
"""

from __future__ import annotations


def fuzzy_in(needle: str, haystack: str, max_edits: int) -> bool:
    """Whether ``needle`` occurs somewhere in ``haystack`` with at most ``max_edits``
    substitutions, insertions or deletions (Sellers' algorithm: edit distance where a
    match may start and end anywhere in the haystack). Work is
    ``len(needle) * len(haystack)``; callers pass OCR text of one frame or box."""
    if needle in haystack:
        return True
    if max_edits <= 0 or not needle:
        return False
    m = len(needle)
    if m <= max_edits:
        return True
    previous = list(range(m + 1))
    for char in haystack:
        current = [0]
        for j in range(1, m + 1):
            cost = needle[j - 1] != char
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost))
        if current[m] <= max_edits:
            return True
        previous = current
    return False
