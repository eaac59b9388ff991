"""The header checks of a (source, destination) pair: UIDs, PHI, dates, clinical data.

Each check returns the reasons the destination fails it, naming attributes and rules,
never values, so the reasons can go into the verification table as they are. The PHI
and UID checks search the destination's header bytes as the store holds them, not only
the attributes the check knows about: a value that survived in a private tag or a
sequence is as much a leak as one left in Patient Name.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from datetime import date

from pydicom import dcmwrite
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset

from .values import ds_value, norm, text_values

__all__ = ["CLINICAL_ATTRIBUTES", "IDENTIFYING_ATTRIBUTES", "PIXEL_TAGS", "check_clinical",
           "check_dates", "check_phi", "check_uids", "found", "header_bytes",
           "identifying_values"]

IDENTIFYING_ATTRIBUTES = (
    "PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs", "AccessionNumber",
    "InstitutionName", "InstitutionAddress", "ReferringPhysicianName",
    "PerformingPhysicianName", "OperatorsName", "StationName", "DeviceSerialNumber",
    "PatientAddress", "PatientTelephoneNumbers",
)
"""Attributes whose source values must not survive, as values or anywhere in the header."""

CLINICAL_ATTRIBUTES = (
    "Modality", "BodyPartExamined", "Rows", "Columns", "PixelSpacing", "SliceThickness",
    "WindowCenter", "WindowWidth", "RescaleSlope", "RescaleIntercept",
    "PhotometricInterpretation", "BitsStored",
)
"""Attributes that must be kept: what makes the images clinically useful."""

PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)  # Float, Double Float, Pixel Data
"""The pixel data elements: left out of the header search, and what the OCR reads."""

# Kept by every profile and compared with the source before being left out of the header
# search (see header_bytes).
_VENDOR_ATTRIBUTES = ("Manufacturer", "ManufacturerModelName", "SoftwareVersions")
_UID_ATTRIBUTES = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                   "FrameOfReferenceUID")
# Dates whose distance to the study date a date shift must keep.
_INTERVAL_DATES = ("PatientBirthDate", "SeriesDate", "AcquisitionDate", "ContentDate")
_YBR_TO_RGB = frozenset({"YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420"})
_MIN_HEADER_NEEDLE = 4  # characters of a value searched for in header bytes


def header_bytes(src: Dataset, ds: Dataset) -> bytes:
    """The destination as a Part 10 file without its pixel data, upper-cased.

    Elements pydicom read and did not touch are written back as the bytes that came in,
    so this is what the store holds, apart from the pixels. Vendor attributes that are
    unchanged from the source are left out too: every profile keeps them, and a vendor's
    name often equals a station's or an institution's ("TOSHIBA" in pydicom's MR
    sample), which is not a leak. The elements left out are taken out of ``ds`` for the
    write and put back afterwards.
    """
    removed = [ds[tag] for tag in PIXEL_TAGS if tag in ds]
    for keyword in _VENDOR_ATTRIBUTES:
        value = ds_value(ds, keyword)
        if value and value == ds_value(src, keyword):
            removed.append(ds[keyword])
    for elem in removed:
        del ds[elem.tag]
    try:
        buf = io.BytesIO()
        dcmwrite(buf, ds, enforce_file_format=True)
    finally:
        for elem in removed:
            ds[elem.tag] = elem
    return buf.getvalue().upper()


def _encodings(text: str) -> list[bytes]:
    out = []
    for codec in ("utf-8", "latin-1"):
        try:
            raw = text.upper().encode(codec)
        except UnicodeEncodeError:
            continue
        if raw not in out:
            out.append(raw)
    return out


def _kept(src: Dataset, dest: Dataset, keywords: Iterable[str]) -> list[str]:
    """``keyword:kept`` for each attribute whose value came through unchanged."""
    return [f"{k}:kept" for k in keywords
            if (before := ds_value(src, k)) and ds_value(dest, k) == before]


def check_uids(src: Dataset, dest: Dataset, header: bytes) -> list[str]:
    """``uids_changed``: the UIDs differ and none of the source's is in the header.

    (Consistency of the mapping over the sample is the run's: it needs every pair.)
    """
    reasons = _kept(src, dest, _UID_ATTRIBUTES)
    for keyword in _UID_ATTRIBUTES:
        for value in text_values(src, keyword):
            if any(found(raw, header) for raw in _encodings(value)):
                reasons.append(f"{keyword}:in_header")
                break
    return reasons


def identifying_values(src: Dataset, minimum: int) -> dict[str, list[str]]:
    """The source's identifying values of ``minimum`` characters or more, by keyword."""
    out: dict[str, list[str]] = {}
    for keyword in IDENTIFYING_ATTRIBUTES:
        values = [v for v in text_values(src, keyword) if len(v) >= minimum]
        if values:
            out[keyword] = values
    return out


def check_phi(src: Dataset, dest: Dataset, header: bytes) -> list[str]:
    """``phi_removed``: no identifying attribute kept, no identifying value in the header."""
    reasons = _kept(src, dest, IDENTIFYING_ATTRIBUTES)
    for keyword, values in identifying_values(src, _MIN_HEADER_NEEDLE).items():
        if any(found(raw, header) for value in values for raw in _encodings(value)):
            reasons.append(f"{keyword}:in_header")
    return reasons


def found(needle: bytes, header: bytes) -> bool:
    """Whether ``needle`` occurs in ``header``, not counting digits that merely continue
    a longer number: a short numeric Patient ID ("1234") occurs by chance inside the
    destination's 39-digit ``2.25`` UIDs, which is not a leak; "ID1234" still is."""
    if needle not in header:
        return False
    pattern = re.escape(needle)
    if needle[:1].isdigit():
        pattern = rb"(?<![0-9])" + pattern
    if needle[-1:].isdigit():
        pattern += rb"(?![0-9])"
    return re.search(pattern, header) is not None


def _top_dates(ds: Dataset) -> dict[str, str]:
    """Top-level DA values by keyword (raw elements of implicit VR files carry no VR,
    so the dictionary's is used; an element that does not decode is skipped)."""
    out = {}
    for tag in list(ds.keys()):  # tags, without decoding every element
        raw = ds.get_item(tag)
        vr = getattr(raw, "VR", None)
        if vr is None:
            try:
                vr = dictionary_VR(tag)
            except KeyError:
                continue
        if vr != "DA":
            continue
        keyword = keyword_for_tag(tag)
        try:
            value = norm(ds[tag].value)
        except Exception:
            continue
        if keyword and value:
            out[keyword] = str(value[0])
    return out


def _parse_da(value: str | None) -> date | None:
    if not value:
        return None
    text = str(value).strip()
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except (ValueError, IndexError):
        return None


def check_dates(src: Dataset, dest: Dataset, date_shift: bool) -> list[str]:
    """``dates_ok``: every source date changed, and with a shift the intervals kept."""
    reasons = []
    before, after = _top_dates(src), _top_dates(dest)
    for keyword, value in before.items():
        if after.get(keyword) == value:
            reasons.append(f"{keyword}:kept")
    if date_shift:
        s_study, d_study = _parse_da(before.get("StudyDate")), _parse_da(after.get("StudyDate"))
        if s_study and d_study:
            for keyword in _INTERVAL_DATES:
                s_other, d_other = _parse_da(before.get(keyword)), _parse_da(after.get(keyword))
                if s_other and d_other and (s_study - s_other) != (d_study - d_other):
                    reasons.append(f"StudyDate-{keyword}:interval_changed")
    return reasons


def check_clinical(src: Dataset, dest: Dataset, pixel_redaction: bool) -> list[str]:
    """``clinical_kept``: the clinical attributes the source has are unchanged."""
    reasons = []
    for keyword in CLINICAL_ATTRIBUTES:
        before = ds_value(src, keyword)
        if not before:
            continue
        after = ds_value(dest, keyword)
        if after == before:
            continue
        if (keyword == "PhotometricInterpretation" and pixel_redaction
                and before[0] in _YBR_TO_RGB and after == ("RGB",)):
            continue  # a redacted colour instance is written back as RGB
        reasons.append(f"{keyword}:{'missing' if not after else 'changed'}")
    return reasons
