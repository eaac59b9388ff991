"""Changes made on elements still in their raw (undecoded) form.

Most of an instance's changes are emptying, dummy values and new UIDs, and most of its
sequences are cleaned element by element; doing both on the raw bytes skips pydicom's
decoding and re-encoding (and lets the writer copy the result). Each function returns
None when the element must go through pydicom instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .decisions import Context, decision, listed, lists_sequences, vr_of
from .dummy_values import DUMMY
from .plan import BASIC, KEEP_ALL, MINIMAL, TAG_CONTENTS
from .sequence_bytes import STRING_VRS, UNDEFINED, Fallback, SequenceRewriter

if TYPE_CHECKING:  # the byte path runs without importing pydicom
    from pydicom.dataelem import RawDataElement


def rewrite_bytes(raw: RawDataElement, ctx: Context, depth: int,
                  strict: bool) -> RawDataElement | None:
    """The sequence rewritten as bytes (see sequence_bytes), or None to use pydicom."""
    plan = ctx.plan
    if (plan.profile == TAG_CONTENTS or plan.retain_safe_private or not raw.is_little_endian
            or raw.length == UNDEFINED or not raw.value or lists_sequences(plan)):
        return None
    if ctx.rewriter is None:
        ctx.rewriter = rewriter(ctx, bool(raw.is_implicit_VR))
    if ctx.rewriter.implicit != bool(raw.is_implicit_VR):
        return None
    try:
        value, _ = ctx.rewriter.sequence(memoryview(raw.value), depth + 1, strict)
    except Fallback:
        return None
    return raw._replace(length=len(value), value=value)


def rewriter(ctx: Context, implicit: bool) -> SequenceRewriter:
    """The sequence rewriter for one instance: its plan's decisions, its date shift."""
    plan = ctx.plan
    verbatim = frozenset(t for t in plan.keep if listed(t, plan) == "K")
    return SequenceRewriter(
        lambda t, d, s: listed(t, plan) if t in plan.keep else decision(t, ctx, d, s),
        ctx.uid, DUMMY, ctx.days, implicit, plan.profile == KEEP_ALL, verbatim, plan.remove,
        plan.profile in (BASIC, MINIMAL))


def raw_replacement(raw: RawDataElement, action: str, ctx: Context) -> RawDataElement | None:
    """Empty, dummy or new-UID value built straight from the raw bytes, or None.

    Only string VRs qualify, whose bytes do not depend on byte order; an empty value
    has no bytes at all. ``raw`` itself is returned when nothing changes.
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
    elif action == "D" and vr in DUMMY:
        data = DUMMY[vr].encode("ascii")
        data += b" " * (len(data) % 2)
    else:
        return None
    return raw._replace(length=len(data), value=data)
