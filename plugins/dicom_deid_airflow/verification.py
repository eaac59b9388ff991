"""Verification sampling: check a de-identification run on a reproducible random sample.

Why a sample, and why here: the de-identification engine checks itself, but a check that
shares the engine's view of the data (its keyword lists, its traversal, its OCR) misses
exactly what the engine misses. This module looks at the result only from outside, the
way a reviewer on Google Cloud would: through DICOMweb (QIDO-RS and WADO-RS) on the
source and destination stores, with no access to the engine, the server or the
de-identification key.

How pairs are found: the destination has new UIDs (an HMAC of a key the Airflow side does
not know), so a sampled destination instance is matched to its source through attributes
that de-identification keeps: SOP Class, matrix size, frame count, instance / series /
acquisition numbers and slice position. When more than one source instance fits, the
SHA-256 of the pixel data decides (metadata-only de-identification copies it byte for
byte); without an exact match (pixel redaction), the candidate whose decoded pixels
equal the destination's almost everywhere (90 %, 5 points ahead of the next). Candidates
with identical pixels and attributes (twins) cannot be told apart: the destination is
checked against each and fails a check failing against any. A destination instance that
cannot be matched otherwise is a row with status ``unmatched``: counted, and a failure.

What is checked per pair (one boolean column and one reason column each; reasons name
attributes and rules, never values):

* ``uids_changed``: Study, Series, SOP Instance and Frame of Reference UIDs differ from
  the source, no source UID occurs in the destination header, and the mapping is
  consistent over the sample (one source study -> one destination study, and back; the
  same for series);
* ``phi_removed``: each identifying attribute is absent, empty or different in the
  destination, and none of the source's identifying values (4 characters or more)
  occurs anywhere in the destination header bytes (pixel data excluded);
* ``dates_ok``: with date shifting, every date differs and the intervals between the
  study date and the birth, series, acquisition and content dates are kept; without,
  every source date is gone, empty or replaced;
* ``clinical_kept``: modality, body part, geometry, windowing, rescale and pixel
  description equal the source's where the source has them;
* ``pixels_clean`` (only where pixel redaction was requested: every instance, or the
  modalities routed to it; empty elsewhere): frame 0 of the
  destination, rendered to 8-bit grey and read with Tesseract, contains none of the
  source's identifying values (letters and digits only, 5 characters or more, allowing
  one misread per six characters). Whole-frame OCR misses text on noisy backgrounds,
  so a pass here is evidence, not proof; a failure is a certain leak.

Nothing with PHI leaves this module: the CSV holds a SHA-256 prefix of the source SOP
Instance UID (never the UID), destination UIDs, modalities, booleans, counts and
reasons; logs hold counts; exceptions name the step and the HTTP status only.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import logging
import os
import random
import re
import threading
import warnings
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmwrite
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

__all__ = [
    "CHECKS",
    "CLINICAL_ATTRIBUTES",
    "COLUMNS",
    "IDENTIFYING_ATTRIBUTES",
    "VerificationError",
    "VerificationResult",
    "read_verification_table",
    "sample_and_verify",
    "sop_digest",
]

log = logging.getLogger(__name__)

CHECKS = ("uids_changed", "phi_removed", "dates_ok", "clinical_kept", "pixels_clean")
"""The per-pair checks, in column order."""

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

# Kept by every de-identification profile, so they pair a destination instance with its
# source. SOPClassUID and InstanceNumber are PS3.18 instance-level matching keys, so the
# source is searched by them; the rest are compared here.
_MATCH_ATTRIBUTES = (
    "SOPClassUID", "Rows", "Columns", "NumberOfFrames", "InstanceNumber", "SeriesNumber",
    "AcquisitionNumber", "ImagePositionPatient", "SliceLocation",
)
# Kept by every profile and compared with the source before being left out of the header
# search (see _header_bytes).
_VENDOR_ATTRIBUTES = ("Manufacturer", "ManufacturerModelName", "SoftwareVersions")
_UID_ATTRIBUTES = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                   "FrameOfReferenceUID")
# Dates whose distance to the study date a date shift must keep.
_INTERVAL_DATES = ("PatientBirthDate", "SeriesDate", "AcquisitionDate", "ContentDate")
_PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)  # Float, Double Float, Pixel Data
_PIXEL_DATA = 0x7FE00010
_YBR_TO_RGB = frozenset({"YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420"})

_MIN_HEADER_NEEDLE = 4  # characters of a value searched for in header bytes
_MIN_PIXEL_NEEDLE = 5  # letters and digits of a value searched for in OCR text
_MAX_CANDIDATES = 32  # source instances retrieved to break a tie by pixel hash
# Without an exact pixel match (redacted pixels), the candidate with at least this
# fraction of pixels equal to the destination's, and this far ahead of the next one.
_MIN_SAME_PIXELS = 0.9
_MIN_SAME_PIXELS_LEAD = 0.05
_DIGEST_CHARS = 16
_UPSCALE_BELOW = 1024  # frames whose longer side is at most this are read at 2x
_QIDO_PAGE = 1000

COLUMNS = (  # of the verification CSV, in order
    "sample_index", "source_sop_sha256", "dest_sop_uid", "modality", "status", "match",
    *CHECKS, "ocr_words", *(f"{check}_reason" for check in CHECKS),
)

_T = TypeVar("_T")


class VerificationError(RuntimeError):
    """Verification could not run (a store unreachable, an instance unreadable).

    The message names the step and the HTTP status or exception class only: no UIDs
    of the source, no values.
    """


@dataclass(frozen=True)
class VerificationResult:
    """What a verification run found, small enough for XCom and free of PHI.

    ``table_path`` is the CSV (one row per sampled instance). ``passed`` + ``failed`` ==
    ``sampled``; ``failed`` includes ``unmatched``. ``check_failures`` counts the rows
    where each check is False (a row can fail several). ``destination_instances`` is
    the number of instances the sample was drawn from.
    """

    table_path: Path
    sampled: int
    passed: int
    failed: int
    unmatched: int
    destination_instances: int
    check_failures: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for XCom and the run report)."""
        return {
            "table_path": str(self.table_path), "sampled": self.sampled,
            "passed": self.passed, "failed": self.failed, "unmatched": self.unmatched,
            "destination_instances": self.destination_instances,
            "check_failures": dict(self.check_failures),
        }


def sop_digest(uid: str) -> str:
    """The SHA-256 prefix that stands for a source SOP Instance UID in tables and logs."""
    return hashlib.sha256(uid.encode("ascii", "replace")).hexdigest()[:_DIGEST_CHARS]


# --- DICOMweb access, with nothing identifying in logs or exceptions -------------------

@contextmanager
def _quiet_logs() -> Iterator[None]:
    """Raise the level of loggers that quote UIDs and URLs (dicomweb-client logs every
    retrieval with its UIDs at INFO; urllib3 logs URLs at DEBUG; pydicom quotes values
    in warnings), and silence warnings, for the duration of a verification."""
    names = ("dicomweb_client", "urllib3", "pydicom")
    loggers = [logging.getLogger(name) for name in names]
    previous = [lg.level for lg in loggers]
    for lg in loggers:
        if lg.getEffectiveLevel() < logging.WARNING:
            lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, previous, strict=True):
            lg.setLevel(level)


def _call(what: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """Run a DICOMweb call; turn its failure into a VerificationError without its URL.

    requests' and dicomweb-client's messages quote the request URL or the UID, which for
    the source store is identifying; ``from None`` keeps them out of the traceback too.
    """
    try:
        return fn(*args, **kwargs)
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise VerificationError(f"{what} failed: HTTP {status}") from None
    except Exception as exc:  # anything else may quote a URL or a value just the same
        raise VerificationError(f"{what} failed: {type(exc).__name__}") from None


def _value(item: dict, tag: str) -> list:
    return list((item.get(tag) or {}).get("Value") or [])


def _tag(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return f"{tag:08X}"


@dataclass(frozen=True)
class _Ref:
    study: str
    series: str
    sop: str


def _list_instances(client: DICOMwebClient, what: str) -> list[_Ref]:
    """Every instance of a store (UIDs only), sorted so the sample does not depend on
    the order the server returns them in."""
    rows = _call(f"search of {what} instances", client.search_for_instances,
                 limit=_QIDO_PAGE, get_remaining=True)
    refs = {
        _Ref(_value(r, "0020000D")[0], _value(r, "0020000E")[0], _value(r, "00080018")[0])
        for r in rows
        if _value(r, "0020000D") and _value(r, "0020000E") and _value(r, "00080018")
    }
    return sorted(refs, key=lambda r: (r.study, r.series, r.sop))


def _retrieve(client: DICOMwebClient, ref: _Ref, what: str) -> Dataset:
    return _call(f"retrieval of a {what} instance", client.retrieve_instance,
                 ref.study, ref.series, ref.sop)


# --- value normalisation ---------------------------------------------------------------

def _items(value: object) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple, MultiValue)):
        return list(value)
    return [value]


def _norm(value: object) -> tuple:
    """Comparable form of a value from pydicom or from the DICOM JSON model: numbers
    (pydicom's DS/IS are float/int subclasses, JSON has numbers) as rounded floats, text
    stripped, PN from JSON as its alphabetic group, empty as ()."""
    out: list = []
    for item in _items(value):
        if isinstance(item, dict):  # PN in the JSON model
            item = item.get("Alphabetic", "")
        if isinstance(item, bytes):
            item = item.decode("latin-1")
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            out.append(round(float(item), 4))
            continue
        out.append(str(item).strip(" \x00"))
    while out and out[-1] == "":
        out.pop()
    return tuple(out)


def _ds_value(ds: Dataset, keyword: str) -> tuple:
    try:
        elem = ds.data_element(keyword)
    except (KeyError, ValueError):
        return ()
    if elem is None or elem.VR == "SQ":
        return ()
    try:
        return _norm(elem.value)
    except Exception:  # an undecodable value compares as present but unknown
        return ("<undecodable>",)


def _text_values(ds: Dataset, keyword: str) -> list[str]:
    """The values of one attribute as strings, plus the components of person names."""
    try:
        elem = ds.data_element(keyword)
    except (KeyError, ValueError):
        return []
    if elem is None or elem.VR == "SQ":
        return []
    out: list[str] = []
    try:
        values = _items(elem.value)
    except Exception:
        return []
    for value in values:
        text = str(value).strip(" \x00")
        if not text:
            continue
        out.append(text)
        if elem.VR == "PN":
            out.extend(p.strip() for p in re.split(r"[\^=]", text) if p.strip())
    return out


# --- matching ----------------------------------------------------------------------------

def _match_key_of_dataset(ds: Dataset) -> tuple:
    key = []
    for keyword in _MATCH_ATTRIBUTES:
        value = _ds_value(ds, keyword)
        if keyword == "NumberOfFrames" and not value:
            value = (1.0,)
        key.append(value)
    return tuple(key)


def _match_key_of_json(item: dict) -> tuple:
    key = []
    for keyword in _MATCH_ATTRIBUTES:
        value = _norm(_value(item, _tag(keyword)))
        if keyword == "NumberOfFrames" and not value:
            value = (1.0,)
        key.append(value)
    return tuple(key)


def _pixel_sha256(ds: Dataset) -> str | None:
    elem = ds.get_item(_PIXEL_DATA)
    if elem is None or elem.value is None:
        return None
    return hashlib.sha256(bytes(elem.value)).hexdigest()


class _SourceIndex:
    """Source candidates of a destination instance, searched once per (class, number)."""

    def __init__(self, source: DICOMwebClient) -> None:
        self.source = source
        self._cache: dict[tuple, list[dict]] = {}

    def candidates(self, dest: Dataset) -> list[_Ref]:
        sop_class = str(dest.get("SOPClassUID", "") or "")
        number = _ds_value(dest, "InstanceNumber")
        filters: dict[str, object] = {"SOPClassUID": sop_class}
        if number:
            filters["InstanceNumber"] = int(number[0])
        cache_key = tuple(sorted((k, str(v)) for k, v in filters.items()))
        if cache_key not in self._cache:
            fields = [k for k in _MATCH_ATTRIBUTES if k not in ("SOPClassUID",)]
            self._cache[cache_key] = _call(
                "search of source instances", self.source.search_for_instances,
                search_filters=filters, fields=fields, limit=_QIDO_PAGE, get_remaining=True)
        want = _match_key_of_dataset(dest)
        out = []
        for item in self._cache[cache_key]:
            if _match_key_of_json(item) == want:
                study, series, sop = (_value(item, t) for t in ("0020000D", "0020000E",
                                                                "00080018"))
                if study and series and sop:
                    out.append(_Ref(study[0], series[0], sop[0]))
        return sorted(set(out), key=lambda r: (r.study, r.series, r.sop))


def _pixels(ds: Dataset) -> np.ndarray | None:
    """Decoded pixels, or None when there are none or they cannot be decoded."""
    if _PIXEL_DATA not in ds:
        return None
    try:
        return np.asarray(ds.pixel_array)
    except Exception:  # noqa: BLE001  an undecodable candidate is not a match
        return None


def _same_fraction(a: np.ndarray, b: np.ndarray, colour: bool) -> float:
    """The fraction of pixels (all samples of a colour pixel) equal in ``a`` and ``b``."""
    equal = a == b
    if colour:
        equal = equal.all(axis=-1)
    return float(equal.mean()) if equal.size else 0.0


def _match(index: _SourceIndex, dest: Dataset) -> tuple[list[Dataset], str]:
    """The source datasets of a destination instance, and how they were found.

    One dataset, except for twins: several candidates with identical pixels and
    matching attributes (the same image stored for two patients) cannot be told apart,
    so all are returned and the destination is checked against each. When no candidate
    has the destination's exact pixel data (burned-in text painted over), the candidate
    whose decoded pixels are equal to the destination's almost everywhere is chosen, if
    it is clearly ahead of the next.
    """
    candidates = index.candidates(dest)
    if not candidates:
        return [], "no_candidate"
    if len(candidates) == 1:
        return [_retrieve(index.source, candidates[0], "source")], "metadata"
    if len(candidates) > _MAX_CANDIDATES:
        return [], f"ambiguous:{len(candidates)}_candidates"
    want = _pixel_sha256(dest)
    hits: list[Dataset] = []
    dest_pixels: np.ndarray | None = None
    decoded = False
    colour = int(dest.get("SamplesPerPixel", 1) or 1) > 1
    # source pixel hash -> fraction of pixels equal to the destination's, and the
    # candidates with those pixels (kept only while they could still be chosen)
    groups: dict[str | None, tuple[float, list[Dataset]]] = {}
    alike: list[Dataset] = []  # the candidates, while all have the same pixel data
    digests: set[str | None] = set()
    for ref in candidates:
        ds = _retrieve(index.source, ref, "source")
        digest = _pixel_sha256(ds)
        digests.add(digest)
        alike = alike + [ds] if len(digests) == 1 and digest is not None else []
        if want is not None and digest == want:
            hits.append(ds)
        if hits:
            continue  # an exact match makes the decoded comparison moot
        if digest in groups:
            fraction, members = groups[digest]
            if fraction >= _MIN_SAME_PIXELS:
                members.append(ds)
            continue
        if not decoded:
            dest_pixels, decoded = _pixels(dest), True
        if dest_pixels is None:
            continue
        pixels = _pixels(ds)
        if pixels is None or pixels.shape != dest_pixels.shape:
            continue
        fraction = _same_fraction(pixels, dest_pixels, colour)
        groups[digest] = (fraction, [ds] if fraction >= _MIN_SAME_PIXELS else [])
    if len(hits) == 1:
        return hits, "pixel_sha256"
    if len(hits) > 1:  # same pixels, same attributes: twins
        return hits, f"twins:{len(hits)}"
    if len(alike) == len(candidates):
        # Same pixels, same attributes, the destination's pixels redacted beyond
        # recognition (a redaction can re-render a whole frame): still twins.
        return alike, f"twins:{len(alike)}"
    ranked = sorted(groups.values(), key=lambda g: g[0], reverse=True)
    if ranked and ranked[0][0] >= _MIN_SAME_PIXELS and (
            len(ranked) == 1 or ranked[1][0] < ranked[0][0] - _MIN_SAME_PIXELS_LEAD):
        members = ranked[0][1]
        if len(members) > 1:
            return members, f"twins:{len(members)}"
        return members, "pixels_outside_redaction"
    return [], f"ambiguous:{len(candidates)}_candidates_0_pixel_matches"


# --- checks ----------------------------------------------------------------------------

def _header_bytes(src: Dataset, ds: Dataset) -> bytes:
    """The destination as a Part 10 file without its pixel data, upper-cased.

    Elements pydicom read and did not touch are written back as the bytes that came in,
    so this is what the store holds, apart from the pixels. Vendor attributes that are
    unchanged from the source are left out too: every profile keeps them, and a vendor's
    name often equals a station's or an institution's ("TOSHIBA" in pydicom's MR
    sample), which is not a leak. The elements left out are taken out of ``ds`` for the
    write and put back afterwards.
    """
    removed = [ds[tag] for tag in _PIXEL_TAGS if tag in ds]
    for keyword in _VENDOR_ATTRIBUTES:
        value = _ds_value(ds, keyword)
        if value and value == _ds_value(src, keyword):
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
            if (before := _ds_value(src, k)) and _ds_value(dest, k) == before]


def _check_uids(src: Dataset, dest: Dataset, header: bytes) -> list[str]:
    reasons = _kept(src, dest, _UID_ATTRIBUTES)
    for keyword in _UID_ATTRIBUTES:
        for value in _text_values(src, keyword):
            if any(_found(raw, header) for raw in _encodings(value)):
                reasons.append(f"{keyword}:in_header")
                break
    return reasons


def _identifying_values(src: Dataset, minimum: int) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for keyword in IDENTIFYING_ATTRIBUTES:
        values = [v for v in _text_values(src, keyword) if len(v) >= minimum]
        if values:
            out[keyword] = values
    return out


def _check_phi(src: Dataset, dest: Dataset, header: bytes) -> list[str]:
    reasons = _kept(src, dest, IDENTIFYING_ATTRIBUTES)
    for keyword, values in _identifying_values(src, _MIN_HEADER_NEEDLE).items():
        if any(_found(raw, header) for value in values for raw in _encodings(value)):
            reasons.append(f"{keyword}:in_header")
    return reasons


def _found(needle: bytes, header: bytes) -> bool:
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
            value = _norm(ds[tag].value)
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


def _check_dates(src: Dataset, dest: Dataset, date_shift: bool) -> list[str]:
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


def _check_clinical(src: Dataset, dest: Dataset, pixel_redaction: bool) -> list[str]:
    reasons = []
    for keyword in CLINICAL_ATTRIBUTES:
        before = _ds_value(src, keyword)
        if not before:
            continue
        after = _ds_value(dest, keyword)
        if after == before:
            continue
        if (keyword == "PhotometricInterpretation" and pixel_redaction
                and before[0] in _YBR_TO_RGB and after == ("RGB",)):
            continue  # a redacted colour instance is written back as RGB
        reasons.append(f"{keyword}:{'missing' if not after else 'changed'}")
    return reasons


# --- burned-in text ----------------------------------------------------------------------

_ocr_lock = threading.Lock()
_ocr_api: Any = None


def _tessdata() -> str:
    """Tesseract's model directory: TESSDATA_PREFIX, else Debian's newest."""
    env = os.environ.get("TESSDATA_PREFIX")
    if env and Path(env, "eng.traineddata").exists():
        return env
    found = sorted(glob.glob("/usr/share/tesseract-ocr/*/tessdata"))
    found = [d for d in found if Path(d, "eng.traineddata").exists()]
    if not found:
        raise VerificationError(
            "Tesseract English model not found (install tesseract-ocr-eng or set "
            "TESSDATA_PREFIX)")
    return found[-1]


def _ocr(image: Any) -> str:
    """Text Tesseract reads in a PIL image; one engine per process (loading the model
    costs far more than reading a frame), used under a lock (it is not thread-safe)."""
    global _ocr_api
    import tesserocr

    with _ocr_lock:
        if _ocr_api is None:
            _ocr_api = tesserocr.PyTessBaseAPI(path=_tessdata(), lang="eng",
                                               psm=tesserocr.PSM.AUTO)
        _ocr_api.SetImage(image)
        return _ocr_api.GetUTF8Text() or ""


def _render_grey(ds: Dataset) -> np.ndarray:
    """Frame 0 as 8-bit grey, the way a viewer would show it (bright = white).

    Colour (RGB, and YBR converted to RGB by pydicom) and palette images go through
    luminance; more than 8 bits are stretched between the 0.5th and 99.5th percentiles
    (a viewer's auto window, robust to a few hot pixels); MONOCHROME1 is inverted.
    """
    from pydicom.pixels import apply_color_lut

    frames = int(_ds_value(ds, "NumberOfFrames")[0]) if _ds_value(ds, "NumberOfFrames") else 1
    ds.pixel_array_options(index=0 if frames > 1 else None)
    arr = ds.pixel_array
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    wide = arr.dtype.itemsize > 1
    if arr.ndim == 3:
        arr = arr[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    arr = arr.astype(np.float64)
    grey = _stretch(arr) if wide else np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    if photometric == "MONOCHROME1":
        grey = 255 - grey
    return grey


def _stretch(arr: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(arr, (0.5, 99.5))
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    return np.clip(np.rint((arr - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)


def _read_frame(grey: np.ndarray) -> str:
    """OCR text of a frame: as rendered, and after a 3x3 median filter (which removes
    the speckle that hides text from Tesseract on ultrasound-like backgrounds).
    Frames up to 1024 px are read at twice their size: Tesseract wants glyphs about
    20 px high, and annotations are often 8-12 px."""
    from PIL import Image, ImageFilter

    image = Image.fromarray(grey, mode="L")
    texts = []
    for variant in (image, image.filter(ImageFilter.MedianFilter(3))):
        if max(variant.size) <= _UPSCALE_BELOW:
            variant = variant.resize((variant.width * 2, variant.height * 2),
                                     Image.Resampling.LANCZOS)
        texts.append(_ocr(variant))
    return "\n".join(texts)


def _alnum(text: str) -> str:
    return re.sub(r"[^0-9A-Z]", "", text.upper())


def _fuzzy_in(needle: str, haystack: str, max_edits: int) -> bool:
    """Whether ``needle`` occurs in ``haystack`` with at most ``max_edits`` edits
    (Sellers' approximate substring match: OCR misreads a character now and then)."""
    if needle in haystack:
        return True
    if max_edits == 0:
        return False
    m = len(needle)
    previous = list(range(m + 1))
    for ch in haystack:
        current = [0]
        for j in range(1, m + 1):
            cost = 0 if needle[j - 1] == ch else 1
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost))
        if current[m] <= max_edits:
            return True
        previous = current
    return False


def _read_dest(dest: Dataset) -> str | list[str]:
    """The text read in the rendered destination frame, or the reasons it could not be
    read (undecodable pixels: a failure of the check, not of the run). An instance
    without pixel data (a structured report, an RT plan) reads as no text."""
    if not any(tag in dest for tag in _PIXEL_TAGS):
        return ""
    try:
        return _read_frame(_render_grey(dest))
    except VerificationError:
        raise
    except Exception as exc:
        return [f"render_failed:{type(exc).__name__}"]


def _check_pixels(src: Dataset, dest: Dataset | str | list[str]) -> tuple[list[str], int]:
    """Reasons the destination frame fails, and the number of words read; ``dest`` is the
    destination or what _read_dest made of it (read once, checked against each twin)."""
    text = _read_dest(dest) if isinstance(dest, Dataset) else dest
    if isinstance(text, list):
        return text, 0
    words = {w for w in text.split() if any(c.isalnum() for c in w)}
    flat = _alnum(text)
    reasons = []
    for keyword, values in _identifying_values(src, 0).items():
        needles = {_alnum(v) for v in values}
        if keyword == "PatientBirthDate":  # printed US- or European-style too
            dates = [d for d in needles if len(d) == 8 and d.isdigit()]
            needles |= {d[4:6] + d[6:8] + d[:4] for d in dates}
            needles |= {d[6:8] + d[4:6] + d[:4] for d in dates}
        if any(len(n) >= _MIN_PIXEL_NEEDLE and _fuzzy_in(n, flat, len(n) // 6)
               for n in needles):
            reasons.append(f"{keyword}:in_pixels")
    return reasons, len(words)


# --- the run ---------------------------------------------------------------------------

def _row(index: int, dest_ref: _Ref, modality: str) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(sample_index=index, dest_sop_uid=dest_ref.sop, modality=modality)
    for check in CHECKS:
        row[f"{check}_reason"] = ""
    return row


def _set_check(row: dict[str, Any], check: str, reasons: list[str]) -> None:
    row[check] = not reasons
    row[f"{check}_reason"] = ";".join(reasons)


def _consistency(rows: list[dict[str, Any]], pairs: list[tuple[str, str, str, str]]) -> None:
    """Fail ``uids_changed`` on rows whose source study/series maps to more than one
    destination study/series in the sample, or shares one with another source."""
    for level, (s_at, d_at) in (("study", (0, 1)), ("series", (2, 3))):
        forward: dict[str, set[str]] = defaultdict(set)
        backward: dict[str, set[str]] = defaultdict(set)
        for pair in pairs:
            if pair[0]:
                forward[pair[s_at]].add(pair[d_at])
                backward[pair[d_at]].add(pair[s_at])
        for row, pair in zip(rows, pairs, strict=True):
            if not pair[0]:
                continue
            extra = []
            if len(forward[pair[s_at]]) > 1:
                extra.append(f"{level}_mapping_inconsistent")
            if len(backward[pair[d_at]]) > 1:
                extra.append(f"{level}_mapping_collision")
            if extra:
                reasons = [r for r in row["uids_changed_reason"].split(";") if r] + extra
                _set_check(row, "uids_changed", reasons)


def _redacted(pixel_redaction: bool | Collection[str], modality: str) -> bool:
    if isinstance(pixel_redaction, bool):
        return pixel_redaction
    return modality in {str(m).upper() for m in pixel_redaction}


def sample_and_verify(source: DICOMwebClient, destination: DICOMwebClient, *, size: int,
                      seed: str, pixel_redaction: bool | Collection[str], date_shift: bool,
                      out_dir: Path) -> VerificationResult:
    """Verify a reproducible random sample of a de-identification run; write the table.

    ``size`` destination instances (all of them if there are fewer) are drawn with
    ``random.Random(seed)`` (pass the run id: a rerun of the same run checks the same
    instances), each is matched to its source instance and checked (see the module
    docstring). ``pixel_redaction`` says whether burned-in text was to be removed and so
    turns on the OCR check: True for every instance, or the modalities that were routed
    to pixel redaction (e.g. ``{"US", "SC", "OT"}``; other modalities get an empty
    ``pixels_clean``, i.e. not evaluated). ``date_shift`` says whether dates were to be
    shifted rather than removed. The table is written to ``out_dir / "verification.csv"``.

    Raises VerificationError (no PHI in its message) when a store cannot be searched or
    an instance cannot be retrieved; a check that cannot be evaluated on one instance
    (undecodable pixels) fails that row instead.
    """
    if size < 1:
        raise ValueError("size must be at least 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table_path = out_dir / "verification.csv"

    with _quiet_logs():
        refs = _list_instances(destination, "destination")
        rng = random.Random(seed)
        picked = rng.sample(range(len(refs)), min(size, len(refs)))
        index = _SourceIndex(source)
        rows: list[dict[str, Any]] = []
        pairs: list[tuple[str, str, str, str]] = []
        for n, i in enumerate(picked):
            ref = refs[i]
            dest = _retrieve(destination, ref, "destination")
            row = _row(n, ref, str(dest.get("Modality", "") or ""))
            sources, how = _match(index, dest)
            row["match"] = how
            if not sources:
                row["status"] = "unmatched"
                rows.append(row)
                pairs.append(("", "", "", ""))
                continue
            src = sources[0]  # twins: the first one for the UID bookkeeping
            row["source_sop_sha256"] = sop_digest(str(src.get("SOPInstanceUID", "")))
            if len(sources) == 1:
                pairs.append((str(src.get("StudyInstanceUID", "")), ref.study,
                              str(src.get("SeriesInstanceUID", "")), ref.series))
            else:  # which twin's study this is is unknown: left out of the mapping check
                pairs.append(("", "", "", ""))
            redacted = _redacted(pixel_redaction, row["modality"])
            try:
                # Twins cannot be told apart: a check passes only if it passes against
                # every one of them.
                found: dict[str, list[str]] = defaultdict(list)
                if redacted:
                    text = _read_dest(dest)
                    for one in sources:
                        reasons, row["ocr_words"] = _check_pixels(one, text)
                        found["pixels_clean"] += reasons
                for one in sources:
                    header = _header_bytes(one, dest)
                    found["uids_changed"] += _check_uids(one, dest, header)
                    found["phi_removed"] += _check_phi(one, dest, header)
                    found["dates_ok"] += _check_dates(one, dest, date_shift)
                    found["clinical_kept"] += _check_clinical(one, dest, redacted)
                for check in CHECKS:
                    if check != "pixels_clean" or redacted:
                        _set_check(row, check, list(dict.fromkeys(found[check])))
            except VerificationError:
                raise
            except Exception as exc:  # pydicom's messages can quote the value at fault
                raise VerificationError(
                    f"checks of sample {n} failed: {type(exc).__name__}") from None
            rows.append(row)
        _consistency(rows, pairs)

    for row in rows:
        if row["status"] is None:
            ok = all(row[check] is not False for check in CHECKS)
            row["status"] = "ok" if ok else "failed"
    _write_csv(table_path, rows)

    failures = {check: sum(1 for r in rows if r[check] is False) for check in CHECKS}
    unmatched = sum(1 for r in rows if r["status"] == "unmatched")
    passed = sum(1 for r in rows if r["status"] == "ok")
    result = VerificationResult(
        table_path=table_path, sampled=len(rows), passed=passed, failed=len(rows) - passed,
        unmatched=unmatched, destination_instances=len(refs), check_failures=failures)
    log.info("verification: %d of %d destination instances sampled, %d passed, %d failed "
             "(%d unmatched); failures per check: %s", result.sampled,
             result.destination_instances, result.passed, result.failed, unmatched,
             failures)
    return result


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    def cell(value: object) -> object:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return value

    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: cell(row.get(k)) for k in COLUMNS})
    tmp.replace(path)


def read_verification_table(path: Path) -> pd.DataFrame:
    """The verification CSV as a DataFrame with its real types: checks as nullable
    booleans (empty = not evaluated), counts as nullable integers, text as strings, so
    a quality gate sees ``True``/``False``/missing rather than strings."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for check in CHECKS:
        frame[check] = frame[check].map({"true": True, "false": False, "": pd.NA}).astype(
            "boolean")
    for column in ("sample_index", "ocr_words"):
        frame[column] = pd.to_numeric(frame[column].replace("", pd.NA)).astype("Int64")
    return frame
