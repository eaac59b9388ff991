"""Which action each (non-private) element gets: the per-tag decisions of the profiles.

Each element gets one action, in the vocabulary of PS3.15 Table E.1-1: ``K`` keep,
``X`` remove, ``Z`` empty, ``D`` dummy, ``U`` new UID, ``C`` clean (dates shifted,
text cleaned of detected identifiers), plus ``T`` for the tag-contents profile
(inspect the value by its VR) and ``S`` for an attribute the table has no row for,
inside a sequence the table replaces (decided by its VR, see ``profile``).

The combined actions of the table (``Z/D``, ``X/Z``, ``X/D``, ``X/Z/D``, ``X/Z/U*``)
mean "the stronger one, unless the IOD requires otherwise". For an instance whose SOP
Class the vendored IOD tables know (:mod:`.iod_types`), its IOD decides, for plain
``X`` and ``Z`` too: an action that would remove or empty an attribute the IOD makes
Type 1 or 1C gives it a dummy value instead, one that would remove a Type 2 or 2C
attribute empties it (so does ``S``/``T`` where it would empty a date, time or age).
At the top level the types are the IOD's modules'; inside sequences they are looked
up by tag alone (the strongest type at any path of the IOD), since decisions here know
the depth, not the path. A dummy or an empty value leaks nothing, and no original
value is kept by this rule. The minimal profile ("keep only tags required to
produce valid DICOM", in Google's words) also keeps the attributes the instance's IOD
requires that its list lacks, with their values when the table has no row for them
(PS3.15 does not count them as identifying; the basic profile keeps them too), else
as the table and the rule above say. For SOP Classes the tables do not know, the
minimal keep list stands in for the IOD: a combined action removes, unless the list says the
attribute is required (type 1 -> dummy, type 2 -> empty).
``X/Z/U*`` rows are references: their UIDs are replaced, so they stay resolvable.

:class:`Context` is the per-instance state every step of a run shares.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

from . import iod_types
from .dictionary import tag_for_keyword, vr_or_un
from .plan import KEEP_ALL, KEEP_LIST, MINIMAL, TAG_CONTENTS, Plan
from .ps315 import table
from .sequence_bytes import SequenceRewriter
from .uids import new_uid

if TYPE_CHECKING:  # the byte path runs without importing pydicom
    from pydicom.dataelem import DataElement, RawDataElement


@dataclass
class Context:
    """The per-instance state of one run: its patient's date shift, its own identifiers,
    its IOD (from its SOP Class UID; empty when the vendored tables do not know it)."""

    plan: Plan
    days: int | None = None
    known: dict[str, str] = field(default_factory=dict)
    #: The run's decisions, shared by its instances: (tag, at top level, inside a
    #: replaced sequence, IOD of the instance) -> action.
    decisions: dict[tuple[int, bool, bool, str], str] = field(default_factory=dict)
    rewriter: SequenceRewriter | None = None
    sop_class: str = ""
    iod: str = field(default="", init=False)
    #: Top-level attributes this instance itself needs kept: the ones its Frame Increment
    #: Pointer names, under the minimal profile (see :func:`pointed_to`).
    keep: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        self.iod = (iod_types.iod_of(self.sop_class) if self.sop_class else None) or ""

    def uid(self, value: str) -> str:
        return _uid(value, self.plan.key)


@lru_cache(maxsize=65536)
def _uid(value: str, key: bytes) -> str:
    return new_uid(value, key)


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
    return vr_or_un(tag)


def vr_of(elem: DataElement | RawDataElement) -> str:
    """The VR of an element, from the file when explicit, else from the dictionary."""
    if elem.VR:
        return str(elem.VR)
    return _vr(elem.tag)


def resolve(action: str, tag: int, iod: str = "") -> str:
    """A combined table action reduced to one, given what the IOD requires.

    With ``iod`` the stronger choice is taken here and :func:`required_by` then applies
    the IOD's requirement; without, the minimal keep list stands in for the IOD.
    """
    if "/" not in action:
        return action
    if action == "X/Z/U*":
        return "U"
    choices = action.split("/")
    if iod:
        return choices[0]
    required = minimal_keep_list().get(tag)
    if required == "1":
        return "D" if "D" in choices else "Z"
    if required == "2":
        return "Z" if "Z" in choices else "D"
    return choices[0]


#: VRs whose values ``S`` (and ``T``, under a transformation of their infoType other
#: than a date shift) empties.
_EMPTIED = frozenset({"DA", "DT", "TM", "AS"})


def _empties(action: str, vr: str, plan: Plan) -> bool:
    """Whether ``action`` leaves a value of ``vr`` empty (beyond ``Z`` itself)."""
    if vr not in _EMPTIED:
        return False
    if action == "S":
        return True
    if action != "T" or vr == "TM":
        return False
    how = plan.transformation("AGE" if vr == "AS" else "DATE")
    return how is not None and (vr == "AS" or how.method != "dateShiftConfig")


def required_by(action: str, tag: int, ctx: Context, depth: int) -> str:
    """``action`` on an attribute present in an instance of ``ctx.iod``, weakened to what
    keeps the instance valid: removing or emptying a Type 1/1C attribute becomes a
    dummy value, removing a Type 2/2C attribute becomes emptying it."""
    if action not in ("X", "Z", "S", "T"):
        return action
    types = iod_types.types_of(ctx.iod) if depth == 0 else iod_types.nested_types_of(ctx.iod)
    kind = types.get(tag)
    if kind is None:
        return action
    if action in ("S", "T"):
        return "D" if kind in iod_types.VALUE_REQUIRED and _empties(
            action, _vr(tag), ctx.plan) else action
    if kind in iod_types.VALUE_REQUIRED:
        return "D"
    if kind in iod_types.PRESENCE_REQUIRED and action == "X":
        return "Z"
    return action


def decide(tag: int, ctx: Context, depth: int, strict: bool = False) -> str:
    """The action of the plan's profile for one (non-private) element.

    ``strict`` is set inside a sequence the table replaces (``D``, ``U``...) rather
    than keeps: there, text and dates the table has no row for are not kept either.
    """
    action = _decide(tag, ctx, depth, strict)
    # A keep list says exactly what stays: the IOD does not add to it (an instance it
    # leaves without required attributes is what the caller asked for; see README).
    if ctx.iod and ctx.plan.profile != KEEP_LIST:
        return required_by(action, tag, ctx, depth)
    return action


def listed(tag: int, plan: Plan) -> str:
    """The action on a non-sequence attribute a keep list names: ``K``, its value, or
    ``U`` for a UID, which the API replaces "by default" (unless ``skipIdRedaction``).
    A listed sequence is kept whole with the UIDs inside replaced: see
    :func:`keep_all_context`."""
    return "U" if (tag in uid_tags() and _vr(tag) == "UI" and not plan.retain_uids) else "K"


def lists_sequences(plan: Plan) -> bool:
    """Whether the keep list names a sequence whose UIDs must still be replaced (the
    byte path of :mod:`.sequence_bytes` keeps listed tags verbatim, so it is not used
    for such plans)."""
    return not plan.retain_uids and any(_vr(t) in ("SQ", "UN") for t in plan.keep)


@lru_cache(maxsize=16)
def _keep_all(plan: Plan) -> Plan:
    return dataclasses.replace(plan, profile=KEEP_ALL, keep=frozenset(), decisions={})


def keep_all_context(ctx: Context) -> Context:
    """The context inside a sequence a keep list names: everything kept, UIDs replaced
    (so references inside it follow the replaced top-level UIDs), what the remove list
    names removed; the instance's own state (date shift, identifiers) carried over."""
    plan = _keep_all(ctx.plan)
    return Context(plan, ctx.days, known=ctx.known, decisions=plan.decisions,
                   sop_class=ctx.sop_class)


#: What a keep list keeps whether it lists them or not: the file meta repeats them.
FILE_META_NEEDS = frozenset({0x00080016, 0x00080018})  # SOPClassUID, SOPInstanceUID


def _decide(tag: int, ctx: Context, depth: int, strict: bool) -> str:
    plan = ctx.plan
    profile = plan.profile
    if profile == KEEP_LIST and depth == 0 and tag not in FILE_META_NEEDS:
        # Only the listed tags stay at the top level (they never reach here: see
        # ``apply_profile``).
        return "X"
    if profile in (KEEP_ALL, KEEP_LIST):
        return "U" if tag in uid_tags() and not plan.retain_uids else "K"
    if profile == TAG_CONTENTS:
        return "U" if tag in uid_tags() and not plan.retain_uids else "T"
    group = tag >> 16
    if 0x6000 <= group <= 0x601E and not group & 1 and "cleanGraphOpt" not in plan.options:
        return "X"  # the overlay's data and comments go, so the whole plane goes
    rule = table().rule(tag)
    basic = resolve(rule.action(plan.options), tag, ctx.iod) if rule is not None else (
        "S" if strict else "K")
    if profile == MINIMAL and depth == 0:
        kind = minimal_keep_list().get(tag)
        if kind is None:
            if ctx.iod and tag in iod_types.types_of(ctx.iod):
                # required by the IOD: kept if PS3.15 does not call it identifying,
                # else the table's action (made a dummy or empty by ``required_by``)
                return "K" if rule is None else (basic if basic in ("K", "U", "C") else "X")
            return "X"
        if kind == "C":
            return "C"
        if basic in ("K", "U", "C"):
            return basic
        return {"1": "D", "2": "Z"}.get(kind, basic)
    return basic


def pointed_to(pointers: Iterable[int] | int) -> frozenset[int]:
    """The tags a Frame Increment Pointer names that the PS3.15 table has no row for.

    The pointer (Type 1 in every multi-frame IOD) is kept by the minimal profile, and a
    pointer to an attribute the output lacks makes the instance invalid; what it points
    to (Frame Time, Frame Time Vector, the NM vectors...) describes the frames, never
    the patient, unless the table says otherwise.
    """
    values = [pointers] if isinstance(pointers, int) else list(pointers)  # BaseTag is int
    out = set()
    for value in values:
        try:
            tag = int(value)
        except (TypeError, ValueError):
            continue
        if table().rule(tag) is None:
            out.add(tag)
    return frozenset(out)


def decision(tag: int, ctx: Context, depth: int, strict: bool) -> str:
    """:func:`decide`, remembered per run (by tag, top level or not, strictness and the
    instance's IOD: a run meets a handful of IODs)."""
    if ctx.keep and depth == 0 and tag in ctx.keep:
        return "K"
    key = (tag, depth == 0, strict, ctx.iod)
    action = ctx.decisions.get(key)
    if action is None:
        action = ctx.decisions[key] = decide(tag, ctx, depth, strict)
    return action
