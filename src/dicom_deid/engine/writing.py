"""Writing a de-identified dataset, copying untouched elements' bytes as they were read.

Most of an instance survives de-identification unchanged (pixel data, geometry,
acquisition parameters, whole functional-group sequences), and pydicom's writer spends
most of its time re-encoding those one by one. Here an element still in its raw form
and in the output's encoding is written as header + original bytes, at every depth;
sequences are written with undefined lengths (so nothing needs measuring first);
only changed or re-encoded elements go through pydicom's element writer. Deflated
and big-endian outputs go through pydicom entirely.
"""

from __future__ import annotations

from typing import BinaryIO

from pydicom import dcmwrite
from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian

from .element_bytes import ITEM, ITEM_END, SEQUENCE_END, UNDEFINED, header
from .failures import WRITING, ElementFailure

PIXEL_DATA = 0x7FE00010
SPECIFIC_CHARACTER_SET = 0x00080005


def _raw_bytes(raw: RawDataElement, implicit: bool) -> bytes | None:
    """Header and value of ``raw`` as it can be copied, or None if it must be encoded."""
    if not raw.is_little_endian or raw.is_implicit_VR != implicit or (
            not implicit and not raw.VR):
        return None
    value = raw.value or b""
    if raw.length == UNDEFINED:  # encapsulated pixel data, an undefined-length UN
        # Only pixel data, sequences and a UN holding one may have an undefined length
        # (PS3.5 7.1.1); other elements some writers give one are written defined.
        if raw.tag != PIXEL_DATA and (raw.VR not in ("SQ", "UN") or implicit):
            return None
        head = header(raw.tag, str(raw.VR or "OB"), UNDEFINED, implicit)
        return head + value + SEQUENCE_END if head else None
    head = header(raw.tag, str(raw.VR or ""), len(value), implicit)
    return head + value if head else None


def _write_dataset(fp: DicomFileLike, ds: Dataset, implicit: bool, compressed: bool,
                   parent: str | list[str] = default_encoding) -> None:
    # the dataset's own Specific Character Set, else the one it inherits (PS3.5 7.5.1)
    encodings = (convert_encodings(ds.SpecificCharacterSet) if SPECIFIC_CHARACTER_SET in ds
                 else parent)
    for tag in sorted(ds.keys()):
        if tag >> 16 == 0xFFFE:  # an item or delimiter among elements: never an element
            continue
        try:
            _write_element(fp, ds, tag, implicit, compressed, encodings)
        except ElementFailure as exc:
            raise exc.inside(int(tag)) from None
        except Exception as exc:  # which element, and the kind of failure; no value
            raise ElementFailure(WRITING, int(tag), exc) from None


def _write_element(fp: DicomFileLike, ds: Dataset, tag: int, implicit: bool,
                   compressed: bool, encodings: str | list[str]) -> None:
    item = ds.get_item(tag)
    if isinstance(item, RawDataElement):
        copied = _raw_bytes(item, implicit)
        if copied is not None:
            fp.write(copied)
            return
        item = ds[tag]
    if item.VR == "SQ":
        _write_sequence(fp, item, implicit, compressed, encodings)
        return
    if tag == PIXEL_DATA:
        item.is_undefined_length = compressed
    elif item.is_undefined_length and item.VR != "UN":
        item.is_undefined_length = False
    write_data_element(fp, item, encodings)


def _write_sequence(fp: DicomFileLike, elem: DataElement, implicit: bool,
                    compressed: bool, encodings: str | list[str]) -> None:
    fp.write(header(int(elem.tag), "SQ", UNDEFINED, implicit))
    for item in elem.value or ():
        fp.write(ITEM)
        _write_dataset(fp, item, implicit, compressed, encodings)
        fp.write(ITEM_END)
    fp.write(SEQUENCE_END)


def file_meta(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str
              ) -> FileMetaDataset:
    """The Part 10 meta this project writes for an instance (its implementation named)."""
    from .. import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def write(ds: Dataset, out: BinaryIO) -> None:
    """Write ``ds`` (with its file meta) as a Part 10 file to ``out``."""
    ts = ds.file_meta.TransferSyntaxUID
    if ts == DeflatedExplicitVRLittleEndian or not ts.is_little_endian:
        dcmwrite(out, ds, enforce_file_format=True, little_endian=ts.is_little_endian,
                 implicit_vr=ts.is_implicit_VR)
        return
    fp = DicomFileLike(out)
    fp.is_implicit_VR, fp.is_little_endian = ts.is_implicit_VR, True
    fp.write(ds.preamble or b"\0" * 128)
    fp.write(b"DICM")
    write_file_meta_info(fp, ds.file_meta, enforce_standard=True)
    _write_dataset(fp, ds, ts.is_implicit_VR, ts.is_compressed)
