"""Which lines of burned-in text are PHI (REDACT_SENSITIVE_TEXT and ``customRegexes``).

Each line the text finder (``text_detector``) found is read with both readers and judged
by the same detectors that clean free text in attributes (``infotypes``: names, dates,
ages, phone numbers, IDs, locations...), by the instance's own identifying values, and
by the config's custom regexes. Two choices keep the error on the safe side:

* a line is kept only if it was *read*: a line Tesseract cannot read with confidence
  (under 60) is redacted, since an unread name is still a name, unless what was read
  has the shape of a measurement (short labels, units, numbers), which Tesseract is
  often unsure of on noise;
* the instance's own values are matched after OCR-style normalisation (letters and
  digits only) allowing one misread character in six, because OCR confuses ``1``/``7``
  and drops ``^`` while a near-miss of the patient's ID is still their ID.

Decisions are per line: the whole line holding a match is redacted (``groupIndexes``
narrow what a custom regex matches, not the box).
"""

from __future__ import annotations

import re

import numpy as np

from . import infotypes, ocr_rapid, text_split
from .fuzzy import fuzzy_in
from .ocr import read_line
from .ocr_rapid import recognise
from .plan import CustomRegex
from .text_regions import Box

MIN_CONFIDENCE = 60.0
# What measurement overlays are made of: short upper-case labels and units (HR, TI,
# cm, MHz), numbers with decimals, percent or a unit, and separators. A line made only
# of these, holding a number, is kept even when read with low confidence (Tesseract is
# unsure of short tokens on noise); a name or an ID does not fit this shape.
_MEASUREMENT_TOKEN = re.compile(
    r"[A-Za-z]{1,4}|[0-9]{1,4}(?:[.,][0-9]{1,3})?(?:%|[A-Za-z]{1,4}(?:/[A-Za-z]{1,2})?)?"
    r"|[/:=+\-]|[A-Za-z]{1,3}/[A-Za-z]{1,2}|[A-Za-z]{1,3}[0-9]{1,2}[.,][0-9]{1,3}")
# Letters OCR reads for digits inside numbers (``T1O.4`` is ``TI 0.4``).
_AS_DIGIT = str.maketrans("OoDQlI|SB", "000011158")
_MIN_MEASUREMENT_CONFIDENCE = 10.0
# Dates as OCR reads them: a character lost or misread still leaves digit groups
# joined by one kind of date separator (``03/07/202``), or a doubled separator where a
# digit was lost (``3//91``); no measurement looks like that (``1.1/1.06`` mixes them).
_PARTIAL_DATE = re.compile(r"\d{1,4}\s?([/.\-])\s?\d{1,2}\s?\1\s?\d{2,4}"
                           r"|\d{1,2}\s?([/.\-])\2\s?\d{2,4}")


# A time of day (``14:22``, ``05:24:57PM``): beside a date it is the rest of a
# timestamp (the study's or the acquisition's), identifying as the date is.
_TIME = re.compile(r"(?<!\d)\d{1,2}:\d{2}(?::\d{2})?")


def _alnum(text: str) -> str:
    return "".join(c for c in text.upper() if c.isalnum())


def is_sensitive(text: str, known: dict[str, str], regexes: tuple[CustomRegex, ...] = ()) -> bool:
    """Whether a line of text read from pixels identifies someone."""
    if infotypes.find(text, known) or any(r.matches(text) for r in regexes) or \
            _PARTIAL_DATE.search(text):
        return True
    flat = _alnum(text)
    # one edit per six characters, at least one: OCR reads ``LI`` as ``U``
    return any(fuzzy_in(value, flat, max(1, len(value) // 6))
               for value in {_alnum(v) for v in known} if len(value) >= 4)


def part_of_known(text: str, known: dict[str, str]) -> bool:
    """Whether a word of ``text`` is a word of one of the instance's own values, or a
    piece of one: an institution's name burned in on two lines (``PHILIPS`` over
    ``Healthcare``), a name cut off at the image's edge (``CLEVELAN..``). Words of four
    characters or more, one misread character in six forgiven."""
    parts = {w for v in known for w in re.split(r"[^0-9A-Z]+", v.upper()) if len(w) >= 4}
    for token in re.split(r"[^0-9A-Z]+", text.upper()):
        if len(token) >= 4 and any(
                fuzzy_in(token, part, len(token) // 6) for part in parts
                if len(part) >= len(token)):
            return True
    return False


def _token(word: str) -> str:
    """A word without the marks OCR adds at its ends (quotes, dashes, specks), and with
    letters read for digits put back when the word holds a number."""
    start, end = 0, len(word)
    while start < end and not (word[start].isalnum() or word[start] in "%/"):
        start += 1
    while end > start and not (word[end - 1].isalnum() or word[end - 1] in "%/"):
        end -= 1
    word = word[start:end]
    if any(c.isdigit() for c in word):
        head = len(word) - len(word.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))
        body = word[head:]
        digits = len(body) - len(body.lstrip("0123456789.,OoDQlI|SB"))
        word = word[:head] + body[:digits].translate(_AS_DIGIT) + body[digits:]
    return word


def _measurement(text: str) -> bool:
    """Measurement-shaped: labels, units and numbers, with a number (``HR 72``), or a
    lone laterality/orientation letter pair (``R``, ``LAT``-style markers are longer)."""
    tokens = [_token(t) for t in text.split()]
    tokens = [t for t in tokens if t]
    if not tokens or not all(_MEASUREMENT_TOKEN.fullmatch(t) for t in tokens):
        return False
    return any(c.isdigit() for c in text) or (len(tokens) == 1 and len(tokens[0]) <= 2)


def keeps(text: str, confidence: float, known: dict[str, str],
          regexes: tuple[CustomRegex, ...] = ()) -> bool:
    """Whether a line read from pixels may stay under REDACT_SENSITIVE_TEXT."""
    if not any(c.isalnum() for c in text) or is_sensitive(text, known, regexes):
        return False
    return confidence >= MIN_CONFIDENCE or (
        confidence >= _MIN_MEASUREMENT_CONFIDENCE and _measurement(text))


Reading = tuple[tuple[str, float], tuple[str, float]]  # (Tesseract, RapidOCR), 0-100


def _read(grey: np.ndarray, boxes: list[Box]) -> list[Reading]:
    """Each box read by both readers: Tesseract as one line, and the RapidOCR
    recogniser, whose reading keeps a ``Surname,Given`` or a ``7/5/1995`` whole where
    Tesseract splits or misreads it."""
    second = recognise(grey, boxes) if ocr_rapid.available() else [("", 0.0)] * len(boxes)
    out = []
    for (left, top, right, bottom), (rapid, rapid_confidence) in zip(boxes, second,
                                                                     strict=True):
        out.append((read_line(grey[top:bottom, left:right]), (rapid, 100.0 * rapid_confidence)))
    return out


def _verdict(grey: np.ndarray, box: Box, reading: Reading, known: dict[str, str],
             regexes: tuple[CustomRegex, ...]) -> str:
    """``phi``, ``keep`` or ``unsure`` (neither reader reads it well enough)."""
    if any(is_sensitive(t, known, regexes) or part_of_known(t, known) for t, _ in reading):
        return "phi"
    if any(keeps(t, c, known, regexes) for t, c in reading):
        return "keep"
    # Unsure: a second, sharper and larger reading decides (small text on noise).
    left, top, right, bottom = box
    text, confidence = read_line(grey[top:bottom, left:right], smooth=0.0, height=60)
    if is_sensitive(text, known, regexes) or part_of_known(text, known):
        return "phi"
    return "keep" if keeps(text, confidence, known, regexes) else "unsure"


def _span_text(reading: Reading, known: dict[str, str]) -> set[str]:
    """The identifying parts of a line, as either reader read it (letters and digits)."""
    out = set()
    for text, _ in reading:
        out.update(_alnum(text[s.start:s.end]) for s in infotypes.find(text, known))
    return {t for t in out if t}


def _phi_words(grey: np.ndarray, line: Box, reading: Reading, known: dict[str, str],
               regexes: tuple[CustomRegex, ...]) -> list[Box]:
    """What to paint of a line judged PHI: its words that are PHI, part of what made
    the line PHI, a time beside a date, or unread; the whole line when no word alone
    shows where the PHI is (a name only recognisable as a whole, a split the readers
    do not agree with)."""
    pieces = text_split.words(grey, line)
    if len(pieces) < 2:
        return [line]
    spans = _span_text(reading, known)
    dated = any(_PARTIAL_DATE.search(t) for t, _ in reading)
    out, located = [], False
    for piece, piece_reading in zip(pieces, _read(grey, pieces), strict=True):
        flat = [_alnum(t) for t, _ in piece_reading]
        if any(len(f) >= 2 and any(f in span for span in spans) for f in flat) or (
                dated and any(_TIME.search(t) for t, _ in piece_reading)):
            out.append(piece)
            located = True
            continue
        verdict = _verdict(grey, piece, piece_reading, known, regexes)
        if verdict == "phi":
            located = True
        if verdict != "keep":
            out.append(piece)
    return out if located else [line]


def sensitive_boxes(grey: np.ndarray, boxes: list[Box], known: dict[str, str],
                    regexes: tuple[CustomRegex, ...] = (), *, phi: bool = True) -> list[Box]:
    """The parts of ``boxes`` whose text is PHI or could not be read well enough.

    Each box is cut into its lines (``text_split``), and each line is read by both
    readers. A line is PHI if either reading is; it stays only if neither is and one of
    them reads it well enough (``keeps``). Of a PHI line, only the words that carry
    the PHI (and words neither reader can read) are painted when the line's gaps show
    where they are, so ``DOB:`` or a measurement beside a date stays readable.

    With ``phi=False`` (custom regexes in a mode that keeps text) only lines a regex
    matches are returned: the user asked for those patterns, not for all unread text.
    """
    lines = [line for box in boxes for line in text_split.lines(grey, box)]
    out: list[Box] = []
    for line, reading in zip(lines, _read(grey, lines), strict=True):
        if not phi:
            if any(r.matches(t) for t, _ in reading for r in regexes):
                out.append(line)
            continue
        verdict = _verdict(grey, line, reading, known, regexes)
        if verdict == "phi":
            out.extend(_phi_words(grey, line, reading, known, regexes))
        elif verdict == "unsure":
            out.append(line)
    return out
