"""The instance's own identifying values, harvested before its profile is applied so
they can be found again in its free text (under the text-cleaning profiles)."""

from __future__ import annotations

import json
from importlib import resources

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from . import infotypes
from .decisions import vr_of
from .element_actions import strings
from .failures import READING, ElementFailure
from .sequence_bytes import STRING_VRS


def _identifying_keywords() -> tuple[str, ...]:
    path = resources.files(__package__).joinpath("data/identifying-attributes.json")
    return tuple(k for k in json.loads(path.read_text())["keywords"]
                 if tag_for_keyword(k) is not None)


#: Attributes whose values are the patient's or staff's own identifiers
#: (data/identifying-attributes.json).
KNOWN_KEYWORDS = _identifying_keywords()


def known_identifiers(ds: Dataset) -> dict[str, str]:
    """The instance's own identifying values (upper-case) and their infoTypes."""
    known: dict[str, str] = {}
    for tag in list(ds.keys()):
        try:
            elem = ds[tag]
        except Exception as exc:  # a value pydicom cannot convert: name it, not its data
            raise ElementFailure(READING, int(tag), exc) from None
        vr = vr_of(elem)
        if vr == "PN" and not elem.is_empty:
            for value in strings(elem):
                for part in value.replace("=", "^").replace(" ", "^").split("^"):
                    part = part.strip(" ,.")
                    if len(part) >= 3:
                        known[part.upper()] = "PERSON_NAME"
        elif vr == "DA" and elem.keyword == "PatientBirthDate" and not elem.is_empty:
            v = str(elem.value)
            if len(v) == 8 and v.isdigit():
                y, m, d = v[:4], v[4:6], v[6:]
                for form in (v, f"{y}-{m}-{d}", f"{m}/{d}/{y}", f"{d}/{m}/{y}", f"{d}.{m}.{y}"):
                    known[form] = "DATE"
        elif elem.keyword in KNOWN_KEYWORDS and not elem.is_empty and vr in STRING_VRS:
            info_type = infotypes.ATTRIBUTE_INFO_TYPES.get(elem.keyword, "MEDICAL_RECORD_NUMBER")
            for value in strings(elem):
                value = value.strip()
                if len(value) >= 3:
                    known[value.upper()] = info_type
    return known
