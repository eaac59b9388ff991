"""The four tag filter profiles applied to a dataset, at every depth of sequences.

Each element gets one action, in the vocabulary of PS3.15 Table E.1-1: ``K`` keep,
``X`` remove, ``Z`` empty, ``D`` dummy, ``U`` new UID, ``C`` clean (dates shifted,
text cleaned of detected identifiers), plus ``T`` for the tag-contents profile
(inspect the value by its VR). Elements that stay as they are are never decoded, so
their bytes are written back unchanged; only what changes is touched.

The combined actions of the table (``Z/D``, ``X/Z``, ``X/D``, ``X/Z/D``, ``X/Z/U*``)
mean "the stronger one, unless the IOD requires otherwise": removal, unless the
minimal keep list says the attribute is required (type 1 -> dummy, type 2 -> empty).
``X/Z/U*`` rows are references: their UIDs are replaced, so they stay resolvable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from . import infotypes, text_transforms
from .dates import shift_da, shift_dt
from .plan import BASIC, KEEP_ALL, MINIMAL, TAG_CONTENTS, Plan
from .ps315 import table
from .safe_private import is_safe
from .sequence_bytes import STRING_VRS, UNDEFINED, Fallback, SequenceRewriter
from .uids import new_uid

TEXT_VRS = frozenset({"AE", "LO", "LT", "PN", "SH", "ST", "UC", "UT", "DA", "DT", "AS"})
_DUMMY = {"AE": "ANONYMOUS", "AS": "000Y", "CS": "ANONYMIZED", "DA": "19000101",
          "DS": "0", "DT": "19000101000000", "IS": "0", "LO": "ANONYMIZED", "LT": "ANONYMIZED",
          "PN": "ANONYMIZED", "SH": "ANONYMIZED", "ST": "ANONYMIZED", "TM": "000000",
          "UC": "ANONYMIZED", "UR": "https://deidentified.invalid/", "UT": "ANONYMIZED"}
_NUMBERS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT"})


@lru_cache(maxsize=1)
def minimal_keep_list() -> dict[int, str]:
    """Tag -> type ("1", "2", "3", or "C" for kept-but-cleaned) of the minimal profile."""
    path = resources.files(__package__).joinpath("data/minimal-keep-list.json")
    out: dict[int, str] = {}
    for module, entries in json.loads(path.read_text()).items():
        if module.startswith("_"):
            continue
        for keyword, kind in entries.items():
            out[int(tag_for_keyword(keyword))] = kind
    return out


@lru_cache(maxsize=1)
def uid_tags() -> frozenset[int]:
    """Tags whose UIDs are replaced: ``U`` and ``X/Z/U*`` rows, and UI rows the Retain
    UIDs Option keeps (such as Annotation Group UID, ``D`` in the basic column)."""
    out = set()
    for rule in table().rules:
        tag = _exact_tag(rule.tag)
        if tag is None:
            continue
        if "U" in rule.basic or ("rtnUIDsOpt" in rule.options and _vr(tag) == "UI"):
            out.add(tag)
    return frozenset(out)


def _exact_tag(text: str) -> int | None:
    digits = text.strip("()").replace(",", "")
    try:
        return int(digits, 16)
    except ValueError:
        return None


def _vr(tag: int) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


@dataclass
class Context:
    """The per-instance state of one run: its patient's date shift, its own identifiers."""

    plan: Plan
    days: int | None = None
    known: dict[str, str] = field(default_factory=dict)
    decisions: dict[tuple[int, bool, bool], str] = field(default_factory=dict)
    rewriter: SequenceRewriter | None = None

    def uid(self, value: str) -> str:
        return _uid(value, self.plan.key)


@lru_cache(maxsize=65536)
def _uid(value: str, key: bytes) -> str:
    return new_uid(value, key)


def vr_of(elem: DataElement | RawDataElement) -> str:
    """The VR of an element, from the file when explicit, else from the dictionary."""
    if elem.VR:
        return str(elem.VR)
    try:
        return dictionary_VR(elem.tag)
    except KeyError:
        return "UN"


def _resolve(action: str, tag: int) -> str:
    """A combined table action reduced to one, given what the IOD requires."""
    if "/" not in action:
        return action
    if action == "X/Z/U*":
        return "U"
    required = minimal_keep_list().get(tag)
    choices = action.split("/")
    if required == "1":
        return "D" if "D" in choices else "Z"
    if required == "2":
        return "Z" if "Z" in choices else "D"
    return choices[0]


def decide(tag: int, ctx: Context, depth: int, strict: bool = False) -> str:
    """The action of the plan's profile for one (non-private) element.

    ``strict`` is set inside a sequence the table replaces (``D``, ``U``...) rather
    than keeps: there, text and dates the table has no row for are not kept either.
    """
    plan = ctx.plan
    profile = plan.profile
    if profile == KEEP_ALL:
        return "U" if tag in uid_tags() and not plan.retain_uids else "K"
    if profile == TAG_CONTENTS:
        return "U" if tag in uid_tags() and not plan.retain_uids else "T"
    group = tag >> 16
    if 0x6000 <= group <= 0x601E and not group & 1 and "cleanGraphOpt" not in plan.options:
        return "X"  # the overlay's data and comments go, so the whole plane goes
    rule = table().rule(tag)
    basic = _resolve(rule.action(plan.options), tag) if rule is not None else (
        "S" if strict else "K")
    if profile == MINIMAL and depth == 0:
        kind = minimal_keep_list().get(tag)
        if kind is None:
            return "X"
        if kind == "C":
            return "C"
        if basic in ("K", "U", "C"):
            return basic
        return {"1": "D", "2": "Z"}.get(kind, basic)
    return basic


def apply_profile(ds: Dataset, ctx: Context, depth: int = 0, strict: bool = False) -> bool:
    """Apply the plan's profile to ``ds`` in place, recursing into sequences.

    Returns whether anything in ``ds`` changed.
    """
    plan = ctx.plan
    private: list[int] = []
    changed = False
    for tag in list(ds.keys()):
        tag = int(tag)
        if tag in plan.remove:
            del ds[tag]
            changed = True
            continue
        if tag in plan.keep:
            continue
        if tag & 0xFFFF == 0:  # group lengths are retired and would be wrong after this
            del ds[tag]
            changed = True
            continue
        if tag >> 16 & 1:
            private.append(tag)
            continue
        changed |= _act(ds, tag, _decision(tag, ctx, depth, strict), ctx, depth)
    if private and plan.profile != KEEP_ALL:
        changed |= _private(ds, private, ctx, depth)
    return changed


def _recurse(ds: Dataset, tag: int, ctx: Context, depth: int, strict: bool = False) -> bool:
    """Apply the profile inside every item; an untouched sequence gets its bytes back."""
    raw = ds.get_item(tag)
    if isinstance(raw, RawDataElement):
        rewritten = _rewrite_bytes(raw, ctx, depth, strict)
        if rewritten is not None:
            if rewritten.value == raw.value:
                return False
            ds._dict[tag] = rewritten
            return True
    elem = ds[tag]
    changed = False
    for item in elem.value or ():
        changed |= apply_profile(item, ctx, depth + 1, strict)
    if not changed and isinstance(raw, RawDataElement):
        ds._dict[tag] = raw  # written back byte for byte, nothing re-encoded
    return changed


def _rewrite_bytes(raw: RawDataElement, ctx: Context, depth: int,
                   strict: bool) -> RawDataElement | None:
    """The sequence rewritten as bytes (see sequence_bytes), or None to use pydicom."""
    plan = ctx.plan
    if (plan.profile == TAG_CONTENTS or plan.retain_safe_private or not raw.is_little_endian
            or raw.length == UNDEFINED or not raw.value):
        return None
    if ctx.rewriter is None:
        ctx.rewriter = SequenceRewriter(
            lambda t, d, s: _decision(t, ctx, d, s), ctx.uid, _DUMMY, ctx.days,
            bool(raw.is_implicit_VR), plan.profile == KEEP_ALL, plan.keep, plan.remove,
            plan.profile in (BASIC, MINIMAL))
    if ctx.rewriter.implicit != bool(raw.is_implicit_VR):
        return None
    try:
        value, _ = ctx.rewriter.sequence(memoryview(raw.value), depth + 1, strict)
    except Fallback:
        return None
    return raw._replace(length=len(value), value=value)


def _decision(tag: int, ctx: Context, depth: int, strict: bool) -> str:
    key = (tag, depth == 0, strict)
    action = ctx.decisions.get(key)
    if action is None:
        action = ctx.decisions[key] = decide(tag, ctx, depth, strict)
    return action


def _is_sequence(raw: DataElement | RawDataElement) -> bool:
    return vr_of(raw) == "SQ"


def _act(ds: Dataset, tag: int, action: str, ctx: Context, depth: int) -> bool:
    """Apply ``action`` to one element; returns whether the dataset changed."""
    raw = ds.get_item(tag)
    if action == "S":
        vr = vr_of(raw)
        action = "D" if vr in TEXT_VRS - {"DA", "DT", "AS"} else "Z" if vr in (
            "DA", "DT", "TM", "AS") else "K"
    if action == "K":
        return _is_sequence(raw) and _recurse(ds, tag, ctx, depth)
    if action == "X":
        del ds[tag]
        return True
    if _is_sequence(raw) and action != "Z":
        # D, C, U, T on a sequence: keep its structure, apply the profile inside
        return _recurse(ds, tag, ctx, depth, strict=action in ("D", "U") and
                        ctx.plan.profile in (BASIC, MINIMAL))
    if isinstance(raw, RawDataElement) and action in ("Z", "D", "U"):
        replaced = _raw_replacement(raw, action, ctx)
        if replaced is not None:
            if replaced is raw:
                return False
            ds._dict[tag] = replaced
            return True
    elem = ds[tag]
    vr = vr_of(elem)
    if vr == "SQ":
        if action == "Z":
            if not elem.value:
                return False
            elem.value = []
            return True
        # D, C, U, T on a sequence: keep its structure, apply the profile inside
        return _recurse(ds, tag, ctx, depth, strict=action in ("D", "U") and
                        ctx.plan.profile in (BASIC, MINIMAL))
    if elem.is_empty:
        return False
    before = elem.value
    if action == "Z":
        elem.value = None
    elif action == "D":
        _dummy(elem, vr, ctx)
    elif action == "U":
        if vr == "UI":
            _set_strings(elem, [ctx.uid(v) if v else v for v in _strings(elem)])
        else:
            _dummy(elem, vr, ctx)
    elif action == "C" or (action == "T" and vr in TEXT_VRS):
        _clean(elem, vr, ctx)
    return elem.value is not before


def _raw_replacement(raw: RawDataElement, action: str, ctx: Context) -> RawDataElement | None:
    """Empty, dummy or new-UID value built straight from the raw bytes, or None.

    Most of an instance's changes are these three; doing them on the raw element
    skips pydicom's decoding and re-encoding (and lets the writer copy the result).
    Only string VRs qualify, whose bytes do not depend on byte order; an empty value
    has no bytes at all.
    """
    if raw.length == UNDEFINED:
        return None
    vr = vr_of(raw)
    if action == "Z":
        if not raw.value:
            return raw
        return raw._replace(length=0, value=b"")
    if vr == "SQ":
        return None
    if not raw.value or vr not in STRING_VRS:
        return None if raw.value else raw
    if vr == "UI":
        text = raw.value.decode("ascii", "replace").rstrip("\0 ")
        new = "\\".join(ctx.uid(v.strip("\0 ")) if v.strip("\0 ") else ""
                         for v in text.split("\\"))
        data = new.encode("ascii")
        data += b"\0" * (len(data) % 2)
    elif action == "D" and vr in _DUMMY:
        data = _DUMMY[vr].encode("ascii")
        data += b" " * (len(data) % 2)
    else:
        return None
    return raw._replace(length=len(data), value=data)


def _strings(elem: DataElement) -> list[str]:
    value = elem.value
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def _set_strings(elem: DataElement, values: list[str]) -> None:
    elem.value = values[0] if len(values) == 1 else values


def _dummy(elem: DataElement, vr: str, ctx: Context) -> None:
    if vr == "UI":
        _set_strings(elem, [ctx.uid(v) for v in _strings(elem)])
    elif vr in _DUMMY:
        elem.value = _DUMMY[vr]
    elif vr in _NUMBERS:
        elem.value = 0
    else:  # OB, OW, UN, OF...: zeros, as short as the VR allows
        elem.value = b"\0" * (8 if vr in ("OD", "OV") else 4 if vr in ("OF", "OL") else 2)


def _clean(elem: DataElement, vr: str, ctx: Context) -> None:
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
    for value in _strings(elem):
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
    if out != _strings(elem):
        _set_strings(elem, out)


def _private(ds: Dataset, tags: list[int], ctx: Context, depth: int) -> bool:
    """Remove private elements, keeping the safe ones when the option is on.

    A private creator (``gggg,0010-00FF``) stays only while an element of its block
    stays, so no orphaned reservation is left behind.
    """
    keep_blocks: set[int] = {(t & 0xFFFF0000) | ((t & 0xFFFF) >> 8) for t in ctx.plan.keep
                             if t >> 16 & 1 and t & 0xFFFF >= 0x1000 and t in ds}
    creators: list[int] = []
    changed = False
    for tag in tags:
        element = tag & 0xFFFF
        if 0x0010 <= element <= 0x00FF:
            creators.append(tag)
            continue
        block = (tag & 0xFFFF0000) | (element >> 8)
        keep = False
        if ctx.plan.retain_safe_private and element >= 0x1000:
            creator = ds.get_item(block)
            if creator is not None:
                keep = is_safe(_creator_name(creator), tag >> 16, element & 0xFF)
        if keep:
            keep_blocks.add(block)
        else:
            del ds[tag]
            changed = True
    for tag in creators:
        if tag not in keep_blocks and tag not in ctx.plan.keep:
            del ds[tag]
            changed = True
    return changed


def _creator_name(elem: DataElement | RawDataElement) -> str:
    value = elem.value
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace")
    return str(value or "").strip(" \x00")


# Attributes whose values are the patient's or staff's own identifiers, looked for in
# the instance's free text under the text-cleaning profiles.
_KNOWN_KEYWORDS = tuple(k for k in (
    "PatientID", "OtherPatientIDs", "AccessionNumber", "InstitutionName", "InstitutionAddress",
    "InstitutionalDepartmentName", "PatientAddress", "StationName", "MedicalRecordLocator",
    "AdmissionID", "StudyID", "PatientTelephoneNumbers", "IssuerOfPatientID",
) if tag_for_keyword(k) is not None)


def known_identifiers(ds: Dataset) -> dict[str, str]:
    """The instance's own identifying values (upper-case) and their infoTypes."""
    known: dict[str, str] = {}
    for elem in ds:
        vr = vr_of(elem)
        if vr == "PN" and not elem.is_empty:
            for value in _strings(elem):
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
        elif elem.keyword in _KNOWN_KEYWORDS and not elem.is_empty and vr in STRING_VRS:
            info_type = infotypes.ATTRIBUTE_INFO_TYPES.get(elem.keyword, "MEDICAL_RECORD_NUMBER")
            for value in _strings(elem):
                value = value.strip()
                if len(value) >= 3:
                    known[value.upper()] = info_type
    return known

