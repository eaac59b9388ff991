"""Date shifting that keeps the intervals within a patient.

Every date of one patient moves by the same number of days, derived from the key
and the patient's identity (Patient ID, else Study Instance UID), so intervals
between a patient's studies are kept exactly while the calendar dates are not;
another patient gets another shift. The shift is 1 to 100 days either way (the
range the Cloud Healthcare API's DateShiftConfig uses), never 0.

Values the shift cannot be applied to are reported as ``None`` so the caller can
remove them rather than leak them: malformed dates, and anything not a date.
Partial dates (``YYYY``, ``YYYYMM``) are shifted as their first day and written back
with the same precision.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from datetime import date, timedelta

MAX_SHIFT_DAYS = 100

_DA = re.compile(r"(\d{4})(\d{2})?(\d{2})?")
_DT = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?([+-]\d{4})?")


def shift_days(identity: str, key: bytes) -> int:
    """Days to add to every date of the patient ``identity`` under ``key``."""
    digest = hmac.new(key, identity.strip().encode("utf-8"), hashlib.sha256).digest()
    n = int.from_bytes(digest[:8], "big") % (2 * MAX_SHIFT_DAYS)
    return n - MAX_SHIFT_DAYS if n < MAX_SHIFT_DAYS else n - MAX_SHIFT_DAYS + 1


def _shift(year: str, month: str | None, day: str | None, days: int) -> str | None:
    try:
        moved = date(int(year), int(month or 1), int(day or 1)) + timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    out = f"{moved.year:04d}"
    if month:
        out += f"{moved.month:02d}"
    if day:
        out += f"{moved.day:02d}"
    return out


def _each(value: str, shift_one: Callable[[str], str | None]) -> str | None:
    """Apply ``shift_one`` to every value of a ``\\``-separated multi-value; None if any fails."""
    out = []
    for item in value.split("\\"):
        item = item.strip()
        shifted = shift_one(item) if item else ""
        if shifted is None:
            return None
        out.append(shifted)
    return "\\".join(out)


def shift_da(value: str, days: int) -> str | None:
    """A DA value (possibly multi-valued) moved by ``days``."""

    def one(item: str) -> str | None:
        m = _DA.fullmatch(item)
        return _shift(m[1], m[2], m[3], days) if m else None

    return _each(value, one)


def shift_dt(value: str, days: int) -> str | None:
    """A DT value moved by ``days``: the date part moves, time and UTC offset stay."""

    def one(item: str) -> str | None:
        m = _DT.fullmatch(item)
        if not m or (m[4] and not m[3]):
            return None
        shifted = _shift(m[1], m[2], m[3], days)
        return shifted + (m[4] or "") + (m[5] or "") if shifted else None

    return _each(value, one)
