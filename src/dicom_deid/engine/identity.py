"""What a de-identified instance says about itself (PS3.3 C.12.1, PS3.15 E.1.1).

``PatientIdentityRemoved``, ``DeidentificationMethod`` and the coded
``DeidentificationMethodCodeSequence`` (CID 7050) let a receiver know what was done
without trusting the sender's documentation; ``LongitudinalTemporalInformation
Modified`` says whether dates can be compared with other sources.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import IMPLEMENTATION_VERSION_NAME
from .plan import BASIC, KEEP_ALL, KEEP_LIST, MINIMAL, TAG_CONTENTS, Plan

if TYPE_CHECKING:  # the byte path marks its output without importing pydicom
    from pydicom.dataset import Dataset

#: The attributes :func:`mark` sets, by tag (the byte path writes them itself).
PATIENT_IDENTITY_REMOVED = 0x00120062
DEIDENTIFICATION_METHOD = 0x00120063
DEIDENTIFICATION_METHOD_CODES = 0x00120064
LONGITUDINAL_TEMPORAL = 0x00280303
MARK_TAGS = frozenset({PATIENT_IDENTITY_REMOVED, DEIDENTIFICATION_METHOD,
                       DEIDENTIFICATION_METHOD_CODES, LONGITUDINAL_TEMPORAL})

# CID 7050 "De-identification Method" codes (scheme DCM).
CODES = {
    "basic": ("113100", "Basic Application Confidentiality Profile"),
    "cleanDescOpt": ("113105", "Clean Descriptors Option"),
    "rtnLongModifDatesOpt": ("113107",
                             "Retain Longitudinal Temporal Information Modified Dates Option"),
    "rtnUIDsOpt": ("113110", "Retain UIDs Option"),
    "cleanPixOpt": ("113101", "Clean Pixel Data Option"),
    "rtnSafePrivOpt": ("113111", "Retain Safe Private Option"),
}


def _codes(plan: Plan) -> list[str]:
    keys = []
    if plan.profile in (BASIC, MINIMAL):
        keys.append("basic")
    if plan.profile in (TAG_CONTENTS, MINIMAL):
        keys.append("cleanDescOpt")
    keys.extend(o for o in plan.options if o in CODES)
    return keys


def temporal(plan: Plan, days: int | None) -> str:
    """Longitudinal Temporal Information Modified: MODIFIED when dates were shifted by
    ``days``, UNMODIFIED when the tag-contents profile left them, else REMOVED."""
    if days is not None:
        return "MODIFIED"
    if plan.profile == TAG_CONTENTS and plan.transformation("DATE") is None:
        return "UNMODIFIED"
    return "REMOVED"


def marks(plan: Plan) -> bool:
    """Whether output under ``plan`` says it was de-identified (see :func:`mark`)."""
    return plan.profile not in (KEEP_ALL, KEEP_LIST)


def method(plan: Plan) -> str:
    """The Deidentification Method text."""
    return f"{IMPLEMENTATION_VERSION_NAME} {plan.profile}"[:64]


def codes(plan: Plan) -> list[tuple[str, str]]:
    """(code value, meaning) of each CID 7050 code, scheme DCM, in the output's order."""
    return [CODES[key] for key in _codes(plan)]


def mark(ds: Dataset, plan: Plan, temporal: str) -> None:
    """Record the de-identification in ``ds``; KEEP_ALL keeps identity, so says nothing,
    and a keep list adds nothing it does not list.

    ``temporal`` is MODIFIED (dates shifted), REMOVED or UNMODIFIED.
    """
    if not marks(plan):
        # keep-all keeps identity; a keep list keeps only what it lists, marks included
        return
    from pydicom.dataset import Dataset

    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = method(plan)
    items = []
    for value, meaning in codes(plan):
        item = Dataset()
        item.CodeValue, item.CodeMeaning = value, meaning
        item.CodingSchemeDesignator = "DCM"
        items.append(item)
    ds.DeidentificationMethodCodeSequence = items
    ds.LongitudinalTemporalInformationModified = temporal
