"""Applying a config's InfoTypeTransformations to detected text.

The transformations are the API's: redact (erase), character mask, replace with the
infoType's name, crypto hash (base64 of HMAC-SHA256 under the key) and date shift.
A DICOM value has a VR, so the result must still fit it: values are cut to the
VR's maximum length, and a date that cannot be shifted is erased rather than kept.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import date, timedelta

from .infotypes import Span
from .plan import Plan, Transformation

# Maximum value length in characters per VR (PS3.5 Table 6.2-1); PN is per component.
MAX_LENGTH = {"AE": 16, "AS": 4, "CS": 16, "DA": 8, "DS": 16, "DT": 26, "IS": 12, "LO": 64,
              "LT": 10240, "PN": 64, "SH": 16, "ST": 1024, "TM": 14, "UC": None, "UR": None,
              "UT": None}

_NUMERIC_DATE = re.compile(
    r"(?P<a>\d{1,4})(?P<s>[-/.])(?P<b>\d{1,2})(?P=s)(?P<c>\d{2,4})|(?P<compact>\d{8})")
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                "dec")


def crypto_hash(value: str, key: bytes) -> str:
    """The API's cryptoHash surrogate: base64 of HMAC-SHA256(key, value)."""
    digest = hmac.new(key, value.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _shift_numeric(text: str, days: int) -> str | None:
    """A date written with digits, moved by ``days`` and written the same way."""
    m = _NUMERIC_DATE.fullmatch(text)
    if not m:
        return None
    try:
        if m["compact"]:
            d = date(int(text[:4]), int(text[4:6]), int(text[6:])) + timedelta(days)
            return f"{d.year:04d}{d.month:02d}{d.day:02d}"
        a, b, c, sep = m["a"], m["b"], m["c"], m["s"]
        if len(a) == 4:  # year first
            d = date(int(a), int(b), int(c)) + timedelta(days)
            return f"{d.year:04d}{sep}{d.month:0{len(b)}d}{sep}{d.day:0{len(c)}d}"
        year = int(c) if len(c) == 4 else 2000 + int(c) if int(c) < 50 else 1900 + int(c)
        day_first = sep == "." or int(a) > 12
        day, month = (int(a), int(b)) if day_first else (int(b), int(a))
        d = date(year, month, day) + timedelta(days)
        first, second = (d.day, d.month) if day_first else (d.month, d.day)
        y = f"{d.year:04d}" if len(c) == 4 else f"{d.year % 100:02d}"
        return f"{first:0{len(a)}d}{sep}{second:0{len(b)}d}{sep}{y}"
    except (ValueError, OverflowError):
        return None


def _shift_written(text: str, days: int) -> str | None:
    """``4 March 2021`` / ``Mar 4, 2021`` / ``March 2021`` moved, written as ``2021-03-08``."""
    low = text.lower()
    month = next((i + 1 for i, m in enumerate(_MONTH_NAMES) if m in low), None)
    numbers = [int(n) for n in re.findall(r"\d+", text)]
    year = next((n for n in numbers if n >= 1000), None)
    day = next((n for n in numbers if n < 32), 1)
    if month is None or year is None:
        return None
    try:
        d = date(year, month, day) + timedelta(days)
    except (ValueError, OverflowError):
        return None
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"


def shift_text_date(text: str, days: int) -> str | None:
    return _shift_numeric(text, days) or _shift_written(text, days)


def replacement(span_text: str, info_type: str, how: Transformation, days: int | None) -> str:
    """What one detected span becomes."""
    if how.method == "redactConfig":
        return ""
    if how.method == "characterMaskConfig":
        return "".join(c if c in " ^=\\" else how.mask for c in span_text)
    if how.method == "replaceWithInfoTypeConfig":
        return f"[{info_type}]"
    if how.method == "cryptoHashConfig":
        return crypto_hash(span_text, how.key or b"")
    if how.method == "dateShiftConfig":
        if info_type == "DATE" and days is not None:
            shifted = shift_text_date(span_text, days)
            if shifted is not None:
                return shifted
        return ""  # the API applies date shift to dates only; anything else is erased
    raise ValueError(f"unknown transformation {how.method}")


def apply(text: str, spans: list[Span], plan: Plan, days: int | None) -> str:
    """``text`` with every span transformed (spans whose infoType is excluded stay)."""
    out, last = [], 0
    for span in spans:
        how = plan.transformation(span.info_type)
        if how is None:
            continue
        out.append(text[last:span.start])
        out.append(replacement(text[span.start:span.end], span.info_type, how, days))
        last = span.end
    out.append(text[last:])
    return "".join(out)


def fit(value: str, vr: str) -> str:
    """``value`` cut to what ``vr`` can hold (PN per component group)."""
    limit = MAX_LENGTH.get(vr)
    if vr == "PN":
        value = value.replace("=", "-")
    if limit is not None and len(value) > limit:
        value = value[:limit].rstrip()
    if vr in ("CS", "AE"):
        value = value.replace("\\", "/")
    if vr == "CS":
        value = re.sub(r"[^A-Z0-9 _]", "_", value.upper())
    return value
