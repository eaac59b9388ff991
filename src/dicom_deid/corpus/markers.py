"""Marker instances: one synthetic CT whose every PS3.15 Table E.1-1 attribute holds a marker.

Why: a de-identifier is only as good as the attribute it forgets. Checking its output
attribute by attribute repeats the de-identifier's own view of the data (the same
keyword lists, the same traversal), so it misses exactly what the de-identifier misses
-- a name left in a sequence item, a private element, a comment. Planting a value that
occurs nowhere else in the file in every attribute the table covers, and then searching
the *bytes* of the output for each planted value, needs no such view: whatever is found
was left behind, wherever it hides.

What is planted:

* every row of Table E.1-1 that a standard composite IOD can carry (``stdCompIOD`` Y)
  and whose tag pydicom knows, at the top level (kind ``"table"``); a sequence row gets
  one item whose Code Meaning carries the sequence's marker and which also holds a
  table attribute of its own with a second marker (kind ``"nested"``);
* the wildcard rows: curves in groups 5000 and 5002, overlay data and overlay comments
  in groups 6000 and 6002 (kind ``"table"``, with the wildcard row's action);
* a representative set of identifying attributes copied into sequence items at depths
  1..``nested_depth`` (Request Attributes Sequence, then Referenced Study Sequence
  inside it, and so on), each with its own marker (kind ``"nested"``);
* private elements of a made-up creator, at the top level, inside a private sequence
  and inside a standard sequence's item, plus one element that CTP's private
  dictionary marks safe to keep (see :data:`SAFE_PRIVATE`) (kind ``"private"``);
* sentences in comments and descriptions with markers where a name, a physician or a
  nurse would be (kind ``"free_text"``).

Marker formats. Each is fixed-width, so no marker is a prefix or a substring of
another, and each is valid for its VR:

* text VRs, and OB/OW/UN as ASCII bytes: ``QZ`` + two seed digits + five serial digits
  (``QZ0700042``); ``QZ`` followed by digits does not occur in real headers;
* UI: ``1.2.826.0.1.3680043.10.543.9SSNNNNN`` (seed ``SS``, serial ``NNNNN``);
* DA: dates on a lattice of 1009 days (a prime, so a date shift of less than 1009
  days never turns one marker into another) offset by 7 x seed days;
* DT: the same lattice offset by three more days (so a DT's date part is never a DA
  marker) at ``000000`` hours (so no other 8-digit run in it forms a valid date);
* TM: ``145926.SSNNNN``, unique by its fraction; AS: ``NNND`` (seed x 10 + serial);
* IS: ``-7SSNNNNN``; DS: ``-8SSNNNNN`` -- the sign keeps them out of digit runs.

Pixel values stay below 4096, so the pixel data never contains two printable bytes in a
row, and clinical attributes (geometry, windowing, pixel description) hold ordinary
values that contain no marker.

Everything derives from ``seed`` (0..99): the same seed gives the same bytes, for a
given pydicom version (it writes its version into the file meta).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache

from pydicom import dcmwrite
from pydicom.datadict import dictionary_VM, dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from dicom_deid.engine.ps315 import Rule, table

__all__ = ["SAFE_PRIVATE", "MarkedInstance", "Plant", "marked_instance", "skipped_rows"]

MAX_SEED = 99
MAX_NESTED_DEPTH = 10

# VRs whose values are binary numbers: a marker there cannot be found by a byte search
# (a two-byte integer occurs by chance all over a file), so such plants are recorded
# with a descriptive marker and ``searchable`` False; check them by path instead.
_NUMERIC_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT"})
_TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_BYTES_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})

_UID_ROOT = "1.2.826.0.1.3680043.10.543."
_DATE_BASE = date(1750, 1, 1)
_DATE_STRIDE = 1009  # days, a prime: shifts shorter than this map no marker onto another
_DATE_LIMIT = date(1975, 1, 1)  # keeps planted dates in the past, far from real studies

_MARKER_CREATOR = "MARKER CORP"
_MARKER_GROUP = 0x0009

SAFE_PRIVATE = ("GEMS_PARM_01", 0x0043, 0x27, "SH", "ScanPitchRatio")
"""The planted private element that CTP's dictionary marks ``code="K"`` (safe to keep).

GE's (0043,xx27) Scan Pitch Ratio under creator ``GEMS_PARM_01``, an SH: under the
Retain Safe Private Option a de-identifier may keep it, so finding its marker in the
output is not a leak then (every other private marker is). As (creator, group,
element offset, VR, CTP key).
"""

# Sequence rows whose items reference other objects: their nested plant is a
# Referenced SOP Instance UID (action U), the attribute such items actually carry.
_REFERENCE_SEQUENCES = frozenset({
    0x00081110, 0x00081111, 0x00081120, 0x00081140, 0x00082112,
})
# Carrier of a sequence row's own marker. Code Meaning is not a row of the table, so
# whether it survives depends only on what the de-identifier does with the sequence.
_SQ_CARRIER = 0x00080104
_SQ_LEAF = 0x0040A123  # Person Name, action D: the nested plant of the other sequences

# Copied into sequence items at every depth: what identifies a patient, a study and a
# person, of each text-like VR a de-identifier must handle in items.
_NESTED_SET = (
    "PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName",
    "ReferringPhysicianName", "OperatorsName", "StudyDate", "StudyTime",
    "ReferencedSOPInstanceUID",
)
# Containers of the nested chain, alternated from depth 1 downwards.
_NESTED_CHAIN = (0x00400275, 0x00081110)  # Request Attributes, Referenced Study

# Rows whose value is a sentence (kind "free_text" markers inside, the row's own
# marker first). Study Comments (0032,4000) is not planted: its row is stdCompIOD N.
_FREE_TEXT = {
    0x00081030: "{t} CT chest for {a}, ordered by Dr {b}",           # Study Description
    0x0008103E: "{t} axial 5mm {a} by tech {b}",                    # Series Description
    0x001021B0: ("{t}: Patient {a} seen by Dr {b} on 03/04/2021, phone 555-0100, "
                 "MRN 12345678."),                                  # Additional Pat. History
    0x00104000: ("{t}: next of kin {a}, contact via Dr {b}, 12 Elm Street, "
                 "phone 555-0199."),                                # Patient Comments
    0x00204000: ("{t}: Patient {name} (ID {pid}) seen by Dr {a} on 03/04/2021; "
                 "nurse {b}, phone 555-0100."),                     # Image Comments
}


@dataclass(frozen=True)
class Plant:
    """One planted marker and where it is.

    ``marker`` is what to search for in the bytes of a de-identified file; it occurs in
    the value (a whole value, or a token of a sentence or URL), once in the file except
    as noted on :class:`MarkedInstance`. ``path`` is the tag path to the attribute that
    holds it, through item 0 of each sequence on the way. ``action`` is the table's
    Basic Profile action for the leaf tag (for a sequence row, the sequence's action;
    ``None`` for attributes outside the table: private elements and sentence tokens).
    ``kind`` is ``"table"``, ``"nested"``, ``"private"`` or ``"free_text"``.
    """

    marker: str
    path: tuple[int, ...]
    vr: str
    action: str | None
    kind: str

    @property
    def searchable(self) -> bool:
        """Whether ``marker`` is in the file's bytes (False for binary-number VRs)."""
        return self.vr not in _NUMERIC_VRS


@dataclass
class MarkedInstance:
    """A marker instance and the record of what was planted where.

    ``plants`` holds distinct markers. Three markers occur twice in the file by
    design: the Patient's Name and Patient ID markers are repeated inside Image
    Comments (a name typed into a comment is the classic leak), and the SOP Instance
    UID is also the file meta's Media Storage SOP Instance UID.
    """

    dataset: Dataset
    plants: list[Plant] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        """The instance as a Part 10 file (preamble, file meta, Explicit VR LE)."""
        buf = io.BytesIO()
        dcmwrite(buf, self.dataset, enforce_file_format=True)
        return buf.getvalue()


class _Markers:
    """Issues the markers of one instance, one counter per format."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._serial = 0
        self._dates = 0
        self._datetimes = 0
        self._times = 0
        self._ages = 0

    def _next(self) -> int:
        self._serial += 1
        if self._serial > 99999:
            raise ValueError("more than 99999 markers in one instance")
        return self._serial

    def text(self) -> str:
        return f"QZ{self.seed:02d}{self._next():05d}"

    def uid(self) -> str:
        return f"{_UID_ROOT}9{self.seed:02d}{self._next():05d}"

    def integer(self) -> str:
        return f"-7{self.seed:02d}{self._next():05d}"

    def decimal(self) -> str:
        return f"-8{self.seed:02d}{self._next():05d}"

    def _lattice_day(self, index: int, offset: int) -> date:
        day = _DATE_BASE + timedelta(days=index * _DATE_STRIDE + 7 * self.seed + offset)
        if day >= _DATE_LIMIT:
            raise ValueError("too many date markers for one instance; lower nested_depth")
        return day

    def date(self) -> str:
        self._dates += 1
        return self._lattice_day(self._dates, 0).strftime("%Y%m%d")

    def datetime(self) -> str:
        self._datetimes += 1
        return self._lattice_day(self._datetimes, 3).strftime("%Y%m%d") + "000000"

    def time(self) -> str:
        self._times += 1
        if self._times > 9999:
            raise ValueError("more than 9999 time markers in one instance")
        return f"145926.{self.seed:02d}{self._times:04d}"

    def age(self) -> str:
        self._ages += 1
        if self._ages > 9:
            raise ValueError("more than 9 age markers in one instance")
        return f"{self.seed * 10 + self._ages:03d}D"


def _padded(text: str, multiple: int = 8) -> bytes:
    """ASCII bytes of ``text``, NUL-padded so any binary VR accepts the length."""
    raw = text.encode("ascii")
    return raw + b"\0" * (-len(raw) % multiple)


def _min_values(tag: int) -> int:
    """Values an attribute needs at least: 3 for VM "3", 1 for "1-n" and private tags."""
    try:
        head = dictionary_VM(tag).split("-")[0]
    except KeyError:
        return 1
    return int(head) if head.isdigit() else 1


def _element(tag: int, vr: str, markers: _Markers) -> tuple[DataElement, str]:
    """An element of ``tag`` whose value carries a fresh marker, and that marker."""
    if vr in _TEXT_VRS:
        marker = markers.text()
        value: object = marker
    elif vr == "UR":
        marker = markers.text()
        value = f"https://example.invalid/{marker}"
    elif vr == "UI":
        value = marker = markers.uid()
    elif vr == "DA":
        value = marker = markers.date()
    elif vr == "DT":
        value = marker = markers.datetime()
    elif vr == "TM":
        value = marker = markers.time()
    elif vr == "AS":
        value = marker = markers.age()
    elif vr == "IS":
        value = marker = markers.integer()
    elif vr == "DS":
        value = marker = markers.decimal()
    elif vr in _BYTES_VRS:
        marker = markers.text()
        value = _padded(marker)
    elif vr in ("US", "UL", "UV"):
        # Not findable in bytes; the marker names the value for reports and stays
        # unique per seed like the others. Check these plants by path.
        value = 1
        marker = f"{markers.text()}@{vr}={value}"
    else:
        raise ValueError(f"no marker format for VR {vr} of ({tag >> 16:04X},{tag & 0xFFFF:04X})")
    extra = _min_values(tag) - 1
    if extra:
        # Only DS attributes with a fixed multiplicity (GPS coordinates, lens data) get
        # here; the padding values are plain zeros, not markers.
        value = [value, *(["0"] * extra)]
    return DataElement(tag, vr, value), marker


def _concrete_tag(rule: Rule) -> int | None:
    digits = rule.tag.strip("()").replace(",", "")
    if len(digits) != 8 or "X" in digits:
        return None
    try:
        return int(digits, 16)
    except ValueError:
        return None


@lru_cache(maxsize=1)
def _planted_rows() -> tuple[tuple[tuple[int, str, Rule], ...], tuple[str, ...]]:
    """(tag, VR, rule) of each concrete stdCompIOD row to plant, and why others are not."""
    planted: list[tuple[int, str, Rule]] = []
    skipped: list[str] = []
    for rule in table().rules:
        if not rule.in_composite_iod:
            continue
        tag = _concrete_tag(rule)
        if tag is None:
            if rule.tag.startswith("(60XX,3000)"):
                continue  # planted as overlay data in groups 6000 and 6002
            skipped.append(f"{rule.tag} {rule.name}: wildcard row with no planting rule")
            continue
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            skipped.append(f"{rule.tag} {rule.name}: not in pydicom's data dictionary")
            continue
        if vr not in _TEXT_VRS | _BYTES_VRS | {"UR", "UI", "DA", "DT", "TM", "AS", "IS", "DS",
                                              "SQ", "US", "UL", "UV"}:
            skipped.append(f"{rule.tag} {rule.name}: no marker format for VR {vr}")
            continue
        planted.append((tag, vr, rule))
    planted.sort(key=lambda row: row[0])
    return tuple(planted), tuple(skipped)


def skipped_rows() -> list[str]:
    """stdCompIOD rows of the table that :func:`marked_instance` does not plant, with why.

    Empty for the shipped table and pydicom 3: every such row has a dictionary entry
    and a VR with a marker format (the one binary-number row, GPS Altitude Ref (US),
    is planted with a non-searchable marker). Kept as a function so a newer table or
    dictionary that adds an unplantable row shows up here rather than silently.
    """
    return list(_planted_rows()[1])


class _Builder:
    """Fills one dataset and records its plants."""

    def __init__(self, seed: int) -> None:
        self.markers = _Markers(seed)
        self.plants: list[Plant] = []
        self.ds = Dataset()

    def plant(self, target: Dataset, path: tuple[int, ...], vr: str, kind: str,
              action: str | None) -> str:
        element, marker = _element(path[-1], vr, self.markers)
        target.add(element)
        self.plants.append(Plant(marker, path, vr, action, kind))
        return marker

    def table_row(self, tag: int, vr: str, rule: Rule) -> None:
        if tag in _FREE_TEXT:
            self.free_text(tag, vr, rule)
        elif vr == "SQ":
            self.sequence_row(tag, rule)
        else:
            self.plant(self.ds, (tag,), vr, "table", rule.basic)

    def free_text(self, tag: int, vr: str, rule: Rule) -> None:
        own, a, b = (self.markers.text() for _ in range(3))
        name = str(self.ds.get("PatientName", "")) if tag == 0x00204000 else ""
        pid = str(self.ds.get("PatientID", "")) if tag == 0x00204000 else ""
        text = _FREE_TEXT[tag].format(t=own, a=a, b=b, name=name, pid=pid)
        if vr in ("LO", "SH") and len(text) > 64:
            raise ValueError(f"free text too long for {vr}: {text!r}")
        self.ds.add(DataElement(tag, vr, text))
        self.plants.append(Plant(own, (tag,), vr, rule.basic, "table"))
        self.plants.extend(Plant(m, (tag,), vr, None, "free_text") for m in (a, b))

    def sequence_row(self, tag: int, rule: Rule) -> Dataset:
        item = Dataset()
        marker = self.markers.text()
        item.add(DataElement(_SQ_CARRIER, "LO", marker))
        self.plants.append(Plant(marker, (tag,), "SQ", rule.basic, "table"))
        if tag in _REFERENCE_SEQUENCES:
            item.ReferencedSOPClassUID = CTImageStorage
            leaf = 0x00081155
        else:
            leaf = _SQ_LEAF
        self.nested(item, (tag, leaf))
        self.ds.add(DataElement(tag, "SQ", Sequence([item])))
        return item

    def nested(self, item: Dataset, path: tuple[int, ...]) -> None:
        leaf_rule = table().rule(path[-1])
        self.plant(item, path, dictionary_VR(path[-1]), "nested",
                   leaf_rule.basic if leaf_rule else None)

    def chain_item(self) -> Dataset:
        """Item 0 of the chain's first sequence (planted as a table row, if not yet)."""
        if _NESTED_CHAIN[0] not in self.ds:
            self.ds.add(DataElement(_NESTED_CHAIN[0], "SQ", Sequence([Dataset()])))
        return self.ds[_NESTED_CHAIN[0]].value[0]

    def nested_chain(self, depth: int) -> None:
        """The representative set at depths 1..``depth`` under the chain's sequences."""
        item = self.chain_item()
        path: tuple[int, ...] = (_NESTED_CHAIN[0],)
        for level in range(1, depth + 1):
            if level > 1:
                container = _NESTED_CHAIN[(level - 1) % len(_NESTED_CHAIN)]
                child = Dataset()
                item.add(DataElement(container, "SQ", Sequence([child])))
                item, path = child, (*path, container)
            for keyword in _NESTED_SET:
                self.nested(item, (*path, tag_for_keyword(keyword)))

    def private(self) -> None:
        """Private elements at the top level, in a private sequence and in a standard item."""
        block = self.ds.private_block(_MARKER_GROUP, _MARKER_CREATOR, create=True)
        for offset, vr in ((0x01, "LO"), (0x02, "SH"), (0x03, "UN"), (0x04, "LT"),
                           (0x05, "PN")):
            self.plant(self.ds, (block.get_tag(offset),), vr, "private", None)
        inner = Dataset()
        inner_block = inner.private_block(_MARKER_GROUP, _MARKER_CREATOR, create=True)
        seq_tag = block.get_tag(0x06)
        self.plant(inner, (seq_tag, inner_block.get_tag(0x01)), "LO", "private", None)
        self.ds.add(DataElement(seq_tag, "SQ", Sequence([inner])))
        item = self.chain_item()
        item_block = item.private_block(_MARKER_GROUP, _MARKER_CREATOR, create=True)
        self.plant(item, (_NESTED_CHAIN[0], item_block.get_tag(0x01)), "LO", "private",
                   None)
        creator, group, offset, vr, _ = SAFE_PRIVATE
        safe = self.ds.private_block(group, creator, create=True)
        self.plant(self.ds, (safe.get_tag(offset),), vr, "private", None)

    def curves_and_overlays(self) -> None:
        """Retired curves (50xx) and overlays (60xx): wildcard rows of the table."""
        rules = {rule.tag: rule for rule in table().wildcard_rules}
        curve, data, comments = (rules["(50XX,XXXX)"].basic, rules["(60XX,3000)"].basic,
                                 rules["(60XX,4000)"].basic)
        for group in (0x5000, 0x5002):
            base = group << 16
            self.ds.add(DataElement(base | 0x0005, "US", 1))      # Curve Dimensions
            self.ds.add(DataElement(base | 0x0010, "US", 4))      # Number of Points
            self.ds.add(DataElement(base | 0x0020, "CS", "TAC"))  # Type of Data
            self.ds.add(DataElement(base | 0x0103, "US", 0))      # Data Value Representation
            self.plant(self.ds, (base | 0x0022,), "LO", "table", curve)  # Curve Description
            self.plant(self.ds, (base | 0x2500,), "LO", "table", curve)  # Curve Label
            self.plant(self.ds, (base | 0x3000,), "OB", "table", curve)  # Curve Data
        for group in (0x6000, 0x6002):
            base = group << 16
            self.ds.add(DataElement(base | 0x0010, "US", 16))      # Overlay Rows
            self.ds.add(DataElement(base | 0x0011, "US", 16))      # Overlay Columns
            self.ds.add(DataElement(base | 0x0040, "CS", "G"))     # Overlay Type
            self.ds.add(DataElement(base | 0x0050, "SS", [1, 1]))  # Overlay Origin
            self.ds.add(DataElement(base | 0x0100, "US", 1))       # Overlay Bits Allocated
            self.ds.add(DataElement(base | 0x0102, "US", 0))       # Overlay Bit Position
            marker = self.markers.text()
            # 16 x 16 one-bit pixels are 32 bytes: the marker's ASCII, then zeros.
            self.ds.add(DataElement(base | 0x3000, "OW", _padded(marker, 32)))
            self.plants.append(Plant(marker, (base | 0x3000,), "OW", data, "table"))
            self.plant(self.ds, (base | 0x4000,), "LT", "table", comments)

    def clinical(self) -> None:
        """What makes the file a displayable CT; none of it is a table row or a marker."""
        ds = self.ds
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = CTImageStorage
        ds.Modality = "CT"
        ds.BodyPartExamined = "CHEST"
        ds.SliceThickness = "5"
        ds.KVP = "120"
        ds.PatientPosition = "HFS"
        ds.SeriesNumber = 1
        ds.InstanceNumber = 1
        ds.ImagePositionPatient = ["-59.5", "-59.5", "-120"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.SliceLocation = "-120"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = 16
        ds.PixelSpacing = ["0.742188", "0.742188"]
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        # A ramp below 4096: each high byte is at most 0x0F, so no two printable bytes
        # are adjacent and no marker can occur in the pixel data by chance.
        ds.PixelData = struct.pack("<256H", *((i * 13 + 1000) % 4096 for i in range(256)))
        ds["PixelData"].VR = "OW"


def marked_instance(seed: int = 0, *, nested_depth: int = 2) -> MarkedInstance:
    """A CT instance with a distinct marker in every table attribute it can carry.

    ``seed`` (0..99) goes into every marker, so instances of different seeds share none
    and can be de-identified together and still told apart. ``nested_depth`` (0..10) is
    how deep the representative identifying set is copied into sequence items (0: only
    the one nested attribute of each sequence row).
    """
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be in 0..{MAX_SEED}, got {seed}")
    if not 0 <= nested_depth <= MAX_NESTED_DEPTH:
        raise ValueError(f"nested_depth must be in 0..{MAX_NESTED_DEPTH}, got {nested_depth}")
    builder = _Builder(seed)
    rows, _ = _planted_rows()
    # Image Comments repeats the patient's name and ID, so they are planted first.
    first = {0x00100010, 0x00100020}
    for tag, vr, rule in sorted(rows, key=lambda row: row[0] not in first):
        builder.table_row(tag, vr, rule)
    builder.curves_and_overlays()
    builder.nested_chain(nested_depth)
    builder.private()
    builder.clinical()

    ds = builder.ds
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return MarkedInstance(ds, builder.plants)
