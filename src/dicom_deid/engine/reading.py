"""Reading an instance defensively: every way a file can be unusable has a reason.

pydicom is lenient by design: it reads truncated files without complaint (values
come back short) and files without a preamble or meta with ``force``. Both the
server and the engine need to refuse the first and accept the second, with a
reason that names the problem and never quotes a value from the file.
"""

from __future__ import annotations

import re
from typing import BinaryIO

from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

UNDEFINED = 0xFFFFFFFF
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


class UnreadableInstance(ValueError):
    """An input that cannot be processed; the message is safe to log and report."""


def valid_uid(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64 and bool(_UID.fullmatch(value))


def _is_sequence(elem: RawDataElement) -> bool:
    if elem.VR is not None:
        return elem.VR == "SQ"
    try:
        return dictionary_VR(elem.tag) == "SQ"
    except KeyError:
        return False


def complete(ds: Dataset) -> bool:
    """True if no value is cut short, at any depth.

    pydicom reads a truncated file without complaint, returning short values; its
    raw elements keep the declared length, which is compared here. Undefined-length
    sequences (which pydicom parses while reading) are checked item by item; nothing
    else is decoded, which keeps this cheap.
    """
    for elem in ds.elements():
        if not isinstance(elem, RawDataElement):
            if elem.VR == "SQ" and not all(complete(item) for item in elem.value):
                return False
            continue
        if elem.length != UNDEFINED and elem.value is not None and len(elem.value) < elem.length:
            return False
        # A defined-length sequence whose value is whole cannot have lost bytes inside
        # (a file is cut at its end); its items are parsed when they are de-identified.
    return True


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
    try:
        ds = dcmread(source, force=force)
        if not complete(ds):
            raise UnreadableInstance("truncated: a value is shorter than its length")
    except InvalidDicomError:
        raise UnreadableInstance(
            "not a DICOM Part 10 file: no 128-byte preamble and 'DICM' prefix") from None
    except UnreadableInstance:
        raise
    except Exception as exc:  # pydicom raises many types; report the kind, not the data
        raise UnreadableInstance(f"unreadable DICOM data ({type(exc).__name__})") from None
    if len(ds) == 0:
        raise UnreadableInstance("no DICOM data elements could be read")
    return ds


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
