"""Reading an instance defensively: every way a file can be unusable has a reason.

pydicom is lenient by design: it reads truncated files without complaint (values
come back short) and files without a preamble or meta with ``force``. Both the
server and the engine need to refuse the first and accept the second, with a
reason that names the problem and never quotes a value from the file.
"""

from __future__ import annotations

import io
import re
from typing import BinaryIO

from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.hooks import hooks
from pydicom.hooks import raw_element_vr as _default_vr_hook
from pydicom.valuerep import VR

from . import dataset_bytes
from .failures import READING, tag_label
from .inflate import InflateLimitExceeded
from .outcome import InstanceTooLarge, UnreadableInstance
from .uids import valid_uid

__all__ = ["REQUIRED_UIDS", "InstanceTooLarge", "UnreadableInstance", "read",
           "required_uids", "valid_uid"]

UNDEFINED = 0xFFFFFFFF
REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


def _is_sequence(elem: RawDataElement) -> bool:
    if elem.VR is not None:
        return elem.VR == "SQ"
    try:
        return dictionary_VR(elem.tag) == "SQ"
    except KeyError:
        return False


def complete(ds: Dataset) -> bool:
    """True if no value is cut short, at any depth (:func:`truncated_at` says where)."""
    return truncated_at(ds) is None


def truncated_at(ds: Dataset) -> int | None:
    """The tag of the first value cut short, at any depth, or None.

    pydicom reads a truncated file without complaint, returning short values; its
    raw elements keep the declared length, which is compared here. Undefined-length
    sequences (which pydicom parses while reading) are checked item by item; nothing
    else is decoded, which keeps this cheap.
    """
    drop_stray(ds)
    for elem in ds.elements():
        if not isinstance(elem, RawDataElement):
            if elem.VR == "SQ":
                for item in elem.value:
                    if truncated_at(item) is not None:
                        return int(elem.tag)
            continue
        if elem.length != UNDEFINED and elem.value is not None and len(elem.value) < elem.length:
            return int(elem.tag)
        # A defined-length sequence whose value is whole cannot have lost bytes inside
        # (a file is cut at its end); its items are parsed when they are de-identified.
    return None


_TAG_IN_MESSAGE = re.compile(r"\(([0-9A-Fa-f]{4}), ?([0-9A-Fa-f]{4})\)")


def _where(exc: Exception) -> str:
    """`` at (gggg,eeee) Keyword`` when pydicom's message names the element's tag.

    Only the tag is taken from the message (the rest may quote a value).
    """
    match = _TAG_IN_MESSAGE.search(str(exc))
    if match is None:
        return ""
    return f" at {tag_label(int(match.group(1) + match.group(2), 16))}"


def _looks_like_dicom(head: bytes) -> bool:
    """A Part 10 prefix, or a bare dataset starting with a low group (0000-0010).

    ``force`` makes pydicom read anything; a text file would come back as nonsense
    elements. Bare datasets in the wild start with groups 0002, 0008 or 0010.
    """
    if head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    return int.from_bytes(head[:2], "little") <= 0x0010 or int.from_bytes(
        head[:2], "big") <= 0x0010


def read(source: str | BinaryIO, *, force: bool = True) -> Dataset:
    """A complete dataset, or :class:`UnreadableInstance` saying what is wrong."""
    if isinstance(source, str):
        with open(source, "rb") as f:
            return _read(f, force)
    return _read(source, force)


def _read(source: BinaryIO, force: bool) -> Dataset:
    start = source.tell()
    head = source.read(132)
    source.seek(start)
    if not head:
        raise UnreadableInstance("empty file: no DICOM data")
    if not _looks_like_dicom(head):
        raise UnreadableInstance(
            "not DICOM: no 128-byte preamble and 'DICM' prefix, nor a bare dataset")
    data = source.read()
    try:
        try:
            ds, whole = _parse(data, force)
        except (InvalidDicomError, InflateLimitExceeded):
            raise
        except Exception:  # an early end of file inside a sequence, say: try repairing
            ds, whole = None, False
        if not whole or truncated_at(ds) is not None:
            ds = _repaired(data, ds, force)
        cut = truncated_at(ds)
        if cut is not None:
            raise UnreadableInstance(f"truncated: {tag_label(cut)} is shorter than its "
                                     "length")
        _fix_vrs(ds)
    except InvalidDicomError:
        raise UnreadableInstance(
            "not a DICOM Part 10 file: no 128-byte preamble and 'DICM' prefix") from None
    except InflateLimitExceeded as exc:
        raise InstanceTooLarge(str(exc)) from None
    except UnreadableInstance:
        raise
    except Exception as exc:  # pydicom raises many types; report the kind, not the data
        raise UnreadableInstance(f"{READING} failed{_where(exc)} ({type(exc).__name__})") \
            from None
    tags = ds.keys()
    if not any(int(tag) >> 16 not in (0x0000, 0x0002, 0xFFFC) for tag in tags):
        # nothing but command or meta group elements (zeros read as (0000,0000), say)
        raise UnreadableInstance("no DICOM data elements could be read")
    return ds


def _parse(data: bytes, force: bool) -> tuple[Dataset, bool]:
    """pydicom's reading, and whether it took in the whole top level.

    It did not when it stopped before the end (at a stray item delimiter, or an
    element it could not parse), read nothing, or kept an item or delimiter element
    as if it were an attribute.
    """
    buf = io.BytesIO(data)
    ds = dcmread(buf, force=force)
    meta = getattr(ds, "file_meta", None)
    transfer_syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    stopped = buf.tell() + 8 <= len(data) and transfer_syntax != dataset_bytes.DEFLATED
    return ds, not (stopped or _has_stray(ds) or len(ds) == 0 or _has_unknown_vr(ds))


def _has_unknown_vr(ds: Dataset) -> bool:
    tags = ds.keys()
    for tag in tags:
        raw = ds.get_item(tag)
        if isinstance(raw, RawDataElement) and raw.VR is not None and raw.VR not in _VRS:
            return True
    return False


def drop_stray(ds: Dataset) -> None:
    """Remove item and delimiter elements a writer left among a dataset's elements.

    At the top level :mod:`.dataset_bytes` repairs them before reading; inside a
    sequence's item they come out of pydicom as elements with no VR, which would
    fail wherever they are used, so every step that meets an item drops them.
    """
    tags = ds.keys()
    for tag in [t for t in tags if t >> 16 == 0xFFFE]:
        del ds[tag]


def _has_stray(ds: Dataset) -> bool:
    tags = ds.keys()  # not `in ds`: iterating a Dataset converts every element
    return any(int(tag) >> 16 == 0xFFFE for tag in tags)


def _repaired(data: bytes, ds: Dataset | None, force: bool) -> Dataset:
    """The dataset read again from bytes whose top level :mod:`.dataset_bytes` repaired;
    ``ds`` (pydicom's first reading, None if it failed) when there was nothing to repair."""
    try:
        fixed, repairs = dataset_bytes.repair(data)
    except dataset_bytes.BadElement as exc:
        where = f"{tag_label(exc.tag)} at byte {exc.offset}: {exc.problem}"
        if exc.cut:
            raise UnreadableInstance(f"truncated: {where}") from None
        raise UnreadableInstance(f"{READING} failed at {where}") from None
    if not repairs:
        if ds is None:
            _parse(data, force)  # raises again, and the caller names the failure
        if _has_stray(ds):
            raise UnreadableInstance(f"{READING} failed: an item or delimiter element is "
                                     "at the top level of the dataset")
        return ds
    try:
        ds, whole = _parse(fixed, force)
    except Exception as exc:
        raise UnreadableInstance(f"{READING} failed after repair ({repairs.describe()}): "
                                 f"{type(exc).__name__}") from None
    if not whole:
        raise UnreadableInstance(f"{READING} failed after repair ({repairs.describe()})")
    ds.read_repairs = repairs.describe()  # for the caller's log: tags only, no values
    return ds


def _fix_vrs(ds: Dataset) -> None:
    """Top-level elements whose explicit VR code is no VR get the dictionary's VR (or UN).

    pydicom keeps the code it read ("QQ", "XX"), fails converting the value and would
    write the code back; the element's bytes are its value whatever the code said.
    """
    tags = ds.keys()
    for tag in list(tags):
        raw = ds.get_item(tag)
        if isinstance(raw, RawDataElement) and raw.VR is not None and raw.VR not in _VRS:
            ds[tag] = raw._replace(VR=dataset_bytes.dictionary_vr(int(tag)))


def _vr_hook(raw: RawDataElement, data: dict, **kwargs: object) -> None:
    """pydicom's VR lookup, and the dictionary's VR (or UN) for a code that is no VR.

    Registered for every read in the process, so elements inside sequences (parsed when
    they are first used) get the same treatment as the top level's.
    """
    _default_vr_hook(raw, data, **kwargs)
    if data.get("VR") not in _VRS:
        data["VR"] = dataset_bytes.dictionary_vr(int(raw.tag))


_VRS = frozenset(str(vr) for vr in VR)
hooks.register_callback("raw_element_vr", _vr_hook)


def required_uids(ds: Dataset) -> dict[str, str]:
    """The four UIDs every stored instance needs, or the name of the one that is bad."""
    out = {}
    for keyword in REQUIRED_UIDS:
        try:
            value = ds.get(keyword)
        except Exception:
            value = None
        if not valid_uid(value):
            raise UnreadableInstance(f"missing or invalid {keyword}")
        out[keyword] = str(value)
    return out
