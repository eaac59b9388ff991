"""Matching: pair a sampled destination instance with its source instance.

The destination has new UIDs (an HMAC of a key the Airflow side does not know), so the
pair is found through attributes every de-identification profile keeps, and, when more
than one source instance fits, through the pixel data: its SHA-256 when it was copied
byte for byte, else the fraction of decoded pixels equal outside the redacted boxes.
"""

from __future__ import annotations

import hashlib

import numpy as np
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset

from dicom_deid_airflow.qido import search_pages

from .dicomweb import Ref, call, json_tag, json_value, retrieve
from .values import ds_value, norm

__all__ = ["SourceIndex", "match"]

# Kept by every de-identification profile, so they pair a destination instance with its
# source. SOPClassUID and InstanceNumber are PS3.18 instance-level matching keys, so the
# source is searched by them; the rest are compared here.
_MATCH_ATTRIBUTES = (
    "SOPClassUID", "Rows", "Columns", "NumberOfFrames", "InstanceNumber", "SeriesNumber",
    "AcquisitionNumber", "ImagePositionPatient", "SliceLocation",
)
# Acquisition and display parameters that no confidentiality profile removes (none is
# in PS3.15's table) and that differ between acquisitions with the same geometry: the
# same protocol run on many patients, or a daily phantom scan, gives series whose slices
# agree on every attribute above. They only narrow a tie (a candidate whose value is
# missing from the search result is kept), so a server that does not return one, or a
# profile that changes one, leaves matching as it was.
_NARROWING = (
    "KVP", "XRayTubeCurrent", "ExposureTime", "Exposure", "CTDIvol", "TableHeight",
    "DataCollectionDiameter", "ReconstructionDiameter", "ImageOrientationPatient",
    "SliceThickness", "SpacingBetweenSlices", "PixelSpacing", "WindowCenter",
    "WindowWidth", "RescaleIntercept", "RescaleSlope", "EchoTime", "RepetitionTime",
    "InversionTime", "FlipAngle", "TriggerTime",
)
_PIXEL_DATA = 0x7FE00010
_MAX_CANDIDATES = 32  # source instances retrieved to break a tie by pixel hash
# Without an exact pixel match (redacted pixels), the candidate with at least this
# fraction of pixels equal to the destination's, and this far ahead of the next one.
_MIN_SAME_PIXELS = 0.9
_MIN_SAME_PIXELS_LEAD = 0.05


def _match_key_of_dataset(ds: Dataset) -> tuple:
    key = []
    for keyword in _MATCH_ATTRIBUTES:
        value = ds_value(ds, keyword)
        if keyword == "NumberOfFrames" and not value:
            value = (1.0,)
        key.append(value)
    return tuple(key)


def _match_key_of_json(item: dict) -> tuple:
    key = []
    for keyword in _MATCH_ATTRIBUTES:
        value = norm(json_value(item, json_tag(keyword)))
        if keyword == "NumberOfFrames" and not value:
            value = (1.0,)
        key.append(value)
    return tuple(key)


def _narrow(items: list[dict], dest: Dataset) -> list[dict]:
    """The tied candidates whose acquisition parameters do not contradict the
    destination's; all of them if none is left (the pixels then decide, as before)."""
    kept = items
    for keyword in _NARROWING:
        want = ds_value(dest, keyword)
        if not want or len(kept) == 1:
            continue
        tag = json_tag(keyword)
        kept = [item for item in kept
                if not (have := norm(json_value(item, tag))) or have == want]
    return kept or items


def _pixel_sha256(ds: Dataset) -> str | None:
    elem = ds.get_item(_PIXEL_DATA)
    if elem is None or elem.value is None:
        return None
    return hashlib.sha256(bytes(elem.value)).hexdigest()


class SourceIndex:
    """Source candidates of a destination instance, searched once per (class, number).

    The search asks for the indexed matching attributes only; the acquisition
    parameters that narrow a tie are asked for in a second search, made only when a tie
    occurs (a server may read every file of the result to answer it)."""

    def __init__(self, source: DICOMwebClient) -> None:
        self.source = source
        self._cache: dict[tuple, list[dict]] = {}
        self._detailed: dict[tuple, dict[str, dict]] = {}

    def _search(self, filters: dict, fields: list[str]) -> list[dict]:
        def search(**kwargs: object) -> list[dict]:
            return call("search of source instances", self.source.search_for_instances,
                        **kwargs)

        return [row for page in search_pages(search, search_filters=filters, fields=fields)
                for row in page]

    def _details(self, key: tuple, filters: dict) -> dict[str, dict]:
        """The narrowing parameters of the candidates under ``key``, by SOP UID."""
        if key not in self._detailed:
            rows = self._search(filters, [k for k in _MATCH_ATTRIBUTES + _NARROWING
                                          if k != "SOPClassUID"])
            self._detailed[key] = {sop: r for r in rows if (sop := _sop(r))}
        return self._detailed[key]

    def candidates(self, dest: Dataset) -> list[Ref]:
        """The source instances whose matching attributes equal the destination's."""
        sop_class = str(dest.get("SOPClassUID", "") or "")
        number = ds_value(dest, "InstanceNumber")
        filters: dict[str, object] = {"SOPClassUID": sop_class}
        if number:
            filters["InstanceNumber"] = int(number[0])
        cache_key = tuple(sorted((k, str(v)) for k, v in filters.items()))
        if cache_key not in self._cache:
            self._cache[cache_key] = self._search(
                filters, [k for k in _MATCH_ATTRIBUTES if k != "SOPClassUID"])
        want = _match_key_of_dataset(dest)
        tied = [item for item in self._cache[cache_key] if _match_key_of_json(item) == want]
        if len(tied) > 1:
            details = self._details(cache_key, filters)
            tied = _narrow([details.get(_sop(item), item) for item in tied], dest)
        out = []
        for item in tied:
            study, series, sop = (json_value(item, t) for t in ("0020000D", "0020000E",
                                                                "00080018"))
            if study and series and sop:
                out.append(Ref(study[0], series[0], sop[0]))
        return sorted(set(out), key=lambda r: (r.study, r.series, r.sop))


def _sop(item: dict) -> str | None:
    value = json_value(item, "00080018")
    return value[0] if value else None


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


def match(index: SourceIndex, dest: Dataset) -> tuple[list[Dataset], str]:
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
        return [retrieve(index.source, candidates[0], "source")], "metadata"
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
        ds = retrieve(index.source, ref, "source")
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
