"""Applying the basic profile to a sequence's bytes, without building pydicom datasets.

Enhanced multi-frame instances carry thousands of functional-group items; pydicom
turns each into a ``Dataset`` (tens of microseconds per element), which made parsing
half the cost of de-identifying them. For the tag-driven profiles (basic, minimal
inside sequences, keep-all) every decision depends on the tag alone, and the values
that change are ASCII (UIDs, dates, dummies), so a sequence of a little-endian
instance can be rewritten as bytes: elements are walked with ``struct``, kept ones
copied, the others emptied, replaced or dropped. Anything this does not handle
(text that needs cleaning, the safe-private option, a UN holding a sequence, a
malformed length) returns ``None`` and the caller falls back to pydicom.

Output items and sequences have defined lengths.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import lru_cache

from . import dictionary
from .dates import shift_da, shift_dt
from .element_bytes import LONG_VRS, header, padded

UNDEFINED = 0xFFFFFFFF
#: Sequences nested deeper than this are left to the dataset path, whose reading
#: refuses them (a hostile file nests thousands deep to exhaust the stack).
MAX_DEPTH = 64
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST",
                        "TM", "UC", "UI", "UR", "UT"})
_TEXT = frozenset({"AE", "LO", "LT", "PN", "SH", "ST", "UC", "UT"})  # "S" -> dummy
_NUMBER_SIZE = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "AT": 4, "UV": 8,
                "SV": 8}
_TAG = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<L")


class Fallback(Exception):
    """Something here needs pydicom: the caller takes the dataset path instead."""


@lru_cache(maxsize=4096)
def _dictionary_vr(tag: int) -> str:
    return dictionary.vr_or_un(tag)


class SequenceRewriter:
    """Rewrites sequence values under one instance's decisions."""

    def __init__(self, action_of: Callable[[int, int, bool], str], uid: Callable[[str], str],
                 dummies: dict[str, str], days: int | None, implicit: bool,
                 keep_private: bool, keep: frozenset[int], remove: frozenset[int],
                 strict_profiles: bool) -> None:
        self.action_of = action_of
        self.uid = uid
        self.dummies = dummies
        self.days = days
        self.implicit = implicit
        self.keep_private = keep_private
        self.keep = keep
        self.remove = remove
        self.strict_profiles = strict_profiles
        #: (tag, at the top level, strict) -> action: decided once per instance
        self._actions: dict[tuple[int, bool, bool], str] = {}

    # -- encoding -----------------------------------------------------------------------

    def _element(self, tag: int, vr: str, value: bytes) -> bytes:
        head = header(tag, vr, len(value), self.implicit)
        if head is None:
            raise Fallback
        return head + value

    # -- parsing ------------------------------------------------------------------------

    def _header(self, buf: memoryview, pos: int) -> tuple[int, str, int, int]:
        """(tag, VR, length, value offset) of the element at ``pos``."""
        if pos + 8 > len(buf):
            raise Fallback
        group, element = _TAG.unpack_from(buf, pos)
        tag = group << 16 | element
        if tag in (ITEM, ITEM_END, SEQUENCE_END) or self.implicit:
            length = _U32.unpack_from(buf, pos + 4)[0]
            vr = "" if group == 0xFFFE else (_dictionary_vr(tag) if not group & 1 else "UN")
            if " or " in vr:  # "US or SS", "OB or OW": only copied or emptied here
                vr = "UN"
            return tag, vr, length, pos + 8
        vr = bytes(buf[pos + 4:pos + 6]).decode("ascii", "replace")
        if vr in LONG_VRS:
            if pos + 12 > len(buf):
                raise Fallback
            return tag, vr, _U32.unpack_from(buf, pos + 8)[0], pos + 12
        return tag, vr, _U16.unpack_from(buf, pos + 6)[0], pos + 8

    def _undefined_end(self, buf: memoryview, pos: int) -> tuple[int, int]:
        """For an undefined-length non-sequence value at ``pos``: (value end, next pos)."""
        while True:
            tag, _, length, start = self._header(buf, pos)
            if tag == SEQUENCE_END:
                return pos, start
            if tag != ITEM or length == UNDEFINED:
                raise Fallback
            pos = start + length

    def sequence(self, buf: memoryview, depth: int, strict: bool) -> tuple[bytes, int]:
        """Rewrite the items of a sequence value; (new value, bytes consumed).

        ``buf`` is a defined-length value (consumed entirely) or starts the items of an
        undefined-length one (consumed up to and including its delimiter).
        """
        if depth > MAX_DEPTH:
            raise Fallback
        out = bytearray()
        pos = 0
        while pos < len(buf):
            tag, _, length, start = self._header(buf, pos)
            if tag == SEQUENCE_END:
                return bytes(out), start
            if tag != ITEM:
                raise Fallback
            if length == UNDEFINED:
                item, used = self.dataset(buf[start:], depth, strict, until_delimiter=True)
                pos = start + used
            else:
                if start + length > len(buf):
                    raise Fallback
                item, _ = self.dataset(buf[start:start + length], depth, strict)
                pos = start + length
            out += _TAG.pack(0xFFFE, 0xE000) + _U32.pack(len(item)) + item
        return bytes(out), pos

    def dataset(self, buf: memoryview, depth: int, strict: bool,
                until_delimiter: bool = False) -> tuple[bytes, int]:
        """Rewrite one item's elements; (new bytes, bytes consumed).

        Consecutive elements kept as they are (most of a functional-group item) are
        copied as one run of the input's bytes.
        """
        out = bytearray()
        pos = 0
        run = -1  # where the current run of kept elements starts
        size = len(buf)
        while pos < size:
            tag, vr, length, start = self._header(buf, pos)
            if (length != UNDEFINED and vr != "SQ" and start + length <= size
                    and tag >> 16 != 0xFFFE and self._action(tag, depth, strict) == "K"):
                if run < 0:
                    run = pos
                pos = start + length
                continue
            if run >= 0:
                out += buf[run:pos]
                run = -1
            if tag == ITEM_END:
                return bytes(out), start
            if tag >> 16 == 0xFFFE:
                raise Fallback
            if length == UNDEFINED:
                if vr == "SQ":
                    value_end = None
                elif vr in ("OB", "OW") and not self.implicit:  # encapsulated pixel data
                    value_end, after = self._undefined_end(buf, start)
                else:  # an undefined-length UN (or implicit private) holds a sequence
                    raise Fallback
            else:
                value_end = start + length
                after = value_end
                if value_end > len(buf):
                    raise Fallback
            if value_end is None:  # undefined-length sequence
                action = self._action(tag, depth, strict)
                new, used = self.sequence(buf[start:], depth + 1,
                                          self._strict(action))
                after = start + used
                if action not in ("X", "Z"):
                    out += self._element(tag, "SQ", new)
                elif action == "Z":
                    out += self._element(tag, "SQ", b"")
                pos = after
                continue
            out += self._one(buf, tag, vr, start, value_end, length, depth, strict)
            pos = after
        if run >= 0:
            out += buf[run:pos]
        if until_delimiter:
            raise Fallback  # ran out of bytes before the item's delimiter
        return bytes(out), pos

    # -- decisions ----------------------------------------------------------------------

    def _strict(self, action: str) -> bool:
        return action in ("D", "U") and self.strict_profiles

    def _action(self, tag: int, depth: int, strict: bool) -> str:
        key = (tag, depth == 0, strict)
        action = self._actions.get(key)
        if action is None:
            action = self._actions[key] = self._decide(tag, depth, strict)
        return action

    def _decide(self, tag: int, depth: int, strict: bool) -> str:
        if tag in self.remove:
            return "X"
        if tag in self.keep:
            return "K"
        if tag & 0xFFFF == 0:
            return "X"
        if tag >> 16 & 1:
            return "K" if self.keep_private else "X"
        return self.action_of(tag, depth, strict)

    def _one(self, buf: memoryview, tag: int, vr: str, start: int, end: int, length: int,
             depth: int, strict: bool) -> bytes:
        action = self._action(tag, depth, strict)
        if action == "X":
            return b""
        if length == UNDEFINED:  # encapsulated data in an item: copied as it was
            return bytes(buf[start - (8 if self.implicit else 12):end + 8])
        value = buf[start:end]
        if action == "S":
            action = ("D" if vr in _TEXT else "Z" if vr in ("DA", "DT", "TM", "AS")
                      else "K")
        if vr == "SQ":
            if action == "Z":
                return self._element(tag, vr, b"")
            if action == "K" and tag >> 16 & 1:
                return self._element(tag, vr, bytes(value))
            new, _ = self.sequence(value, depth + 1, self._strict(action))
            return self._element(tag, vr, new)
        if action == "K" or length == 0:
            return self._element(tag, vr, bytes(value))
        if action == "Z":
            return self._element(tag, vr, b"")
        if action in ("U", "D") and vr == "UI":
            text = bytes(value).decode("ascii", "replace").rstrip("\0 ")
            new = "\\".join(self.uid(v.strip("\0 ")) if v.strip("\0 ") else ""
                            for v in text.split("\\"))
            return self._element(tag, vr, padded(new, vr))
        if action in ("U", "D"):
            if vr in self.dummies:
                return self._element(tag, vr, padded(self.dummies[vr], vr))
            if vr in _NUMBER_SIZE:
                return self._element(tag, vr, b"\0" * _NUMBER_SIZE[vr])
            size = 8 if vr in ("OD", "OV") else 4 if vr in ("OF", "OL") else 2
            return self._element(tag, vr, b"\0" * size)
        if action == "C":
            if vr in ("DA", "DT"):
                if self.days is None:
                    return self._element(tag, vr, b"")
                text = bytes(value).decode("ascii", "replace").rstrip("\0 ")
                shifted = (shift_da if vr == "DA" else shift_dt)(text, self.days)
                return self._element(tag, vr, padded(shifted or "", vr))
            if vr == "TM" or vr not in STRING_VRS:
                return self._element(tag, vr, bytes(value))
        raise Fallback  # text cleaning, tag contents: pydicom's path decodes charsets
