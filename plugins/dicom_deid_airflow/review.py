"""The before/after review of sampled pairs: what a person looks at to trust a run.

Why this exists: the run report used to show the destination frame as the server
renders it (no windowing, so CT came out nearly white) with red outlines guessed from
the destination alone (solid dark rectangles), which outlined dark anatomy and missed
paint on dark backgrounds. Here the painted areas are *measured*: the pixels where the
destination frame differs from its own source frame, so an outline is exactly where
the de-identification changed pixels and nowhere else.

For each verification-table row (see :mod:`.verification.run`):

1. the destination instance is found by its SOP Instance UID (QIDO-RS) and retrieved
   (WADO-RS);
2. its source instance is found without the table ever holding the source UID: the
   source candidates that match the destination's kept attributes are searched the
   way the verifier pairs them (:class:`.verification.matching.SourceIndex`: SOP
   Class and Instance Number, a bounded search), and the one whose UID digest equals
   the row's ``source_sop_sha256`` is taken; only if none does (the source store
   changed since verification) is the whole source store listed, once per call;
3. frame 0 of both is decoded; the painted mask is where they differ; the outlines are
   the bounding boxes of the mask's connected components, merged where they overlap;
4. the destination frame is rendered to 8-bit the way a viewer shows it (modality LUT,
   the instance's own first VOI window or VOI LUT, else the 0.5-99.5 percentile range;
   MONOCHROME1 inverted; colour kept), scaled to at most :data:`THUMB` px on the long
   side, with the outlines drawn in red just outside the painted pixels.

Why frame 0 rather than the middle frame: the redaction paints the same boxes on every
frame, and frame 0 is the frame the verifier's OCR check (``pixels_clean``) read, so
the picture shows what was checked.

Source frames carry PHI (burned-in names): one is rendered only when ``show_source``
is true, which a deployment turns on with the Airflow Variable
:data:`SHOW_SOURCE_VARIABLE` (off by default; see :func:`show_source_enabled`). When it
is off nothing derived from source pixel values leaves :func:`review_pairs` except the
painted boxes and the painted fraction. Logs hold counts only; a pair that fails gets a
``note`` naming the step and the exception class, never a value or a UID.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from dicomweb_client.api import DICOMwebClient
from PIL import Image, ImageDraw
from pydicom.dataset import Dataset

from .verification.dicomweb import Ref, call, json_value, list_instances, quiet_logs, retrieve
from .verification.errors import VerificationError
from .verification.matching import SourceIndex
from .verification.run import CHECKS, sop_digest

__all__ = [
    "SHOW_SOURCE_VARIABLE",
    "THUMB",
    "Box",
    "ReviewPair",
    "painted_boxes",
    "parse_show_source",
    "render_frame",
    "review_pairs",
    "outline_rect",
    "show_source_enabled",
    "thumb_size",
]

log = logging.getLogger(__name__)

THUMB = 256
"""The long side of a review image, at most (smaller frames are not enlarged)."""

SHOW_SOURCE_VARIABLE = "dicom_deid_review_show_source"
"""The Airflow Variable that turns on source frames in the review (PHI): off unless it
is ``true`` (JSON) / ``1`` / ``yes`` / ``on``."""

Box = tuple[int, int, int, int]
"""(left, top, right, bottom) in frame pixels, right and bottom exclusive: the same
convention as the redactor's boxes and the corpus' ``TextRegion.box``."""

RED = (255, 0, 0)
_CAPTION_FIELD = 40  # characters of a header value shown in a caption, at most
_PERCENTILES = (0.5, 99.5)  # the grey range shown when an instance has no VOI
_WIDE = 0.5  # a painted fraction above this is called out in the note
_MARKS = {True: "\u2713", False: "\u2717", None: "\u2013"}  # check, cross, en dash


@dataclass(frozen=True)
class ReviewPair:
    """One sampled pair as the review shows it.

    ``modality``, ``series_description`` and ``instance_number`` are the destination's
    (de-identified) values, capped at 40 characters; the page escapes them.
    ``checks`` holds the row's evaluated checks by name (a check the run did not
    evaluate, e.g. ``pixels_clean`` without pixel redaction, is absent). ``boxes`` are
    the painted areas in destination frame pixels; ``painted_fraction`` is the share of
    the frame's pixels that differ from the source, or None when the two frames could not
    be compared (then there are no boxes and ``note`` says why). ``dest_uri`` and
    ``source_uri`` are ``data:image/png;base64,...`` URIs or None; ``source_uri`` is
    None unless the source was asked for. ``note`` is empty when everything worked.
    """

    sample_index: int | None
    status: str
    modality: str
    series_description: str
    instance_number: str
    checks: dict[str, bool] = field(default_factory=dict)
    painted_fraction: float | None = None
    boxes: tuple[Box, ...] = ()
    dest_uri: str | None = None
    source_uri: str | None = None
    note: str = ""

    @property
    def caption(self) -> str:
        """``'US · BURNED-IN TEXT · #1 — uids_changed ✓ ... pixels_clean ✓'``, with the
        note after it: one line a reviewer reads under the image (not HTML-escaped)."""
        head = " \u00b7 ".join(part for part in (
            self.modality or "?", self.series_description,
            f"#{self.instance_number}" if self.instance_number else "") if part)
        marks = " ".join(f"{name} {_MARKS[self.checks.get(name)]}" for name in CHECKS)
        text = f"{head} \u2014 {marks}"
        return f"{text} ({self.note})" if self.note else text


def parse_show_source(value: str | None) -> bool:
    """Whether a Variable value turns source frames on. Anything unreadable is *off*:
    a typo must not put PHI on a page."""
    if value is None:
        return False
    text = value.strip().lower()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text in ("yes", "on")
    return parsed is True or parsed == 1


def show_source_enabled() -> bool:
    """The :data:`SHOW_SOURCE_VARIABLE` Variable, read at run time (inside a task: at
    DAG-parse time it would be a metadata-database call on every parse)."""
    from airflow.sdk import Variable

    return parse_show_source(Variable.get(SHOW_SOURCE_VARIABLE, default=None))


def _cap(value: object) -> str:
    text = " ".join(str(value if value is not None else "").split())
    return text if len(text) <= _CAPTION_FIELD else text[: _CAPTION_FIELD - 1] + "\u2026"


def _checks(row: Mapping[str, Any]) -> dict[str, bool]:
    """The row's evaluated checks: CSV text (``true``/``false``/empty) or booleans."""
    out: dict[str, bool] = {}
    for name in CHECKS:
        value = row.get(name)
        if isinstance(value, bool):
            out[name] = value
        elif isinstance(value, str) and value.strip().lower() in ("true", "false"):
            out[name] = value.strip().lower() == "true"
    return out


def _sample_index(row: Mapping[str, Any]) -> int | None:
    value = row.get("sample_index")
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


# --- pixels -------------------------------------------------------------------------


def _frame0(ds: Dataset) -> np.ndarray:
    """Frame 0, decoded (YBR converted to RGB by pydicom), shaped (rows, columns) or
    (rows, columns, samples). Only that frame is decoded, so a long cine loop costs one
    frame."""
    from pydicom.pixels import pixel_array

    return np.asarray(pixel_array(ds, index=0))


def painted_boxes(source: np.ndarray, dest: np.ndarray) -> tuple[np.ndarray, list[Box]]:
    """The painted mask (where ``dest`` differs from ``source``, any sample of a colour
    pixel) and the bounding boxes of its 8-connected components, merged while any two
    overlap, so one painted rectangle with pixels that happened to equal the fill (dark
    speckle under black paint) is still one box. Raises ValueError if the shapes differ.
    """
    import cv2

    if source.shape != dest.shape:
        raise ValueError("frames differ in shape")
    mask = source != dest
    if mask.ndim == 3:
        mask = mask.any(axis=-1)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8),
                                                          connectivity=8)
    boxes = [(int(x), int(y), int(x + w), int(y + h)) for x, y, w, h, _ in stats[1:count]]
    return mask, _merge(boxes)


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _merge(boxes: Iterable[Box]) -> list[Box]:
    """Boxes merged into their union box while any two overlap (a fixpoint)."""
    merged = list(boxes)
    changed = True
    while changed:
        changed = False
        out: list[Box] = []
        for box in merged:
            for i, other in enumerate(out):
                if _overlap(box, other):
                    out[i] = (min(box[0], other[0]), min(box[1], other[1]),
                              max(box[2], other[2]), max(box[3], other[3]))
                    changed = True
                    break
            else:
                out.append(box)
        merged = out
    return sorted(merged, key=lambda b: (b[1], b[0]))


def _voi_range(ds: Dataset) -> tuple[float, float]:
    """The output range of pydicom's windowing for this instance (it clips to the range
    the stored bits span after rescale, PS3.3 C.11.2.1.2): found by windowing two values
    far outside any window, so the mapping to 0-255 is exactly pydicom's."""
    from pydicom.pixels import apply_windowing

    probe = apply_windowing(np.array([-1e12, 1e12]), ds, index=0)
    return float(probe[0]), float(probe[1])


def _lut_range(item: Dataset) -> tuple[float, float]:
    """The output range of a VOI LUT: its entries' range when pydicom has them as
    numbers (some LUTs declare 16 bits and use 12), else what the descriptor declares."""
    data = item.get("LUTData")
    if isinstance(data, int | float):
        data = [data]
    if isinstance(data, list | tuple) or hasattr(data, "__array__"):
        values = np.asarray(data, np.float64)
        if values.size:
            return float(values.min()), float(values.max())
    bits = int(item.LUTDescriptor[2])
    return 0.0, float((1 << bits) - 1)


def _grey8(ds: Dataset, frame: np.ndarray) -> np.ndarray:
    """A grey frame as a viewer shows it: modality LUT (rescale), then the instance's
    first VOI LUT or window, else the 0.5-99.5 percentile range; MONOCHROME1 inverted."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = np.asarray(apply_modality_lut(frame, ds), dtype=np.float64)
    low = high = None
    lut = ds.get("VOILUTSequence")
    if lut:  # a LUT is indexed by whole values: rescaled integers go in as integers
        index = values.astype(np.int64) if np.array_equal(values, np.rint(values)) else values
        values = np.asarray(apply_voi_lut(index, ds, index=0, prefer_lut=True), np.float64)
        low, high = _lut_range(lut[0])
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        try:
            voi = np.asarray(apply_voi_lut(values, ds, index=0, prefer_lut=False),
                             np.float64)
            low, high = _voi_range(ds)
            values = voi
        except (ValueError, TypeError, IndexError):  # a window pydicom refuses (width < 1)
            low = high = None
    if low is None or high is None or not high > low:
        finite = values[np.isfinite(values)]
        if finite.size:
            low, high = (float(v) for v in np.percentile(finite, _PERCENTILES))
        else:
            low, high = 0.0, 1.0
    span = high - low
    scaled = (values - low) / span * 255.0 if span > 0 else np.zeros_like(values)
    grey = np.clip(np.rint(np.nan_to_num(scaled)), 0, 255).astype(np.uint8)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        grey = 255 - grey
    return grey


def _colour8(ds: Dataset, frame: np.ndarray) -> np.ndarray:
    """A colour frame (RGB after pydicom's YBR conversion, or palette indices) as 8-bit
    RGB: palettes through their lookup table, more than 8 bits shifted down."""
    from pydicom.pixels import apply_color_lut

    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric == "PALETTE COLOR":
        rgb = np.asarray(apply_color_lut(frame, ds))
        bits = 16 if rgb.dtype.itemsize > 1 else 8
    else:
        rgb = frame
        bits = int(ds.get("BitsStored", 8) or 8)
    rgb = rgb[..., :3].astype(np.float64)
    if bits > 8:
        rgb = rgb / ((1 << bits) - 1) * 255.0
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _is_colour(ds: Dataset, frame: np.ndarray) -> bool:
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    return frame.ndim == 3 or photometric == "PALETTE COLOR"


def _scale(rows: int, columns: int) -> float:
    return min(1.0, THUMB / max(rows, columns, 1))


def thumb_size(rows: int, columns: int) -> tuple[int, int]:
    """(width, height) of the review image of a ``rows`` x ``columns`` frame."""
    scale = _scale(rows, columns)
    return max(1, round(columns * scale)), max(1, round(rows * scale))


def outline_rect(box: Box, rows: int, columns: int) -> tuple[int, int, int, int]:
    """The rectangle (x0, y0, x1, y1, inclusive) drawn for ``box`` on the review image:
    the scaled box grown to whole pixels, plus one pixel on every side, so the red line
    surrounds the painted pixels and covers none of them (clipped to the image)."""
    width, height = thumb_size(rows, columns)
    left, top, right, bottom = box
    x0 = int(np.floor(left * width / columns)) - 1
    y0 = int(np.floor(top * height / rows)) - 1
    x1 = int(np.ceil(right * width / columns))
    y1 = int(np.ceil(bottom * height / rows))
    return max(0, x0), max(0, y0), min(width - 1, x1), min(height - 1, y1)


def render_frame(ds: Dataset, frame: np.ndarray, boxes: Sequence[Box] = ()) -> str:
    """A frame as a PNG ``data:`` URI, windowed as a viewer would show it, at most
    :data:`THUMB` px on the long side, with ``boxes`` (frame pixels) outlined in red."""
    rows, columns = int(frame.shape[0]), int(frame.shape[1])
    if _is_colour(ds, frame):
        image = Image.fromarray(_colour8(ds, frame), "RGB")
    else:
        image = Image.fromarray(_grey8(ds, frame), "L")
    size = thumb_size(rows, columns)
    if size != (columns, rows):
        image = image.resize(size, Image.Resampling.BOX)  # area average: no aliasing
    if boxes:
        image = image.convert("RGB")
        draw = ImageDraw.Draw(image)
        for box in boxes:
            draw.rectangle(outline_rect(box, rows, columns), outline=RED, width=1)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# --- stores -------------------------------------------------------------------------


class _Sources:
    """Finds the source instance of a row by its UID digest, with bounded searches."""

    def __init__(self, client: DICOMwebClient) -> None:
        self.client = client
        self.index = SourceIndex(client)
        self._listed: dict[str, Ref] | None = None

    def find(self, dest: Dataset, digest: str) -> Ref | None:
        for ref in self.index.candidates(dest):
            if sop_digest(ref.sop) == digest:
                return ref
        if self._listed is None:  # the source changed since verification: list it once
            self._listed = {sop_digest(r.sop): r for r in list_instances(self.client,
                                                                         "source")}
        return self._listed.get(digest)


def _dest_ref(client: DICOMwebClient, sop: str) -> Ref | None:
    found = call("search of a destination instance", client.search_for_instances,
                 search_filters={"SOPInstanceUID": sop},
                 fields=["StudyInstanceUID", "SeriesInstanceUID"])
    for item in found:
        study, series = json_value(item, "0020000D"), json_value(item, "0020000E")
        if study and series:
            return Ref(str(study[0]), str(series[0]), sop)
    return None


def _failure(step: str, exc: BaseException) -> str:
    """A note for a failed step: VerificationError messages are PHI-free by design;
    other exceptions are named by class only (pydicom's messages can quote values)."""
    if isinstance(exc, VerificationError):
        return f"{step}: {exc}"
    return f"{step} failed ({type(exc).__name__})"


def _review_one(row: Mapping[str, Any], source: DICOMwebClient, destination: DICOMwebClient,
                sources: _Sources, show_source: bool) -> ReviewPair:
    base: dict[str, Any] = {
        "sample_index": _sample_index(row), "status": str(row.get("status") or ""),
        "checks": _checks(row), "modality": _cap(row.get("modality")),
        "series_description": "", "instance_number": ""}
    sop = str(row.get("dest_sop_uid") or "").strip()
    if not sop:
        return ReviewPair(**base, note="no destination instance in the row")
    try:
        ref = _dest_ref(destination, sop)
        if ref is None:
            return ReviewPair(**base, note="destination instance not found")
        dest = retrieve(destination, ref, "destination")
    except Exception as exc:  # noqa: BLE001  one pair's failure is that pair's note
        return ReviewPair(**base, note=_failure("destination retrieval", exc))
    base.update(modality=_cap(dest.get("Modality", "") or base["modality"]),
                series_description=_cap(dest.get("SeriesDescription", "")),
                instance_number=_cap(dest.get("InstanceNumber", "")))
    try:
        dest_frame = _frame0(dest)
    except Exception as exc:  # noqa: BLE001
        return ReviewPair(**base, note=_failure("destination pixel decoding", exc))

    notes: list[str] = []
    src_ds: Dataset | None = None
    digest = str(row.get("source_sop_sha256") or "").strip()
    if not digest:
        notes.append("no source instance matched: no outlines")
    else:
        try:
            src_ref = sources.find(dest, digest)
            if src_ref is None:
                notes.append("source instance not found: no outlines")
            else:
                src_ds = retrieve(source, src_ref, "source")
        except Exception as exc:  # noqa: BLE001
            notes.append(_failure("source retrieval", exc) + ": no outlines")

    src_frame: np.ndarray | None = None
    if src_ds is not None:
        try:
            src_frame = _frame0(src_ds)
        except Exception as exc:  # noqa: BLE001
            notes.append(_failure("source pixel decoding", exc) + ": no outlines")

    boxes: list[Box] = []
    fraction: float | None = None
    if src_frame is not None:
        if src_frame.shape != dest_frame.shape:
            notes.append("source and destination frames differ in size: no outlines")
        else:
            mask, boxes = painted_boxes(src_frame, dest_frame)
            fraction = float(mask.mean()) if mask.size else 0.0
            if fraction > _WIDE:
                notes.append(f"{fraction:.0%} of the frame differs from the source")

    try:
        dest_uri: str | None = render_frame(dest, dest_frame, boxes)
    except Exception as exc:  # noqa: BLE001
        dest_uri = None
        notes.append(_failure("destination rendering", exc))
    source_uri: str | None = None
    if show_source and src_ds is not None and src_frame is not None:
        try:
            source_uri = render_frame(src_ds, src_frame)
        except Exception as exc:  # noqa: BLE001
            notes.append(_failure("source rendering", exc))
    return ReviewPair(**base, painted_fraction=fraction, boxes=tuple(boxes),
                      dest_uri=dest_uri, source_uri=source_uri, note="; ".join(notes))


def review_pairs(source: DICOMwebClient, destination: DICOMwebClient,
                 rows: Sequence[Mapping[str, Any]], *, show_source: bool = False,
                 limit: int = 6) -> list[ReviewPair]:
    """The first ``limit`` verification-table rows as before/after review pairs.

    ``rows`` are rows of the verification CSV as :class:`csv.DictReader` gives them
    (booleans as ``true``/``false`` text, or Python booleans); which rows to show (all,
    or failed ones first) is the caller's choice, in the order given. ``show_source``
    renders the source frame too: it holds PHI, so pass :func:`show_source_enabled`
    (off by default), never a constant True in a deployment. A failure on one pair
    (a store error, undecodable pixels) becomes that pair's ``note``; it never stops
    the others. Only counts are logged.
    """
    if limit < 1:
        return []
    sources = _Sources(source)
    out: list[ReviewPair] = []
    with quiet_logs():  # dicomweb-client logs every retrieval's UIDs at INFO
        for row in list(rows)[:limit]:
            try:
                out.append(_review_one(row, source, destination, sources, show_source))
            except Exception as exc:  # noqa: BLE001  a bug must not cost the whole report
                out.append(ReviewPair(
                    sample_index=_sample_index(row), status=str(row.get("status") or ""),
                    modality=_cap(row.get("modality")), series_description="",
                    instance_number="", checks=_checks(row),
                    note=_failure("review", exc)))
    log.info("review: %d pairs, %d rendered, %d with outlines, %d with notes, %d with the "
             "source shown", len(out), sum(p.dest_uri is not None for p in out),
             sum(bool(p.boxes) for p in out), sum(bool(p.note) for p in out),
             sum(p.source_uri is not None for p in out))
    return out
