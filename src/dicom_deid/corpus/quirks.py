"""Crafted quirk files: one small instance per way real writers bend the standard.

Why: a de-identifier that refuses, or silently truncates, a file a modality wrote is
worse than useless -- the file is either lost to research or, worse, half-cleaned. The
bar is that every file pydicom or DCMTK can read must come through. Real quirky files
cannot be shipped (they carry PHI), so each quirk is reproduced here on a pydicom test
file whose identifying attributes hold marker values (:data:`MARKERS`, all starting
``QUIRK``) that a test can search the output bytes for.

Each :class:`Quirk` builds its bytes deterministically, in memory. pydicom cannot write
most quirks, so a file is assembled from separately encoded elements (:func:`element`,
:func:`body`, :func:`part10`) and the quirk is spliced in between them. Alongside the
bytes, a quirk knows which public attributes a lossless reader finds in it
(:meth:`Quirk.expected_paths`): a de-identifier keeping everything must keep those.

Left out because neither pydicom nor DCMTK gets the whole file (out of scope): an
item delimiter (FFFE,E00D) at the top level before other elements or inside an item
(both readers stop there and silently drop the rest), a file ending inside an
undefined-length sequence, and ``DICM`` + meta without the 128-byte preamble.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import cache

import numpy as np
from pydicom import dcmread, dcmwrite
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.pixels import pack_bits
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLSLossless,
)

__all__ = ["MARKERS", "Quirk", "body", "element", "part10", "quirks"]

#: Values planted in every quirk file; none may survive the basic profile.
MARKERS = {
    "PatientName": "QUIRK^MARKER", "PatientID": "QUIRKPID01",
    "InstitutionName": "QUIRK HOSPITAL", "ReferringPhysicianName": "QUIRK^REFERRER",
    "AccessionNumber": "QUIRKACC01", "StudyID": "QUIRKSTU1", "StationName": "QUIRKSTATION",
    "OperatorsName": "QUIRK^OPERATOR",
}
PRIVATE_MARKER = b"QUIRKPRIV"
_LONG = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"})
UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
PIXEL_DATA = 0x7FE00010
REQUEST_ATTRIBUTES = 0x00400275
Path = tuple[int, ...]


@dataclass(frozen=True)
class Quirk:
    """One quirk: a file-name-safe name, the writer behaviour, its base file, its bytes."""

    name: str
    description: str
    base: str
    make: Callable[[], tuple[bytes, frozenset[Path]]] = field(repr=False, compare=False)

    def build(self) -> bytes:
        return _built(self)[0]

    def expected_paths(self) -> frozenset[Path]:
        """Public attributes (tag paths, items merged) a lossless reader finds in it.

        Group 0002 and private tags are left out; the quirk's own damaged element is
        left out where the quirk makes its value unusable.
        """
        return _built(self)[1]


_building: list[str] = []  # the quirk being built: base() gives it its own UIDs


@cache
def _built(quirk: Quirk) -> tuple[bytes, frozenset[Path]]:
    return quirk.make()


def _own_uid(name: str, make: Callable[[], tuple[bytes, frozenset[Path]]]
             ) -> Callable[[], tuple[bytes, frozenset[Path]]]:
    """``make`` with base() giving the quirk its own SOP Instance UID."""
    def wrapped() -> tuple[bytes, frozenset[Path]]:
        _building.append(name)
        try:
            return make()
        finally:
            _building.pop()
    return wrapped


# -- byte surgery ---------------------------------------------------------------------

def element(tag: int, vr: str | None, value: bytes, *, implicit: bool = False,
            little: bool = True, length: int | None = None) -> bytes:
    """One element's header and value; ``length`` overrides the value's (lies, undefined).

    Unknown VR codes get a 2-byte length, as both pydicom and DCMTK assume for them.
    """
    order = "<" if little else ">"
    n = len(value) if length is None else length
    group, elem = tag >> 16, tag & 0xFFFF
    if implicit or vr is None:
        return struct.pack(order + "HHL", group, elem, n) + value
    if vr in _LONG:
        return struct.pack(order + "HH2sHL", group, elem, vr.encode("latin-1"), 0, n) + value
    return struct.pack(order + "HH2sH", group, elem, vr.encode("latin-1"), n) + value


def delimiter(tag: int, length: int = 0, little: bool = True) -> bytes:
    """An item or delimiter tag (always implicit: items have no VR)."""
    return element(tag, None, b"", little=little, length=length)


def encoded(elem: DataElement, *, implicit: bool = False, little: bool = True) -> bytes:
    """``elem`` as pydicom writes it (sequences and items with undefined length)."""
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = implicit, little
    if elem.VR == "SQ":
        elem.is_undefined_length = True
        for item in elem.value:
            item.is_undefined_length_sequence_item = True
    write_data_element(fp, elem)
    return fp.getvalue()


def body(ds: Dataset, *, implicit: bool = False, little: bool = True,
         before: dict[int, bytes] | None = None, replace: dict[int, bytes] | None = None,
         end: bytes = b"") -> bytes:
    """The dataset's elements in tag order, with bytes spliced in.

    ``before[tag]`` goes just before that element, ``replace[tag]`` stands in for it
    (``b""`` drops it), ``end`` follows the last element.
    """
    before, replace = before or {}, replace or {}
    out = bytearray()
    for elem in ds:
        tag = int(elem.tag)
        out += before.get(tag, b"")
        out += replace[tag] if tag in replace else encoded(elem, implicit=implicit,
                                                             little=little)
    return bytes(out + end)


def _ui(value: str) -> bytes:
    data = value.encode("ascii")
    return data + b"\0" * (len(data) % 2)


def meta(ds: Dataset, ts: str | None, *, group_length: int | None = None) -> bytes:
    """A file meta group (always explicit VR little endian) for ``ds``.

    ``ts`` None leaves Transfer Syntax UID out; ``group_length`` overrides (0002,0000).
    """
    parts = [element(0x00020001, "OB", b"\0\1"),
             element(0x00020002, "UI", _ui(str(ds.SOPClassUID))),
             element(0x00020003, "UI", _ui(str(ds.SOPInstanceUID)))]
    if ts is not None:
        parts.append(element(0x00020010, "UI", _ui(ts)))
    parts += [element(0x00020012, "UI", _ui("1.2.826.0.1.3680043.10.543.1")),
              element(0x00020013, "SH", b"QKS_1.0 ")]
    rest = b"".join(parts)
    n = len(rest) if group_length is None else group_length
    return element(0x00020000, "UL", struct.pack("<L", n)) + rest


def part10(ds: Dataset, data: bytes, ts: str | None, *, preamble: bool = True,
           group_length: int | None = None) -> bytes:
    """Preamble, ``DICM``, meta and the body bytes ``data``."""
    head = b"\0" * 128 if preamble else b""
    return head + b"DICM" + meta(ds, ts, group_length=group_length) + data


def paths(ds: Dataset, prefix: Path = ()) -> set[Path]:
    """Public element paths of ``ds`` (sequence items merged), group 0002 excluded."""
    out: set[Path] = set()
    for elem in ds:
        tag = int(elem.tag)
        if elem.tag.is_private or tag >> 16 == 2:
            continue
        out.add(prefix + (tag,))
        if elem.VR == "SQ":
            for item in elem.value:
                out |= paths(item, prefix + (tag,))
    return out


# -- bases ----------------------------------------------------------------------------

def _request_item() -> Dataset:
    item = Dataset()
    item.AccessionNumber = "QUIRKACC02"
    item.RequestedProcedureDescription = "QUIRK REQUEST"
    item.ScheduledProcedureStepID = "QUIRKSPS1"
    item.RequestedProcedureID = "QUIRKRPID"
    return item


@cache
def _base_bytes(name: str) -> bytes:
    path = get_testdata_file(name)
    if path is None:
        raise FileNotFoundError(f"pydicom test file {name} is not installed")
    with open(path, "rb") as f:
        return f.read()


def base(name: str = "CT_small.dcm", *, sequence: bool = True, private: bool = True) -> Dataset:
    """A pydicom test file with markers planted (a fresh copy every call).

    Adds a Request Attributes Sequence item (for the in-sequence quirks) and a private
    block holding :data:`PRIVATE_MARKER`, the places a careless reader loses things.
    """
    ds = dcmread(io.BytesIO(_base_bytes(name)), force=True)
    if 0xFFFCFFFC in ds:  # CT_small ends with trailing padding: only its quirk has one
        del ds[0xFFFCFFFC]
    for keyword, value in MARKERS.items():
        setattr(ds, keyword, value)
    ds.PatientBirthDate = "19010101"
    if "OtherPatientIDsSequence" in ds:
        for i, item in enumerate(ds.OtherPatientIDsSequence):
            item.PatientID = f"QUIRKOTHER{i}"
    if sequence:
        ds.RequestAttributesSequence = Sequence([_request_item()])
    if private:
        block = ds.private_block(0x0033, "QUIRK CREATOR", create=True)
        block.add_new(0x01, "LO", PRIVATE_MARKER.decode() + "01")
        block.add_new(0x02, "US", 7)
    if _building:
        # Each quirk its own instance (derived from its name, so builds are repeatable):
        # quirks of one base file can then share a store without being duplicates.
        digest = hashlib.sha256(f"dicom-deid quirk {_building[-1]}".encode()).digest()
        ds.SOPInstanceUID = f"2.25.{int.from_bytes(digest[:15], 'big')}"  # short: room to add
        if getattr(ds, "file_meta", None) is not None:
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def _written(ds: Dataset, ts: str) -> bytes:
    ds.file_meta.TransferSyntaxUID = ts
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _explicit(ds: Dataset, data: bytes, lost: Iterable[Path] = (),
              added: Iterable[Path] = ()) -> tuple[bytes, frozenset[Path]]:
    return (part10(ds, data, ExplicitVRLittleEndian),
            frozenset((paths(ds) - set(lost)) | set(added)))


def _tag_after(ds: Dataset, position: str) -> int:
    """The public element a top-level stray goes before: early, middle or pixel data."""
    public = [int(e.tag) for e in ds if not e.tag.is_private]
    return {"early": public[1], "middle": public[len(public) // 2],
            "pixel": PIXEL_DATA}[position]


# -- stray items and delimiters -------------------------------------------------------

_STRAYS = {
    "item0": (delimiter(ITEM), "an item tag of length 0"),
    "item8": (delimiter(ITEM, 8) + b"\0" * 8, "an item tag with an 8-byte value"),
    "seqdelim": (delimiter(SEQ_END), "a sequence delimitation item"),
    "itemdelim": (delimiter(ITEM_END), "an item delimitation item"),
}


def _stray_top(kind: str, position: str) -> tuple[bytes, frozenset[Path]]:
    ds = base()
    stray = _STRAYS[kind][0]
    if position == "end":
        return _explicit(ds, body(ds, end=stray))
    return _explicit(ds, body(ds, before={_tag_after(ds, position): stray}))


def _stray_in_item(kind: str) -> tuple[bytes, frozenset[Path]]:
    """The stray inside a defined-length item, after its first element.

    An item delimiter cannot go there (it ends the item: both readers then lose the
    rest), so it follows the defined-length item instead, before the sequence's end.
    """
    ds = base()
    content = b"".join(encoded(e) for e in _request_item())
    if kind == "itemdelim":
        items = delimiter(ITEM, len(content)) + content + _STRAYS[kind][0]
    else:
        first = len(encoded(_request_item()["AccessionNumber"]))
        content = content[:first] + _STRAYS[kind][0] + content[first:]
        items = delimiter(ITEM, len(content)) + content
    seq = element(REQUEST_ATTRIBUTES, "SQ", b"", length=UNDEFINED) + items + delimiter(SEQ_END)
    return _explicit(ds, body(ds, replace={REQUEST_ATTRIBUTES: seq}))


# -- VRs ------------------------------------------------------------------------------

def _odd_vr(tag_keyword: str, vr: str, value: bytes, *, keep: bool = True,
            long_length: bool = False) -> Callable[[], tuple[bytes, frozenset[Path]]]:
    """``tag_keyword`` encoded with ``vr``; ``long_length`` gives it a 4-byte length.

    Readers disagree on unknown VRs: pydicom assumes a 2-byte length for ones in
    "AA".."ZZ" (and implicit VR for others), DCMTK a 4-byte length for upper-case
    ones and 2 bytes for others. Not ``keep``: the value is unusable as written.
    """
    def make() -> tuple[bytes, frozenset[Path]]:
        ds = base()
        tag = int(ds[tag_keyword].tag)
        if long_length:
            raw = struct.pack("<HH2sHL", tag >> 16, tag & 0xFFFF, vr.encode(), 0,
                              len(value)) + value
        else:
            raw = element(tag, vr, value)
        return _explicit(ds, body(ds, replace={tag: raw}), lost=() if keep else [(tag,)])
    return make


def _un_sequence(defined: bool) -> tuple[bytes, frozenset[Path]]:
    """Request Attributes Sequence as UN with implicit VR items (CP-246)."""
    ds = base()
    content = b"".join(encoded(e, implicit=True) for e in _request_item())
    value = delimiter(ITEM, len(content)) + content
    if defined:
        seq = element(REQUEST_ATTRIBUTES, "UN", value)
    else:
        seq = element(REQUEST_ATTRIBUTES, "UN", value + delimiter(SEQ_END), length=UNDEFINED)
    return _explicit(ds, body(ds, replace={REQUEST_ATTRIBUTES: seq}))


def _acquisition_matrix_lo() -> tuple[bytes, frozenset[Path]]:
    ds = base()
    ds.AcquisitionMatrix = [0, 128, 128, 0]
    tag = 0x00181310
    return _explicit(ds, body(ds, replace={tag: element(tag, "LO", struct.pack(
        "<4H", 0, 128, 128, 0))}))


# -- values ---------------------------------------------------------------------------

def _odd_lengths() -> tuple[bytes, frozenset[Path]]:
    ds = base()
    uid = str(ds.SOPInstanceUID)
    ds.SOPInstanceUID = uid = uid if len(uid) % 2 else uid + "1"
    replace = {0x00081030: element(0x00081030, "LO", b"QUIRK ODD"),
               0x00100010: element(0x00100010, "PN", b"QUIRK^MARKER1"),
               0x00080018: element(0x00080018, "UI", uid.encode())}
    return _explicit(ds, body(ds, replace=replace))


def _nul_padding() -> tuple[bytes, frozenset[Path]]:
    ds = base()
    replace = {0x00100010: element(0x00100010, "PN", b"QUIRK^MARKER\0\0"),
               0x00080080: element(0x00080080, "LO", b"QUIRK HOSPITAL\0\0"),
               0x00080060: element(0x00080060, "CS", b"CT\0\0"),
               0x00180050: element(0x00180050, "DS", b"5.0\0")}
    return _explicit(ds, body(ds, replace=replace))


def _trailing(tail: bytes) -> Callable[[], tuple[bytes, frozenset[Path]]]:
    def make() -> tuple[bytes, frozenset[Path]]:
        ds = base()
        return _explicit(ds, body(ds, end=tail))
    return make


def _garbage(n: int) -> bytes:
    """Deterministic non-DICOM bytes (what a CD writer left in its last block)."""
    return bytes((i * 73 + 41) % 251 for i in range(n))


# -- undefined lengths and lying sequences --------------------------------------------

def _undefined_lo() -> tuple[bytes, frozenset[Path]]:
    """Implicit VR body: the only encoding where an LO can have undefined length."""
    ds = base()
    tag = 0x00181030  # Protocol Name
    ds.ProtocolName = "QUIRK PROTOCOL"
    value = element(tag, None, b"QUIRK PROTOCOL", implicit=True, length=UNDEFINED)
    data = body(ds, implicit=True, replace={tag: value + delimiter(SEQ_END)})
    return part10(ds, data, ImplicitVRLittleEndian), frozenset(paths(ds) - {(tag,)})


def _undefined_ob(tag: int, private: bool) -> Callable[[], tuple[bytes, frozenset[Path]]]:
    def make() -> tuple[bytes, frozenset[Path]]:
        ds = base()
        payload = b"".join(delimiter(ITEM, 8) + bytes(range(i, i + 8)) for i in (0, 8))
        value = element(tag, "OB", payload + delimiter(SEQ_END), length=UNDEFINED)
        if private:
            ds.private_block(0x0035, "QUIRK OB", create=True).add_new(0x10, "OB", b"\0\0")
        else:
            ds.add_new(tag, "OB", b"\0\0")
        return _explicit(ds, body(ds, replace={tag: value}), lost=[(tag,)])
    return make


def _lying_sequence(delta: int) -> tuple[bytes, frozenset[Path]]:
    """A defined-length sequence whose length is off by ``delta`` bytes.

    Too long: the length counts ``delta`` zero bytes of padding after the last item
    (which is where the extra bytes are when a writer pads a rewritten sequence).
    Too short: the item (defined length) runs past the sequence's end.

    (A file ending inside an undefined-length sequence, with no delimiters, is not
    here: neither pydicom nor DCMTK reads it.)
    """
    ds = base()
    content = b"".join(encoded(e) for e in _request_item())
    value = delimiter(ITEM, len(content)) + content
    if delta > 0:
        seq = element(REQUEST_ATTRIBUTES, "SQ", value + b"\0" * delta)
    else:
        seq = element(REQUEST_ATTRIBUTES, "SQ", value, length=len(value) + delta)
    return _explicit(ds, body(ds, replace={REQUEST_ATTRIBUTES: seq}))


# -- file meta ------------------------------------------------------------------------

def _bare(implicit: bool) -> tuple[bytes, frozenset[Path]]:
    ds = base()
    return body(ds, implicit=implicit), frozenset(paths(ds))


def _meta(ts: str | None, implicit_body: bool, *,
          group_delta: int | None = None) -> Callable[[], tuple[bytes, frozenset[Path]]]:
    def make() -> tuple[bytes, frozenset[Path]]:
        ds = base()
        data = body(ds, implicit=implicit_body)
        length = None
        if group_delta is not None:
            length = len(meta(ds, ts)) - 12 + group_delta
        return (part10(ds, data, ts, group_length=length),
                frozenset(paths(ds)))
    return make


# -- pixel data -----------------------------------------------------------------------

def _pixels(kind: str) -> tuple[bytes, frozenset[Path]]:
    ds = base()
    if kind == "missing":
        del ds.PixelData
        return _explicit(ds, body(ds))
    value = b"" if kind == "zero" else ds.PixelData[: len(ds.PixelData) // 2]
    return _explicit(ds, body(ds, replace={PIXEL_DATA: element(PIXEL_DATA, "OW", value)}))


def _existing(name: str, ts: str) -> Callable[[], tuple[bytes, frozenset[Path]]]:
    """A pydicom test file in its own syntax, markers planted, written by pydicom."""
    def make() -> tuple[bytes, frozenset[Path]]:
        ds = base(name)
        return _written(ds, ts), frozenset(paths(ds))
    return make


def _deflated() -> tuple[bytes, frozenset[Path]]:
    """image_dfl.dcm's syntax: the explicit VR LE body through raw deflate (no zlib header)."""
    ds = base("image_dfl.dcm")
    raw = body(ds)
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = squeeze.compress(raw) + squeeze.flush()
    return part10(ds, data, DeflatedExplicitVRLittleEndian), frozenset(paths(ds))


def _image(ds: Dataset, arr: np.ndarray, bits: int = 8) -> None:
    """The pixel description of ``ds`` made that of unsigned MONOCHROME2 ``arr``."""
    ds.Rows, ds.Columns = arr.shape
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    for keyword in ("RescaleIntercept", "RescaleSlope", "WindowCenter", "WindowWidth"):
        if keyword in ds:
            delattr(ds, keyword)


def _phantom(rows: int = 64, columns: int = 64) -> np.ndarray:
    y, x = np.mgrid[:rows, :columns]
    return ((x * 3 + y * 5) % 256).astype(np.uint8)


def _jpeg_ls_8bit() -> tuple[bytes, frozenset[Path]]:
    ds = base()
    _image(ds, _phantom())
    ds.PixelData = _phantom().tobytes()
    ds.compress(JPEGLSLossless, encoding_plugin="pyjpegls", generate_instance_uid=False)
    return _written(ds, JPEGLSLossless), frozenset(paths(ds))


def _planar_rgb() -> tuple[bytes, frozenset[Path]]:
    ds = base("SC_rgb_small_odd.dcm")
    arr = np.frombuffer(ds.PixelData[: ds.Rows * ds.Columns * 3], np.uint8)
    ds.PixelData = arr.reshape(ds.Rows * ds.Columns, 3).T.tobytes() + b"\0"
    ds.PlanarConfiguration = 1
    return _written(ds, ExplicitVRLittleEndian), frozenset(paths(ds))


def _one_bit() -> tuple[bytes, frozenset[Path]]:
    ds = base()
    mask = (_phantom() > 127).astype(np.uint8)
    _image(ds, mask, 1)
    ds.PixelData = pack_bits(mask)
    ds["PixelData"].VR = "OB"
    return _written(ds, ExplicitVRLittleEndian), frozenset(paths(ds))


def _float_pixels(double: bool) -> tuple[bytes, frozenset[Path]]:
    ds = base()
    del ds.PixelData
    for keyword in ("PixelRepresentation", "BitsStored", "HighBit"):
        delattr(ds, keyword)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.30"  # Parametric Map Storage
    ds.BitsAllocated = 64 if double else 32
    arr = _phantom().astype("<f8" if double else "<f4") / 7.0
    ds.Rows, ds.Columns = arr.shape
    if double:
        ds.DoubleFloatPixelData = arr.tobytes()
    else:
        ds.FloatPixelData = arr.tobytes()
    return _written(ds, ExplicitVRLittleEndian), frozenset(paths(ds))


# -- private blocks -------------------------------------------------------------------

def _many_private() -> tuple[bytes, frozenset[Path]]:
    ds = base()
    for b in range(8):
        block = ds.private_block(0x0041, f"QUIRK MANY {b}", create=True)
        for e in range(250):
            block.add_new(e, "LO", f"{PRIVATE_MARKER.decode()}{b}{e:03d}")
    return _explicit(ds, body(ds))


def _big_private_ob() -> tuple[bytes, frozenset[Path]]:
    ds = base()
    blob = (PRIVATE_MARKER + bytes(range(247))) * (5 * 1024 * 1024 // 256)
    ds.private_block(0x0049, "QUIRK BLOB", create=True).add_new(0x10, "OB", blob)
    return _explicit(ds, body(ds))


def _private_sequences(implicit_inside: bool) -> tuple[bytes, frozenset[Path]]:
    """A private SQ holding a private SQ; its items implicit VR if ``implicit_inside``."""
    ds = base()
    creator = element(0x00450010, "LO", b"QUIRK NEST  ")
    inner_item = (element(0x00450010, "LO", b"QUIRK NEST  ", implicit=implicit_inside)
                  + element(0x00451002, "LO", PRIVATE_MARKER + b"N1 ", implicit=implicit_inside))
    inner = (element(0x00451001, "SQ", b"", implicit=implicit_inside, length=UNDEFINED)
             + delimiter(ITEM, len(inner_item)) + inner_item + delimiter(SEQ_END))
    outer_item = (element(0x00100010, "PN", b"QUIRK^MARKER", implicit=implicit_inside)
                  + element(0x00450010, "LO", b"QUIRK NEST  ", implicit=implicit_inside)
                  + inner)
    outer = (element(0x00451001, "SQ", b"", length=UNDEFINED)
             + delimiter(ITEM, UNDEFINED) + outer_item + delimiter(ITEM_END)
             + delimiter(SEQ_END))
    return _explicit(ds, _splice_private(ds, creator + outer, 0x0045))


def _splice_private(ds: Dataset, data: bytes, group: int) -> bytes:
    """``data`` (elements of ``group``) placed in tag order in the body of ``ds``."""
    after = next(int(e.tag) for e in ds if int(e.tag) >> 16 > group)
    return body(ds, before={after: data})


def _no_creator() -> tuple[bytes, frozenset[Path]]:
    ds = base()
    orphans = (element(0x00471010, "LO", PRIVATE_MARKER + b"O1 ")
               + element(0x00471011, "US", struct.pack("<H", 3)))
    return _explicit(ds, _splice_private(ds, orphans, 0x0047))


# -- the list -------------------------------------------------------------------------

_POSITIONS = {"early": "before the second element", "middle": "in the middle of the dataset",
              "pixel": "just before Pixel Data", "end": "after the last element"}


def quirks() -> list[Quirk]:
    """Every quirk, in a fixed order (names are unique and safe as file names)."""
    ct = "CT_small.dcm"
    out = []
    for kind, (_, what) in _STRAYS.items():
        # A top-level item delimiter ends the dataset for pydicom and DCMTK alike
        # (both silently drop what follows), so only its harmless place is kept.
        positions = ("end",) if kind == "itemdelim" else ("early", "middle", "pixel")
        for pos in positions:
            out.append(Quirk(f"stray-{kind}-{pos}", f"{what} at the top level, "
                             f"{_POSITIONS[pos]} (a writer's sequence bookkeeping gone "
                             "wrong)", ct, lambda k=kind, p=pos: _stray_top(k, p)))
        where = "after a defined-length item" if kind == "itemdelim" else "inside an item"
        out.append(Quirk(f"stray-{kind}-in-sequence", f"{what} in a sequence, {where} (an "
                         "editor removing an element left its wrapper)", ct,
                         lambda k=kind: _stray_in_item(k)))
    for vr, long_length, safe in (("XX", False, "xx"), ("XX", True, "xx-long-length"),
                                  ("QQ", True, "qq-long-length"), ("??", False, "qmarks"),
                                  ("ab", False, "lowercase"), ("  ", False, "spaces")):
        out.append(Quirk(f"vr-unknown-{safe}", f"VR code {vr!r} with a "
                         f"{4 if long_length else 2}-byte length on Institution Name (a "
                         "writer's placeholder VR for elements it does not know)",
                         ct, _odd_vr("InstitutionName", vr, b"QUIRK HOSPITAL",
                                     keep=False, long_length=long_length)))
    out += [
        Quirk("vr-un-string", "Patient's Name as UN (a router that re-encoded an implicit "
              "file without a dictionary)", ct, _odd_vr("PatientName", "UN", b"QUIRK^MARKER")),
        Quirk("vr-un-numeric", "Rows as UN (same, on a binary US element)", ct,
              _odd_vr("Rows", "UN", struct.pack("<H", 128))),
        Quirk("vr-un-sequence-defined", "a sequence as UN of defined length with implicit VR "
              "items (CP-246 conversion)", ct, lambda: _un_sequence(True)),
        Quirk("vr-un-sequence-undefined", "a sequence as UN of undefined length with implicit "
              "VR items (CP-246)", ct, lambda: _un_sequence(False)),
        Quirk("vr-wrong-us-on-string", "Station Name written with VR US (a writer using the "
              "wrong dictionary)", ct, _odd_vr("StationName", "US", b"QUIRKSTATION")),
        Quirk("vr-wrong-lo-on-us", "Acquisition Matrix (US) written with VR LO and binary "
              "values", ct, _acquisition_matrix_lo),
        Quirk("vr-wrong-ob-on-pn", "Patient's Name written with VR OB", ct,
              _odd_vr("PatientName", "OB", b"QUIRK^MARKER")),
        Quirk("value-odd-length", "string and UID values of odd length with no padding",
              ct, _odd_lengths),
        Quirk("value-nul-padding", "string values padded with NUL instead of space", ct,
              _nul_padding),
        Quirk("trailing-zeros", "2 KB of zero bytes after the dataset (padding to a CD "
              "block)", ct, _trailing(b"\0" * 2048)),
        Quirk("trailing-garbage", "non-DICOM bytes after the dataset (a writer that did not "
              "truncate an overwritten file)", ct, _trailing(_garbage(301))),
        Quirk("trailing-padding-element", "Data Set Trailing Padding (FFFC,FFFC) at the end",
              ct, _trailing(element(0xFFFCFFFC, "OB", b"\0" * 256))),
        Quirk("undefined-length-lo", "an LO with undefined length ended by a sequence "
              "delimiter (implicit VR)", ct, _undefined_lo),
        Quirk("undefined-length-ob-public", "Encapsulated Document (OB) with undefined length "
              "and items, not pixel data", ct, _undefined_ob(0x00420011, False)),
        Quirk("undefined-length-ob-private", "a private OB with undefined length and items",
              ct, _undefined_ob(0x00351010, True)),
        Quirk("sequence-length-too-long", "a defined-length sequence whose length counts 8 bytes "
              "of zero padding after its item", ct, lambda: _lying_sequence(8)),
        Quirk("sequence-length-too-short", "a defined-length sequence 6 bytes shorter than "
              "its item", ct, lambda: _lying_sequence(-6)),
        Quirk("meta-missing-implicit", "a bare implicit VR dataset, no preamble or meta "
              "(ACR-NEMA style)", ct, lambda: _bare(True)),
        Quirk("meta-missing-explicit", "a bare explicit VR little endian dataset", ct,
              lambda: _bare(False)),
        Quirk("meta-group-length-short", "File Meta Information Group Length 10 bytes too "
              "small", ct, _meta(ExplicitVRLittleEndian, False, group_delta=-10)),
        Quirk("meta-group-length-long", "File Meta Information Group Length 10 bytes too "
              "large", ct, _meta(ExplicitVRLittleEndian, False, group_delta=10)),
        Quirk("meta-no-transfer-syntax", "file meta without Transfer Syntax UID, explicit "
              "body", ct, _meta(None, False)),
        Quirk("meta-no-transfer-syntax-implicit", "file meta without Transfer Syntax UID, "
              "implicit body", ct, _meta(None, True)),
        Quirk("meta-explicit-body-implicit", "meta says Explicit VR LE, body is implicit", ct,
              _meta(ExplicitVRLittleEndian, True)),
        Quirk("meta-implicit-body-explicit", "meta says Implicit VR LE, body is explicit", ct,
              _meta(ImplicitVRLittleEndian, False)),
        Quirk("pixel-data-zero-length", "Pixel Data present with length 0", ct,
              lambda: _pixels("zero")),
        Quirk("pixel-data-missing", "an image SOP class with no Pixel Data", ct,
              lambda: _pixels("missing")),
        Quirk("pixel-data-short", "Pixel Data half of Rows x Columns x 2 bytes", ct,
              lambda: _pixels("short")),
        Quirk("big-endian", "Explicit VR Big Endian (retired syntax older writers still "
              "use)", "MR_small_bigendian.dcm", _existing("MR_small_bigendian.dcm",
                                                          ExplicitVRBigEndian)),
        Quirk("deflated", "Deflated Explicit VR Little Endian", "image_dfl.dcm", _deflated),
        Quirk("jpeg-baseline-ybr-full-422", "JPEG baseline YBR_FULL_422 (DCMTK-compressed "
              "RGB)", "SC_rgb_dcmtk_+eb+cy+s2.dcm", _existing(
                  "SC_rgb_dcmtk_+eb+cy+s2.dcm", "1.2.840.10008.1.2.4.50")),
        Quirk("jpeg-ls-lossless-8bit", "JPEG-LS lossless of 8-bit MONOCHROME2 (crafted with "
              "pyjpegls)", ct, _jpeg_ls_8bit),
        Quirk("palette-color", "PALETTE COLOR ultrasound with LUTs", "examples_palette.dcm",
              _existing("examples_palette.dcm", ExplicitVRLittleEndian)),
        Quirk("planar-configuration-1", "RGB with colour-by-plane (PlanarConfiguration 1)",
              "SC_rgb_small_odd.dcm", _planar_rgb),
        Quirk("bits-allocated-1", "a 1-bit bitmap (BitsAllocated 1, packed bits)", ct,
              _one_bit),
        Quirk("float-pixel-data", "Float Pixel Data (7FE0,0008) of a parametric map", ct,
              lambda: _float_pixels(False)),
        Quirk("double-float-pixel-data", "Double Float Pixel Data (7FE0,0009)", ct,
              lambda: _float_pixels(True)),
        Quirk("private-many-elements", "2,000 private elements in 8 blocks (vendor "
              "protocol dumps)", ct, _many_private),
        Quirk("private-ob-5mb", "a 5 MB private OB (raw data or a vendor thumbnail)", ct,
              _big_private_ob),
        Quirk("private-sequence-nested", "a private sequence holding a private sequence",
              ct, lambda: _private_sequences(False)),
        Quirk("private-sequence-implicit-items", "a private SQ in an explicit file whose "
              "items are implicit VR (a GE/Philips export bug)", ct,
              lambda: _private_sequences(True)),
        Quirk("private-no-creator", "private elements with no Private Creator for their "
              "block", ct, _no_creator),
    ]
    return [replace(q, make=_own_uid(q.name, q.make)) for q in out]
