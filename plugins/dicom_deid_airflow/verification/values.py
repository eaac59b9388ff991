"""Value normalisation: one comparable form for values from pydicom and from JSON.

A destination instance is compared with its source in two shapes: as a pydicom
Dataset (retrieved with WADO-RS) and as a DICOM JSON model item (a QIDO-RS result).
The same value must compare equal in both, whatever its VR, so every comparison in
matching and in the checks goes through these functions.
"""

from __future__ import annotations

import re

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

__all__ = ["ds_value", "items", "norm", "text_values"]


def items(value: object) -> list:
    """A value as a list of its items: None as [], a multi-value as its items."""
    if value is None:
        return []
    if isinstance(value, (list, tuple, MultiValue)):
        return list(value)
    return [value]


def norm(value: object) -> tuple:
    """Comparable form of a value from pydicom or from the DICOM JSON model: numbers
    (pydicom's DS/IS are float/int subclasses, JSON has numbers) as rounded floats, text
    stripped, PN from JSON as its alphabetic group, empty as ()."""
    out: list = []
    for item in items(value):
        if isinstance(item, dict):  # PN in the JSON model
            item = item.get("Alphabetic", "")
        if isinstance(item, bytes):
            item = item.decode("latin-1")
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            out.append(round(float(item), 4))
            continue
        out.append(str(item).strip(" \x00"))
    while out and out[-1] == "":
        out.pop()
    return tuple(out)


def ds_value(ds: Dataset, keyword: str) -> tuple:
    """The normalised value of a top-level attribute, () when absent or a sequence."""
    try:
        elem = ds.data_element(keyword)
    except (KeyError, ValueError):
        return ()
    if elem is None or elem.VR == "SQ":
        return ()
    try:
        return norm(elem.value)
    except Exception:  # an undecodable value compares as present but unknown
        return ("<undecodable>",)


def text_values(ds: Dataset, keyword: str) -> list[str]:
    """The values of one attribute as strings, plus the components of person names."""
    try:
        elem = ds.data_element(keyword)
    except (KeyError, ValueError):
        return []
    if elem is None or elem.VR == "SQ":
        return []
    out: list[str] = []
    try:
        values = items(elem.value)
    except Exception:
        return []
    for value in values:
        text = str(value).strip(" \x00")
        if not text:
            continue
        out.append(text)
        if elem.VR == "PN":
            out.extend(p.strip() for p in re.split(r"[\^=]", text) if p.strip())
    return out
