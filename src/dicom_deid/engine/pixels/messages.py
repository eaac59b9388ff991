"""Errors of the pixel modules, and the helpers that keep their messages free of PHI.

Errors are ``PixelError`` with a short reason built from numbers, attribute keywords
and transfer syntax UIDs only: a message may end up in logs and reports, and must
never carry a value of the dataset (a codec's own message is kept only with any
quoted text in it that is not a number or a DICOM keyword blanked out).
"""

from __future__ import annotations

import re

from pydicom.datadict import keyword_dict
from pydicom.uid import UID

__all__ = ["PixelEncodeError", "PixelError", "pi_label", "safe", "ts_label"]


class PixelError(Exception):
    """Pixel data that cannot be decoded/encoded; message is a short reason with no PHI
    (no values from the dataset other than UIDs of transfer syntaxes / attribute
    keywords / numbers)."""

    step = "pixel decode"  # decoding, or understanding what the attributes describe


class PixelEncodeError(PixelError):
    """The painted frames could not be written back in the instance's syntax."""

    step = "pixel encode"


_UID_RE = re.compile(r"[0-9]+(\.[0-9]+)*")
_QUOTED_RE = re.compile(r"'([^']*)'|\"([^\"]*)\"")
_NUMBER_RE = re.compile(r"[-+]?[0-9][0-9., x()-]*")
_KEYWORDS = frozenset(keyword_dict)
# PS3.3 C.7.6.3.1.2 terms: safe to name in a message, unlike whatever else a file holds.
_PI_TERMS = frozenset({"MONOCHROME1", "MONOCHROME2", "PALETTE COLOR", "RGB",
                       "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_422", "YBR_PARTIAL_420",
                       "YBR_ICT", "YBR_RCT", "HSV", "ARGB", "CMYK", "XYB"})


def safe(text: str, limit: int = 240) -> str:
    """A codec/pydicom message on one line with quoted non-numbers blanked out.

    pydicom quotes the values it complains about ("invalid literal ... '1A'"); such a
    value comes from the dataset, so only numbers, UIDs and keywords survive.
    """

    def keep(match: re.Match[str]) -> str:
        inner = match.group(1) if match.group(1) is not None else match.group(2)
        ok = _NUMBER_RE.fullmatch(inner) or inner.replace(" ", "") in _KEYWORDS
        return match.group(0) if ok else "'…'"

    one_line = " ".join(_QUOTED_RE.sub(keep, text).split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


def ts_label(ts: object) -> str:
    """A transfer syntax for a message: its UID (only if it looks like one) and name."""
    text = str(ts)
    if not _UID_RE.fullmatch(text) or len(text) > 64:
        return "a transfer syntax value that is not a UID"
    name = UID(text).name
    return text if name == text else f"{text} ({name})"


def pi_label(value: str) -> str:
    """A PhotometricInterpretation for a message: a standard term, or a placeholder."""
    return value if value in _PI_TERMS else "a non-standard value"
