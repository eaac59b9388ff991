"""The byte path: one instance de-identified as bytes, without building a pydicom dataset.

Why: under the tag-driven profiles every decision depends on the tag (and the SOP
Class) alone and every changed value is ASCII, so the top level of an instance can be
walked like its sequences already are (:mod:`.sequence_bytes`): headers read with
``struct``, kept elements copied, the rest emptied, replaced or dropped. Reading a
file into a pydicom ``Dataset`` and writing it back was most of the cost of an
instance, and importing pydicom most of the command line's start-up; this module
imports neither pydicom nor numpy. Big values the profile keeps (pixel data) are
never copied through Python: they are described as ranges of the source, which
:func:`write_file` hands to the kernel (``copy_file_range``).

What it takes: a Part 10 file (preamble, ``DICM``, explicit VR meta) whose transfer
syntax is Implicit or Explicit VR Little Endian or an encapsulated one with an
explicit little-endian body, elements in ascending order, lengths within the file,
the four required UIDs valid; plans of the basic or keep-all profile without image
redaction, keep or remove lists or the safe-private option. Anything else (and
anything odd: a UN where a value must be replaced, text to clean, a stray
delimiter) raises :class:`Fallback` before a byte is written, and the dataset path
(:mod:`.instance_dataset`) takes the instance with its repairs and its error
reports. ``tests/unit/test_instance_bytes.py`` checks that both paths give the same
datasets on every real and generated input.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from .. import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from . import identity
from .dates import shift_days
from .decisions import Context
from .element_bytes import ITEM, ITEM_END, SEQUENCE_END, UNDEFINED, header, padded
from .outcome import Outcome
from .plan import BASIC, KEEP_ALL, Plan
from .raw_elements import rewriter
from .sequence_bytes import ITEM as ITEM_TAG
from .sequence_bytes import ITEM_END as ITEM_END_TAG
from .sequence_bytes import MAX_DEPTH, Fallback, SequenceRewriter
from .sequence_bytes import SEQUENCE_END as SEQUENCE_END_TAG
from .uids import valid_uid

__all__ = ["Fallback", "Rendered", "eligible", "render", "write_file"]

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
#: Syntaxes whose body is explicit VR little endian and whose pixel data is
#: encapsulated (JPEG family, RLE, the encapsulated uncompressed syntax).
_ENCAPSULATED_OTHERS = frozenset({"1.2.840.10008.1.2.5", "1.2.840.10008.1.2.1.98"})
PIXEL_DATA = 0x7FE00010
PATIENT_ID = 0x00100020
#: (tag, keyword) of the UIDs every stored instance needs.
REQUIRED = {0x00080016: "SOPClassUID", 0x00080018: "SOPInstanceUID",
            0x0020000D: "StudyInstanceUID", 0x0020000E: "SeriesInstanceUID"}
#: Kept values at least this long are copied by the kernel, not through Python.
RANGE_MIN = 64 * 1024
_VRS = frozenset({"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT",
                  "OB", "OD", "OF", "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST",
                  "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV"})
_LONG_META = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN",
                        b"UR", b"UT", b"SV", b"UV"})
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<L")

#: A piece of the output: bytes, or (offset, length) of a range of the source.
Piece = bytes | tuple[int, int]


@dataclass(frozen=True)
class Rendered:
    """The output as pieces, and the identity it carries."""

    pieces: list[Piece]
    outcome: Outcome


def eligible(plan: Plan) -> bool:
    """Whether the byte path can apply ``plan`` at all (the file decides the rest)."""
    return (plan.profile in (BASIC, KEEP_ALL) and not plan.image.redacts and not plan.keep
            and not plan.remove and not plan.retain_safe_private)


def _syntax(ts: str) -> bool:
    """Whether the byte path reads ``ts``: little endian, not deflated."""
    return ts in (IMPLICIT_LE, EXPLICIT_LE) or ts in _ENCAPSULATED_OTHERS or ts.startswith(
        "1.2.840.10008.1.2.4.")


def _meta(buf: memoryview) -> tuple[int, str]:
    """(offset of the body, transfer syntax) from the preamble and the meta group."""
    if len(buf) < 144 or buf[128:132] != b"DICM":
        raise Fallback
    pos, ts = 132, None
    while pos + 8 <= len(buf) and buf[pos:pos + 2] == b"\x02\x00":
        vr = bytes(buf[pos + 4:pos + 6])
        if not vr.isalpha() or not vr.isupper():
            raise Fallback  # an implicit meta: the dataset path reads it
        if vr in _LONG_META:
            length, value = _U32.unpack_from(buf, pos + 8)[0], pos + 12
        else:
            length, value = _U16.unpack_from(buf, pos + 6)[0], pos + 8
        if length == UNDEFINED or value + length > len(buf):
            raise Fallback
        if _U16.unpack_from(buf, pos + 2)[0] == 0x0010:
            ts = bytes(buf[value:value + length]).rstrip(b"\0 ").decode("ascii", "replace")
        pos = value + length
    if ts is None or not _syntax(ts):
        raise Fallback
    return pos, ts


@dataclass
class _Element:
    tag: int
    vr: str
    length: int
    head: int  # offset of the header
    start: int  # offset of the value
    end: int  # end of the value (before a pixel data delimiter)
    after: int  # offset of the next element


def _skip_items(rw: SequenceRewriter, buf: memoryview, pos: int, depth: int = 1) -> int:
    """Past the delimiter of the undefined-length sequence whose items start at ``pos``."""
    if depth > MAX_DEPTH:
        raise Fallback
    while True:
        tag, _, length, start = rw._header(buf, pos)
        if tag == SEQUENCE_END_TAG:
            return start
        if tag != ITEM_TAG:
            raise Fallback
        if length != UNDEFINED:
            pos = start + length
            continue
        pos = start
        while True:  # an undefined-length item: its elements, up to its delimiter
            tag, vr, length, start = rw._header(buf, pos)
            if tag == ITEM_END_TAG:
                pos = start
                break
            if tag >> 16 == 0xFFFE:
                raise Fallback
            if length == UNDEFINED:
                if vr != "SQ":
                    raise Fallback
                pos = _skip_items(rw, buf, start, depth + 1)
            else:
                pos = start + length
        if pos > len(buf):
            raise Fallback


def _elements(rw: SequenceRewriter, buf: memoryview, pos: int, implicit: bool
              ) -> Iterator[_Element]:
    """The top-level elements of the body at ``pos``, checked as the dataset path's
    reading would accept them without repair."""
    last = -1
    size = len(buf)
    while pos < size:
        if pos + 8 > size:
            raise Fallback  # trailing bytes: the dataset path decides what they are
        tag, vr, length, start = rw._header(buf, pos)
        if tag <= last or tag >> 16 in (0x0002, 0xFFFE) or (not implicit and vr not in _VRS):
            raise Fallback
        last = tag
        if length != UNDEFINED:
            end = after = start + length
            if end > size:
                raise Fallback  # truncated
        elif vr == "SQ":
            end = after = _skip_items(rw, buf, start)
        elif tag == PIXEL_DATA and not implicit:
            end, after = rw._undefined_end(buf, start)
        else:
            raise Fallback
        yield _Element(tag, vr, length, pos, start, end, after)
        pos = after


def _text(buf: memoryview, el: _Element) -> str | None:
    """An ASCII value as pydicom reads it (trailing NULs and spaces dropped), or None
    for one the byte path leaves to pydicom (non-ASCII, several values)."""
    raw = bytes(buf[el.start:el.end])
    if el.length == UNDEFINED or any(b >= 0x80 for b in raw) or b"\\" in raw:
        return None
    text = raw.rstrip(b"\0 ")
    return None if b"\0" in text else text.decode("ascii")


def _string(tag: int, vr: str, text: str, implicit: bool) -> bytes:
    value = padded(text, vr)
    return header(tag, vr, len(value), implicit) + value


def _marks(plan: Plan, days: int | None, implicit: bool) -> list[tuple[int, bytes]]:
    """The de-identification marks (:func:`.identity.mark`) as encoded elements, in the
    layout the dataset path's writer gives them (undefined-length sequence and items)."""
    if not identity.marks(plan):
        return []
    items = b""
    for value, meaning in identity.codes(plan):
        items += ITEM + _string(0x00080100, "SH", value, implicit) + _string(
            0x00080102, "SH", "DCM", implicit) + _string(
            0x00080104, "LO", meaning, implicit) + ITEM_END
    sequence = header(identity.DEIDENTIFICATION_METHOD_CODES, "SQ", UNDEFINED,
                      implicit) + items + SEQUENCE_END
    return [
        (identity.PATIENT_IDENTITY_REMOVED,
         _string(identity.PATIENT_IDENTITY_REMOVED, "CS", "YES", implicit)),
        (identity.DEIDENTIFICATION_METHOD,
         _string(identity.DEIDENTIFICATION_METHOD, "LO", identity.method(plan), implicit)),
        (identity.DEIDENTIFICATION_METHOD_CODES, sequence),
        (identity.LONGITUDINAL_TEMPORAL,
         _string(identity.LONGITUDINAL_TEMPORAL, "CS", identity.temporal(plan, days),
                 implicit)),
    ]


def file_meta(sop_class: str, sop_uid: str, ts: str) -> bytes:
    """Preamble, prefix and the meta group, as :func:`.writing.file_meta` is written."""
    group = b"".join((
        header(0x00020001, "OB", 2, False) + b"\x00\x01",
        _string(0x00020002, "UI", sop_class, False),
        _string(0x00020003, "UI", sop_uid, False),
        _string(0x00020010, "UI", ts, False),
        _string(0x00020012, "UI", IMPLEMENTATION_CLASS_UID, False),
        _string(0x00020013, "SH", IMPLEMENTATION_VERSION_NAME, False),
    ))
    return b"\0" * 128 + b"DICM" + header(0x00020000, "UL", 4, False) + _U32.pack(
        len(group)) + group


def _uid_of(piece: bytes) -> str:
    """The UID an encoded UI element (short header, 8 bytes) holds."""
    return piece[8:].rstrip(b"\0 ").decode("ascii")


def render(data: bytes | memoryview, plan: Plan) -> Rendered:
    """``data`` de-identified under ``plan``, as pieces; :class:`Fallback` when the
    dataset path must take it (see the module's docstring), also when the input is
    malformed in a way the walk trips on (nested too deep, a value that is no ASCII):
    the dataset path reads defensively and names what is wrong."""
    try:
        return _render(memoryview(data), plan)
    except (struct.error, IndexError, UnicodeError, RecursionError) as exc:
        raise Fallback from exc


def _render(buf: memoryview, plan: Plan) -> Rendered:
    body, ts = _meta(buf)
    implicit = ts == IMPLICIT_LE
    if body + 8 > len(buf):
        raise Fallback
    vr_bytes = bytes(buf[body + 4:body + 6])
    if implicit == (b"AA" <= vr_bytes <= b"ZZ"):
        raise Fallback  # the body is not encoded as the meta says (pydicom's test)
    scout = rewriter(Context(plan), implicit)
    elements = list(_elements(scout, buf, body, implicit))
    found = {el.tag: el for el in elements if el.tag in REQUIRED or el.tag == PATIENT_ID}
    originals = {}
    for tag in REQUIRED:
        el = found.get(tag)
        value = _text(buf, el) if el is not None and el.vr == "UI" else None
        if value is None or not valid_uid(value):
            raise Fallback  # the dataset path names the missing or invalid UID
        originals[tag] = value
    days = None
    if plan.date_key is not None:
        patient = ""
        if PATIENT_ID in found:
            el = found[PATIENT_ID]
            if not implicit and el.vr != "LO":
                raise Fallback
            text = _text(buf, el)
            if text is None:
                raise Fallback
            patient = text.strip()
        days = shift_days(patient or originals[0x0020000D], plan.date_key)
    ctx = Context(plan, days, decisions=plan.decisions, sop_class=originals[0x00080016])
    rw = rewriter(ctx, implicit)
    marks = _marks(plan, days, implicit)
    replaced = identity.MARK_TAGS if marks else frozenset()
    new = dict(originals)
    pieces: list[Piece] = []
    for el in elements:
        while marks and marks[0][0] < el.tag:
            pieces.append(marks.pop(0)[1])
        if el.tag in replaced:
            continue
        action = rw._action(el.tag, 0, False)
        if action == "X":
            if el.tag in REQUIRED:
                raise Fallback
            continue
        if el.length == UNDEFINED and el.vr != "SQ":  # encapsulated pixel data
            if action != "K":
                raise Fallback
            head = header(el.tag, el.vr, UNDEFINED, implicit)
            if head is None:
                raise Fallback
            pieces += [head, (el.start, el.end - el.start), SEQUENCE_END]
            continue
        if el.length == UNDEFINED and action == "K" and el.tag >> 16 & 1:
            pieces.append(bytes(buf[el.head:el.after]))  # a private sequence kept whole
            continue
        if el.length == UNDEFINED:  # an undefined-length sequence: rewritten defined
            value, _ = rw.sequence(buf[el.start:el.after], 1, rw._strict(action))
            if action == "Z":
                value = b""
            head = header(el.tag, "SQ", len(value), implicit)
            if head is None:
                raise Fallback
            pieces += [head, value]
            continue
        if el.vr == "UN" and action not in ("K", "Z") and not implicit:
            raise Fallback  # pydicom would decode it with the dictionary's VR first
        if action == "K" and el.vr != "SQ" and el.length >= RANGE_MIN:
            head = header(el.tag, el.vr, el.length, implicit)
            if head is None:
                raise Fallback
            pieces += [head, (el.start, el.length)]
            continue
        piece = rw._one(buf, el.tag, el.vr, el.start, el.end, el.length, 0, False)
        if el.tag in REQUIRED:
            new[el.tag] = _uid_of(piece)
        pieces.append(piece)
    for _, piece in marks:
        pieces.append(piece)
    meta = file_meta(new[0x00080016], new[0x00080018], ts)
    pieces.insert(0, meta)
    size = sum(len(p) if isinstance(p, bytes) else p[1] for p in pieces)
    outcome = Outcome(new[0x0020000D], new[0x0020000E], new[0x00080018], new[0x00080016], ts,
                      size)
    return Rendered(pieces, outcome)


def joined(rendered: Rendered, data: bytes | memoryview) -> bytes:
    """The output as one ``bytes`` (ranges taken from ``data``)."""
    buf = memoryview(data)
    return b"".join(p if isinstance(p, bytes) else buf[p[0]:p[0] + p[1]]
                    for p in rendered.pieces)


def write_file(rendered: Rendered, src_fd: int, out_fd: int) -> None:
    """Write the output to ``out_fd``: bytes with ``writev``, ranges of the source
    with ``copy_file_range`` (an in-kernel copy), in order."""
    batch: list[bytes] = []
    for piece in rendered.pieces:
        if isinstance(piece, bytes):
            batch.append(piece)
            continue
        _writev(out_fd, batch)
        batch = []
        offset, length = piece
        while length:
            done = os.copy_file_range(src_fd, out_fd, length, offset)
            if done <= 0:
                raise OSError("the source ended while it was copied")
            offset += done
            length -= done
    _writev(out_fd, batch)


def _writev(fd: int, pieces: list[bytes]) -> None:
    while pieces:
        done = os.writev(fd, pieces[:1024])
        while pieces and done >= len(pieces[0]):
            done -= len(pieces[0])
            pieces = pieces[1:]
        if done:
            pieces[0] = pieces[0][done:]
