"""Which action each (non-private) element gets: the per-tag decisions of the profiles.

Each element gets one action, in the vocabulary of PS3.15 Table E.1-1: ``K`` keep,
``X`` remove, ``Z`` empty, ``D`` dummy, ``U`` new UID, ``C`` clean (dates shifted,
text cleaned of detected identifiers), plus ``T`` for the tag-contents profile
(inspect the value by its VR) and ``S`` for an attribute the table has no row for,
inside a sequence the table replaces (decided by its VR, see ``profile``).

The combined actions of the table (``Z/D``, ``X/Z``, ``X/D``, ``X/Z/D``, ``X/Z/U*``)
mean "the stronger one, unless the IOD requires otherwise": removal, unless the
minimal keep list says the attribute is required (type 1 -> dummy, type 2 -> empty).
``X/Z/U*`` rows are references: their UIDs are replaced, so they stay resolvable.

:class:`Context` is the per-instance state every step of a run shares.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement

from .plan import KEEP_ALL, MINIMAL, TAG_CONTENTS, Plan
from .ps315 import table
from .sequence_bytes import SequenceRewriter
from .uids import new_uid


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


def vr_of(elem: DataElement | RawDataElement) -> str:
    """The VR of an element, from the file when explicit, else from the dictionary."""
    if elem.VR:
        return str(elem.VR)
    return _vr(elem.tag)


def resolve(action: str, tag: int) -> str:
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
    basic = resolve(rule.action(plan.options), tag) if rule is not None else (
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


def decision(tag: int, ctx: Context, depth: int, strict: bool) -> str:
    """:func:`decide`, remembered per instance (by tag, top level or not, strictness)."""
    key = (tag, depth == 0, strict)
    action = ctx.decisions.get(key)
    if action is None:
        action = ctx.decisions[key] = decide(tag, ctx, depth, strict)
    return action
