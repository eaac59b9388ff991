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

UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR",
                       b"UT", b"SV", b"UV"})
_MAX_DEPTH = 64
DEFLATED = "1.2.840.10008.1.2.1.99"


class BadElement(ValueError):
    """An element whose header cannot be walked past: the message names tag and offset."""

    def __init__(self, tag: int, offset: int, problem: str) -> None:
        super().__init__(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) at byte {offset}: {problem}")
        self.tag = tag


@dataclass
class Repairs:
    """What :func:`repair` changed, by tag only (safe to log)."""

    stray: list[int] = field(default_factory=list)
    closed: int = 0  # delimiters added at the end of the file

    def __bool__(self) -> bool:
        return bool(self.stray or self.closed)

    def describe(self) -> str:
        parts = []
        if self.stray:
            tags = sorted({f"({t >> 16:04X},{t & 0xFFFF:04X})" for t in self.stray})
            parts.append(f"{len(self.stray)} stray item/delimiter element(s) "
                         f"{', '.join(tags)} skipped")
        if self.closed:
            parts.append(f"{self.closed} missing delimiter(s) added at the end")
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

    def top_level(self, start: int) -> bytes:
        """The top level from ``start`` with stray FFFE headers dropped and ends closed."""
        out = [self.data[:start]]
        pos = start
        closing = 0
        while pos + 8 <= self.end:
            tag = self.tag_at(pos)
            if tag >> 16 == 0xFFFE:
                self.repairs.stray.append(tag)
                pos += 8  # only the header: what a stray item encloses is read as elements
                continue
            tag, vr, length, value = self.header(pos, self.implicit)
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


def _meta_end(data: bytes) -> int:
    """Offset of the dataset body: after the preamble and the group 0002 elements."""
    pos = 132 if data[128:132] == b"DICM" else 0
    walker = _Walker(data, little=True, implicit=False)
    while pos + 8 <= len(data) and data[pos:pos + 2] == b"\x02\x00":
        tag, vr, length, value = walker.header(pos, implicit=False)
        if length == UNDEFINED or value + length > len(data):
            raise BadElement(tag, pos, "a file meta element's length is invalid")
        pos = value + length
    return pos


def _looks_implicit(data: bytes, pos: int) -> bool:
    """pydicom's test: a body whose first VR is not two capitals is implicit VR."""
    vr = data[pos + 4:pos + 6]
    return len(vr) < 2 or not (b"AA" <= vr <= b"ZZ")


def repair(data: bytes, transfer_syntax: str | None, little: bool) -> tuple[bytes, Repairs]:
    """``data`` with its top level repaired, and what was repaired (possibly nothing)."""
    start = _meta_end(data)
    body = data[start:]
    deflated = transfer_syntax == DEFLATED
    if deflated:
        body = zlib.decompress(body, -zlib.MAX_WBITS)
    walker = _Walker(body, little, _looks_implicit(body, 0))
    fixed = walker.top_level(0)
    if not walker.repairs:
        return data, walker.repairs
    if deflated:
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        fixed = packer.compress(fixed) + packer.flush()
    return data[:start] + fixed, walker.repairs
