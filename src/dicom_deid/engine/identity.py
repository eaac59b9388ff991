"""What a de-identified instance says about itself (PS3.3 C.12.1, PS3.15 E.1.1).

``PatientIdentityRemoved``, ``DeidentificationMethod`` and the coded
``DeidentificationMethodCodeSequence`` (CID 7050) let a receiver know what was done
without trusting the sender's documentation; ``LongitudinalTemporalInformation
Modified`` says whether dates can be compared with other sources.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from .. import IMPLEMENTATION_VERSION_NAME
from .plan import BASIC, KEEP_ALL, KEEP_LIST, MINIMAL, TAG_CONTENTS, Plan

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


def mark(ds: Dataset, plan: Plan, temporal: str) -> None:
    """Record the de-identification in ``ds``; KEEP_ALL keeps identity, so says nothing,
    and a keep list adds nothing it does not list.

    ``temporal`` is MODIFIED (dates shifted), REMOVED or UNMODIFIED.
    """
    if plan.profile in (KEEP_ALL, KEEP_LIST):
        # keep-all keeps identity; a keep list keeps only what it lists, marks included
        return
    keys = _codes(plan)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = f"{IMPLEMENTATION_VERSION_NAME} {plan.profile}"[:64]
    items = []
    for key in keys:
        item = Dataset()
        item.CodeValue, item.CodeMeaning = CODES[key]
        item.CodingSchemeDesignator = "DCM"
        items.append(item)
    ds.DeidentificationMethodCodeSequence = items
    ds.LongitudinalTemporalInformationModified = temporal
