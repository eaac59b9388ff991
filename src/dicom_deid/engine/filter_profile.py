"""The four tag filter profiles applied to a dataset, at every depth of sequences.

Each element gets the action :mod:`.decisions` picks for it (PS3.15 Table E.1-1's
vocabulary); private elements are handled by :mod:`.private_tags`. Elements that
stay as they are are never decoded, so their bytes are written back unchanged; only
what changes is touched: on the raw bytes where it can be (:mod:`.raw_elements`),
else on the decoded element (:mod:`.element_actions`).
"""

from __future__ import annotations

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

from . import raw_elements
from .decisions import Context, decision, keep_all_context, listed, vr_of
from .element_actions import TEXT_VRS, change_value
from .failures import PROFILE, ElementFailure
from .plan import BASIC, KEEP_ALL, MINIMAL
from .private_tags import remove_private


def apply_profile(ds: Dataset, ctx: Context, depth: int = 0, strict: bool = False) -> bool:
    """Apply the plan's profile to ``ds`` in place, recursing into sequences.

    Returns whether anything in ``ds`` changed. A failure raises
    :class:`~.failures.ElementFailure` naming the element (a path inside sequences).
    """
    plan = ctx.plan
    private: list[int] = []
    changed = False
    for tag in list(ds.keys()):
        tag = int(tag)
        if tag >> 16 == 0xFFFE:  # an item or delimiter a writer left inside an item
            del ds[tag]
            changed = True
            continue
        if tag in plan.remove:
            del ds[tag]
            changed = True
            continue
        if tag in plan.keep:
            try:
                changed |= _keep(ds, tag, ctx, depth)
            except ElementFailure as exc:
                raise exc.inside(tag) from None
            except Exception as exc:  # the kind of failure and where, never the data
                raise ElementFailure(PROFILE, tag, exc) from None
            continue
        if tag & 0xFFFF == 0:  # group lengths are retired and would be wrong after this
            del ds[tag]
            changed = True
            continue
        if tag >> 16 & 1:
            private.append(tag)
            continue
        try:
            changed |= _act(ds, tag, decision(tag, ctx, depth, strict), ctx, depth)
        except ElementFailure as exc:
            raise exc.inside(tag) from None
        except Exception as exc:  # the kind of failure and where, never the data
            raise ElementFailure(PROFILE, tag, exc) from None
    if private and plan.profile != KEEP_ALL:
        changed |= remove_private(ds, private, ctx)
    return changed


def _keep(ds: Dataset, tag: int, ctx: Context, depth: int) -> bool:
    """A tag the keep list names: its value stays, but for UIDs (replaced unless the
    plan retains them); a sequence stays whole, the UIDs inside it replaced too, so a
    reference inside it still points at the instance's replaced UIDs."""
    if ctx.plan.retain_uids:
        return False
    if _is_sequence(ds.get_item(tag)):
        return _recurse(ds, tag, keep_all_context(ctx), depth)
    action = listed(tag, ctx.plan)
    return action != "K" and _act(ds, tag, action, ctx, depth)


def _recurse(ds: Dataset, tag: int, ctx: Context, depth: int, strict: bool = False) -> bool:
    """Apply the profile inside every item; an untouched sequence gets its bytes back."""
    raw = ds.get_item(tag)
    if isinstance(raw, RawDataElement):
        rewritten = raw_elements.rewrite_bytes(raw, ctx, depth, strict)
        if rewritten is not None:
            if rewritten.value == raw.value:
                return False
            ds[tag] = rewritten  # stored as it is: a public tag's raw element is not decoded
            return True
    elem = ds[tag]
    changed = False
    for item in elem.value or ():
        changed |= apply_profile(item, ctx, depth + 1, strict)
    if not changed and isinstance(raw, RawDataElement):
        ds[tag] = raw  # written back byte for byte, nothing re-encoded
    return changed


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
        replaced = raw_elements.raw_replacement(raw, action, ctx)
        if replaced is not None:
            if replaced is raw:
                return False
            ds[tag] = replaced
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
    return change_value(elem, vr, action, ctx)
