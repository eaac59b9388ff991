"""An action applied to one decoded (non-sequence) element's value: empty, dummy, new
UID, clean (dates shifted, identifying text transformed by infoType)."""

from __future__ import annotations

from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue

from . import infotypes, text_transforms
from .dates import shift_da, shift_dt
from .decisions import Context
from .dummy_values import DUMMY
from .plan import TAG_CONTENTS

#: VRs whose values are text that may identify someone (cleaned by ``C`` and ``T``).
TEXT_VRS = frozenset({"AE", "LO", "LT", "PN", "SH", "ST", "UC", "UT", "DA", "DT", "AS"})
#: Binary numeric VRs, whose dummy value is 0.
NUMBERS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT"})


def change_value(elem: DataElement, vr: str, action: str, ctx: Context) -> bool:
    """Apply ``action`` (``Z``, ``D``, ``U``, ``C`` or ``T``) to a non-sequence element;
    returns whether its value changed."""
    if elem.is_empty:
        return False
    before = elem.value
    if action == "Z":
        elem.value = None
    elif action == "D":
        dummy(elem, vr, ctx)
    elif action == "U":
        if vr == "UI":
            set_strings(elem, [ctx.uid(v) if v else v for v in strings(elem)])
        else:
            dummy(elem, vr, ctx)
    elif action == "C" or (action == "T" and vr in TEXT_VRS):
        clean(elem, vr, ctx)
    return elem.value is not before


def strings(elem: DataElement) -> list[str]:
    """The element's values as strings (one for a single value)."""
    value = elem.value
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def set_strings(elem: DataElement, values: list[str]) -> None:
    elem.value = values[0] if len(values) == 1 else values


def dummy(elem: DataElement, vr: str, ctx: Context) -> None:
    if vr == "UI":
        set_strings(elem, [ctx.uid(v) for v in strings(elem)])
    elif vr in DUMMY:
        elem.value = DUMMY[vr]
    elif vr in NUMBERS:
        elem.value = 0
    else:  # OB, OW, UN, OF...: zeros, as short as the VR allows
        elem.value = b"\0" * (8 if vr in ("OD", "OV") else 4 if vr in ("OF", "OL") else 2)


def clean(elem: DataElement, vr: str, ctx: Context) -> None:
    """``C`` / tag contents: shift dates, transform identifying text by infoType."""
    plan = ctx.plan
    if vr in ("DA", "DT"):
        how = plan.transformation("DATE")
        if how is None and plan.profile == TAG_CONTENTS:
            return
        shifted = None
        if ctx.days is not None and (how is None or how.method == "dateShiftConfig"):
            shift = shift_da if vr == "DA" else shift_dt
            shifted = shift(str(elem.value if not isinstance(elem.value, MultiValue)
                                else "\\".join(elem.value)), ctx.days)
        elem.value = shifted.split("\\") if shifted and "\\" in shifted else (shifted or None)
        return
    if vr == "TM":
        return  # a day shift does not move a time of day
    if vr not in TEXT_VRS:
        return
    keyword = keyword_for_tag(elem.tag)
    whole = ("PERSON_NAME" if vr == "PN" else "AGE" if vr == "AS"
             else infotypes.ATTRIBUTE_INFO_TYPES.get(keyword))
    out = []
    for value in strings(elem):
        if not value:
            out.append(value)
            continue
        if whole is not None:
            how = plan.transformation(whole)
            if how is None:
                out.append(value)
                continue
            if vr == "AS":
                out.append("")
                continue
            new = text_transforms.replacement(value, whole, how, ctx.days)
        else:
            spans = infotypes.find(value, ctx.known)
            new = text_transforms.apply(value, spans, plan, ctx.days)
        out.append(text_transforms.fit(new, vr))
    if out != strings(elem):
        set_strings(elem, out)
