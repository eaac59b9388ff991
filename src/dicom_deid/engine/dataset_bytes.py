"""The top level of a dataset's bytes, walked to undo what real writers get wrong.

Some writers put item or delimiter elements, ``(FFFE,E000)``, ``(FFFE,E00D)``,
``(FFFE,E0DD)``, at the top level of a dataset, where they mean nothing. pydicom
does not skip them:

* an item delimiter ends the dataset: every element after it is silently dropped;
* an item or sequence delimiter becomes an element with no VR that fails when its
  value is converted (``NotImplementedError``);
* an item of undefined length swallows the rest of the file, and the read ends
  with no elements at all.

A file whose last undefined-length sequence lacks its delimiter (a writer that
stopped early, or a file cut after the last item) loses every element too, because
pydicom discards the whole top level on an early end of file.

:func:`repair` walks the top-level elements (skipping over nested values without
parsing them into datasets), drops the 8-byte headers of stray ``FFFE`` elements, so
that whatever they enclose is read as ordinary elements, and closes open sequences
and items at the end of the file. It is only called when pydicom's reading looks
wrong, so well-formed files cost nothing. Problems it cannot repair raise
:class:`BadElement` naming the element's tag and its byte offset, never a value.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR

from . import inflate
from .sequence_bytes import MAX_DEPTH

UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR",
                       b"UT", b"SV", b"UV"})
_KNOWN_VRS = frozenset({"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO",
                        "LT", "OB", "OD", "OF", "OL", "OV", "OW", "PN", "SH", "SL", "SQ",
                        "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US", "UT",
                        "UV"})
_MAX_DEPTH = MAX_DEPTH
DEFLATED = "1.2.840.10008.1.2.1.99"


class BadElement(ValueError):
    """An element whose header cannot be walked past: the message names tag and offset."""

    def __init__(self, tag: int, offset: int, problem: str) -> None:
        super().__init__(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) at byte {offset}: {problem}")
        self.tag, self.offset, self.problem = tag, offset, problem
        self.cut = "end" in problem  # the file ends before the element does


@dataclass
class Repairs:
    """What :func:`repair` changed, by tag only (safe to log)."""

    stray: list[int] = field(default_factory=list)
    closed: int = 0  # delimiters added at the end of the file
    lengths: list[int] = field(default_factory=list)  # sequences whose length lied
    vrs: list[int] = field(default_factory=list)  # elements whose VR code was not a VR
    trailing: int = 0  # bytes after the dataset that were no element

    def __bool__(self) -> bool:
        return bool(self.stray or self.closed or self.lengths or self.vrs or self.trailing)

    def describe(self) -> str:
        parts = []
        if self.stray:
            tags = sorted({f"({t >> 16:04X},{t & 0xFFFF:04X})" for t in self.stray})
            parts.append(f"{len(self.stray)} stray item/delimiter element(s) "
                         f"{', '.join(tags)} skipped")
        if self.closed:
            parts.append(f"{self.closed} missing delimiter(s) added at the end")
        if self.trailing:
            parts.append(f"{self.trailing} byte(s) of trailing garbage dropped")
        for tags, what in ((self.lengths, "sequence length(s) corrected"),
                           (self.vrs, "invalid VR code(s) replaced")):
            if tags:
                labels = ", ".join(f"({t >> 16:04X},{t & 0xFFFF:04X})" for t in sorted(tags))
                parts.append(f"{what}: {labels}")
        return "; ".join(parts)


class _Walker:
    def __init__(self, data: bytes, little: bool, implicit: bool) -> None:
        self.data = data
        self.end = len(data)
        self.order = "<" if little else ">"
        self.tag_struct = struct.Struct(self.order + "HH")
        self.u32 = struct.Struct(self.order + "L")
        self.u16 = struct.Struct(self.order + "H")
        self.implicit = implicit
        self.repairs = Repairs()

    def tag_at(self, pos: int) -> int:
        group, element = self.tag_struct.unpack_from(self.data, pos)
        return group << 16 | element

    def header(self, pos: int, implicit: bool) -> tuple[int, bytes | None, int, int]:
        """(tag, VR or None, length, value offset), read the way pydicom reads it."""
        if pos + 8 > self.end:
            raise BadElement(self.tag_at(pos) if pos + 4 <= self.end else 0, pos,
                             "the file ends inside its header")
        tag = self.tag_at(pos)
        if implicit or tag >> 16 == 0xFFFE:
            return tag, None, self.u32.unpack_from(self.data, pos + 4)[0], pos + 8
        vr = self.data[pos + 4:pos + 6]
        if vr in _LONG_VRS:
            if pos + 12 > self.end:
                raise BadElement(tag, pos, "the file ends inside its header")
            return tag, vr, self.u32.unpack_from(self.data, pos + 8)[0], pos + 12
        if not (b"AA" <= vr <= b"ZZ"):  # pydicom reads this as an implicit VR header
            return tag, None, self.u32.unpack_from(self.data, pos + 4)[0], pos + 8
        return tag, vr, self.u16.unpack_from(self.data, pos + 6)[0], pos + 8

    def skip_undefined(self, pos: int, implicit: bool, depth: int, tag: int) -> tuple[int, int]:
        """Past the items of an undefined-length value at ``pos``: (next pos, open levels).

        Open levels counts the delimiters the file lacks when it ends inside the value.
        """
        if depth > _MAX_DEPTH:
            raise BadElement(tag, pos, f"sequences nested deeper than {_MAX_DEPTH} levels")
        while pos + 8 <= self.end:
            item_tag = self.tag_at(pos)
            length = self.u32.unpack_from(self.data, pos + 4)[0]
            if item_tag == SEQUENCE_END:
                return pos + 8, 0
            if item_tag != ITEM:
                raise BadElement(item_tag, pos, "found where an item or a sequence "
                                 "delimiter must be")
            pos += 8
            if length != UNDEFINED:
                if pos + length > self.end:
                    raise BadElement(item_tag, pos - 8, "its length runs past the end of "
                                     "the file")
                pos += length
                continue
            pos, still_open = self.item_elements(pos, implicit, depth + 1)
            if still_open:
                return pos, still_open + 1
        return pos, 1  # the file ends inside this value: its delimiter is missing

    def item_elements(self, pos: int, implicit: bool, depth: int) -> tuple[int, int]:
        """Past the elements of an undefined-length item: (next pos, open levels)."""
        while pos + 8 <= self.end:
            tag, vr, length, value = self.header(pos, implicit)
            if tag == ITEM_END:
                return value, 0
            pos, still_open = self.value_end(tag, vr, length, value, implicit, depth)
            if still_open:
                return pos, still_open + 1
        return pos, 1

    def value_end(self, tag: int, vr: bytes | None, length: int, value: int, implicit: bool,
                  depth: int) -> tuple[int, int]:
        if length != UNDEFINED:
            if value + length > self.end:
                raise BadElement(tag, value, "its length runs past the end of the file")
            return value + length, 0
        # Undefined length: a sequence, encapsulated pixel data, or a UN holding a
        # sequence (whose content is implicit VR little endian, PS3.5 6.2.2).
        return self.skip_undefined(value, implicit or vr == b"UN", depth, tag)

    def sequence_end(self, value: int, implicit: bool, tag: int) -> int:
        """Where a defined-length sequence's items really end, whatever its length says.

        Items carry their own lengths (or delimiters), so the items are walked and the
        sequence ends at the first thing that is not an item.
        """
        pos = value
        while pos + 8 <= self.end and self.tag_at(pos) == ITEM:
            length = self.u32.unpack_from(self.data, pos + 4)[0]
            if length == UNDEFINED:
                pos, still_open = self.item_elements(pos + 8, implicit, 1)
                if still_open:
                    raise BadElement(tag, value, "an item of this sequence has no end")
            elif pos + 8 + length > self.end:
                raise BadElement(tag, value, "an item of this sequence runs past the end")
            else:
                pos += 8 + length
        return pos

    def _is_sequence(self, tag: int, vr: bytes | None, implicit: bool) -> bool:
        if vr is not None:
            return vr == b"SQ"
        return implicit and dictionary_vr(tag) == "SQ"

    def _unknown_vr(self, pos: int) -> tuple[bytes, int] | None:
        """An explicit header whose VR code is no VR, rewritten: (new header + value, end).

        Codes of two capitals that are no VR follow the rule for VRs defined after the
        reader was written (PS3.5 7.1.2): 2 reserved bytes, a 4-byte length; some
        writers still give them a 2-byte one, so the long form is taken only when its
        reserved bytes are zero and its length fits. Other codes are read as pydicom
        reads them, an implicit VR header (writers that switch encodings), unless that
        length does not fit the file; then they too are a code and a 2-byte length.
        The element gets the dictionary's VR, UN where it has none.
        """
        if self.implicit or self.tag_at(pos) >> 16 == 0xFFFE or pos + 8 > self.end:
            return None
        vr = self.data[pos + 4:pos + 6]
        if vr.decode("latin-1") in _KNOWN_VRS:
            return None
        tag = self.tag_at(pos)
        short = self.u16.unpack_from(self.data, pos + 6)[0]
        if b"AA" <= vr <= b"ZZ":
            long = self.u32.unpack_from(self.data, pos + 8)[0] if pos + 12 <= self.end else None
            if (self.data[pos + 6:pos + 8] == b"\0\0" and long is not None
                    and pos + 12 + long <= self.end):
                start, length = pos + 12, long
            else:
                start, length = pos + 8, short
        elif pos + 8 + self.u32.unpack_from(self.data, pos + 4)[0] <= self.end:
            return None
        else:
            start, length = pos + 8, short
        if start + length > self.end:
            return None
        known = dictionary_vr(tag).encode()
        self.repairs.vrs.append(tag)
        head = self.tag_struct.pack(tag >> 16, tag & 0xFFFF) + known
        head += (b"\0\0" + self.u32.pack(length)) if known in _LONG_VRS else self.u16.pack(length)
        return head + self.data[start:start + length], start + length

    def _runs_past_end(self, pos: int) -> bool:
        try:
            tag, vr, length, value = self.header(pos, self.implicit)
            self.value_end(tag, vr, length, value, self.implicit, 0)
        except BadElement:
            return True
        return False

    def top_level(self, start: int) -> bytes:
        """The top level from ``start``, repaired: stray FFFE headers dropped, sequence
        lengths that lie corrected, unknown VR codes replaced, open ends closed."""
        out = [self.data[:start]]
        pos = start
        closing = 0
        previous = -1
        while pos + 8 <= self.end:
            tag = self.tag_at(pos)
            if tag <= previous and self._runs_past_end(pos):
                # Out of tag order and longer than what is left: not an element but
                # bytes a writer left after the dataset. They are dropped.
                self.repairs.trailing = self.end - pos
                return b"".join(out)
            if tag >> 16 != 0xFFFE:
                previous = tag
            if tag >> 16 == 0xFFFE:
                self.repairs.stray.append(tag)
                pos += 8  # only the header: what a stray item encloses is read as elements
                continue
            unknown = self._unknown_vr(pos)
            if unknown is not None:
                out.append(unknown[0])
                pos = unknown[1]
                continue
            tag, vr, length, value = self.header(pos, self.implicit)
            if length != UNDEFINED and self._is_sequence(tag, vr, self.implicit):
                end = self.sequence_end(value, self.implicit, tag)
                if end != value + length:
                    self.repairs.lengths.append(tag)
                    out.append(self.data[pos:value - 4] + self.u32.pack(end - value))
                    out.append(self.data[value:end])
                    pos = end
                    continue
            end, still_open = self.value_end(tag, vr, length, value, self.implicit, 0)
            out.append(self.data[pos:end])
            pos = end
            if still_open:
                closing = still_open
                break
        out.append(self.data[pos:])
        if closing:
            self.repairs.closed = closing
            out.append(self._closers(closing))
        return b"".join(out)

    def _closers(self, levels: int) -> bytes:
        # Innermost first: an open item needs (FFFE,E00D), every open sequence (FFFE,E0DD).
        # The nesting alternates sequence > item > sequence ...; count from the outside.
        kinds = [SEQUENCE_END if i % 2 == 0 else ITEM_END for i in range(levels)]
        return b"".join(self.tag_struct.pack(t >> 16, t & 0xFFFF) + self.u32.pack(0)
                        for t in reversed(kinds))


def dictionary_vr(tag: int) -> str:
    """The dictionary's VR for ``tag``; UN for private, unknown or ambiguous tags."""
    if tag >> 16 & 1:
        return "UN"
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return "UN"
    return "UN" if " or " in vr else vr


def body_offset(data: bytes) -> int:
    """Offset of the dataset body: after the preamble and the group 0002 elements (the
    meta's elements are walked; its group length is not trusted)."""
    pos = 132 if data[128:132] == b"DICM" else 0
    walker = _Walker(data, little=True, implicit=False)
    while pos + 8 <= len(data) and data[pos:pos + 2] == b"\x02\x00":
        tag, vr, length, value = walker.header(pos, implicit=False)
        if length == UNDEFINED or value + length > len(data):
            raise BadElement(tag, pos, "a file meta element's length is invalid")
        pos = value + length
    return pos


def looks_implicit(data: bytes, pos: int) -> bool:
    """pydicom's test: a body whose first VR is not two capitals is implicit VR (with
    room to spare for a big-endian tag, which cannot look like one)."""
    vr = data[pos + 4:pos + 6]
    return len(vr) < 2 or not (b"AA" <= vr <= b"ZZ")


def _meta_transfer_syntax(data: bytes, end: int) -> str | None:
    pos = 132 if data[128:132] == b"DICM" else 0
    walker = _Walker(data, little=True, implicit=False)
    while pos < end:
        tag, _, length, value = walker.header(pos, implicit=False)
        if tag == 0x00020010:
            return data[value:value + length].rstrip(b"\0 ").decode("ascii", "replace")
        pos = value + length
    return None


def repair(data: bytes) -> tuple[bytes, Repairs]:
    """``data`` with its top level repaired, and what was repaired (possibly nothing).

    The body's encoding comes from the meta's Transfer Syntax UID (big endian only for
    Explicit VR Big Endian; a body without meta is little endian), and whether it is
    implicit from its first element, as pydicom decides it. A deflated body is
    inflated within the process's limit (:class:`.inflate.InflateLimitExceeded`).
    """
    start = body_offset(data)
    transfer_syntax = _meta_transfer_syntax(data, start)
    little = transfer_syntax != "1.2.840.10008.1.2.2"
    if transfer_syntax is None and start + 2 <= len(data) and data[start] == 0:
        little = False  # a bare big-endian dataset: group 0008 reads as 0x0800
    body = data[start:]
    deflated = transfer_syntax == DEFLATED
    if deflated:
        body = inflate.inflate(body)
    walker = _Walker(body, little, looks_implicit(body, 0))
    fixed = walker.top_level(0)
    if not walker.repairs:
        return data, walker.repairs
    if deflated:
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        fixed = packer.compress(fixed) + packer.flush()
    return data[:start] + fixed, walker.repairs
