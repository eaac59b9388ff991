"""dcmanon tag actions that do the work our basic profile does ("equal work").

dcmanon applies one static action per tag (its defaults, overridden per tag). Ours
decides per tag from the PS3.15 table (``engine/data/ps3.15-table-e1-1.json``) and the
instance's IOD. The equal-work config is our engine's own decision for every exact row
of the table, for the corpus's most common IOD (CT Image), translated into dcmanon's
vocabulary:

* ``X`` -> ``remove``; ``Z`` -> ``empty``; ``K`` -> ``none``;
* ``U`` (and ``D`` on a UI) -> ``hashuid`` (a keyed new UID, as ours);
* ``D`` on text, date and time VRs -> ``replace`` with our dummy value for the VR
  (``engine/data/dummy-values.json``); ``D`` on bytes -> ``empty`` (dcmanon replaces
  with text only; ours writes two zero bytes);
* ``U`` or ``D`` on a sequence -> ``none``: ours walks it replacing what is inside,
  dcmanon walks every sequence it keeps with the same per-tag actions;
* every other tag of the DICOM dictionary -> ``none``, so that dcmanon's own defaults
  (hashing the patient's name and ID, hashing dates, emptying Manufacturer...) do not
  add work ours does not do.

dcmanon removes private tags, curves and overlays by default, as the basic profile does.
What stays unequal is reported by the bench's audit, not hidden here: ours applies the
table inside nested sequence items and functional groups, and decides by each
instance's own IOD.
"""

from __future__ import annotations

from pydicom.datadict import DicomDictionary

from dicom_deid.engine.decisions import Context, _exact_tag, _vr, decide
from dicom_deid.engine.dummy_values import DUMMY
from dicom_deid.engine.plan import build_plan
from dicom_deid.engine.ps315 import table

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
BASIC = {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}}


def _translate(action: str, vr: str) -> dict:
    if vr == "SQ" and action in ("U", "D"):
        # ours walks such a sequence, replacing what is inside it; dcmanon walks every
        # sequence it keeps and applies its actions to the items' tags
        return {"action": "none"}
    if action == "X":
        return {"action": "remove"}
    if action == "Z":
        return {"action": "empty"}
    if action == "U" or (action == "D" and vr == "UI"):
        return {"action": "hashuid"}
    if action == "D" and vr in DUMMY:
        return {"action": "replace", "value": DUMMY[vr]}
    if action == "D":
        return {"action": "empty"}
    return {"action": "none"}


def equal_work_actions(sop_class: str = CT_IMAGE_STORAGE) -> dict[str, dict]:
    """``{"GGGGEEEE": {"action": ...}}`` for dcmanon's ``Anonymizer(tag_actions=...)``."""
    ctx = Context(build_plan(BASIC, b"\0" * 32), sop_class=sop_class)
    out = {f"{tag:08X}": {"action": "none"} for tag in DicomDictionary
           if tag >> 16 not in (0x0002, 0xFFFE)}
    for rule in table().rules:
        tag = _exact_tag(rule.tag)
        if tag is not None:
            out[f"{tag:08X}"] = _translate(decide(tag, ctx, 0), _vr(tag))
    return out
