"""The training handoff: what was exported, and a manifest of it beside the export.

Why a manifest: a training job should not have to open every DICOM file (or query the
store) to pick the CT chests at 0.7 mm. So after ``dicomStores.export`` this module
lists the exported objects, joins them with the destination store's QIDO-RS metadata
(the de-identified store: shifted dates, new UIDs, no PHI) and writes one row per
exported object to ``gs://bucket/prefix/manifest.parquet`` (or ``.csv``). The Asset
event that schedules the training DAG carries the manifest's URI and row count only.

Export naming, as written by the Cloud Healthcare API and the local server
(``dicom_deid/server/transfer.py``)::

    {prefix}/{study}/{series}/{instance}.dcm          application/dicom (default)
    {prefix}/{study}/{series}/{instance}.png|.jpg     image/png, image/jpeg, one frame
    {prefix}/{study}/{series}/{instance}/{n}.png|.jpg multi-frame, n from 1

(the discovery document's ``GcsDestination.mimeType``: ``.../{instance_id}
[/{frame_number}].{extension}``, ``.jpg`` for image/jpeg).

:func:`list_exported_objects` parses all three; an object under the prefix that fits
none of them keeps its name and size with empty UIDs, so the export gate sees it. The
manifest files this module writes (``{prefix}/manifest.parquet|csv``) are not listed.
"""

from __future__ import annotations

import itertools
import logging
import re
import tempfile
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from operator import attrgetter
from typing import IO, Any, NamedTuple

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from dicomweb_client.api import DICOMwebClient
from google.cloud import storage

from dicom_deid.gcs import iter_objects, parse_gs_uri
from dicom_deid_airflow.qido import search_pages

__all__ = ["MANIFEST_COLUMNS", "ExportedObject", "ManifestResult", "build_manifest",
           "iter_exported_objects", "list_exported_objects"]

log = logging.getLogger(__name__)

_UID = r"[0-9][0-9.]*"
_OBJECT = re.compile(
    rf"(?P<study>{_UID})/(?P<series>{_UID})/(?P<instance>{_UID})"
    r"(?:\.(?P<ext>dcm|png|jpg)|/(?P<frame>[0-9]+)\.(?P<fext>png|jpg))"
)
_MANIFEST_NAMES = ("manifest.parquet", "manifest.csv")
#: Per-run manifests of an incremental export (``manifests/<run>.parquet``): beside the
#: export, and not part of it (a UID never starts with a letter, so no study folder
#: shares the name).
DELTA_FOLDER = "manifests"

# QIDO keywords the manifest is built from, and their tags in the DICOM JSON model.
_TAGS = {
    "StudyInstanceUID": "0020000D", "SeriesInstanceUID": "0020000E",
    "SOPInstanceUID": "00080018", "Modality": "00080060", "BodyPartExamined": "00180015",
    "Rows": "00280010", "Columns": "00280011", "PixelSpacing": "00280030",
    "SliceThickness": "00180050", "StudyDate": "00080020", "SeriesDate": "00080021",
}
_FIELDS = tuple(_TAGS)
_SCHEMA = pa.schema([
    ("uri", pa.string()),
    ("study_uid", pa.string()),
    ("series_uid", pa.string()),
    ("sop_uid", pa.string()),
    ("frame", pa.int32()),
    ("size", pa.int64()),
    ("modality", pa.string()),
    ("body_part_examined", pa.string()),
    ("rows", pa.int32()),
    ("columns", pa.int32()),
    ("pixel_spacing_row_mm", pa.float64()),
    ("pixel_spacing_column_mm", pa.float64()),
    ("slice_thickness_mm", pa.float64()),
    ("study_date", pa.date32()),
    ("series_date", pa.date32()),
])
MANIFEST_COLUMNS = tuple(_SCHEMA.names)
"""Columns of the manifest, in order. Pixel spacing is split into row and column
spacing (mm) so that CSV and Parquet hold the same scalar columns; dates are dates
(shifted, in a date-shifted run), frame is empty for whole-instance objects."""
#: Rows per Parquet row group (and per CSV chunk): large enough for readers to scan
#: efficiently, small enough that the writing task's memory stays a few MiB.
ROW_GROUP = 10_000
_CONTENT_TYPES = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv"}


@dataclass(frozen=True)
class ManifestResult:
    """Where the manifest went and what it holds: XCom- and Asset-extra-safe.

    ``rows`` is the number of manifest rows (exported objects), ``instances`` the number
    of distinct instances among them, ``missing_metadata`` the objects whose instance
    the store did not return (their clinical columns are empty; the manifest gate fails
    on them).
    """

    uri: str
    rows: int
    instances: int
    missing_metadata: int
    format: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for XCom and Asset extras)."""
        return {"uri": self.uri, "rows": self.rows, "instances": self.instances,
                "missing_metadata": self.missing_metadata, "format": self.format}


class ExportedObject(NamedTuple):
    """One object of an export: its name and size, and the UIDs (and frame number)
    its name carries; ``None`` where the name does not fit the export layout."""

    name: str
    size: int
    study: str | None
    series: str | None
    instance: str | None
    frame: int | None


def iter_exported_objects(gcs: storage.Client, uri_prefix: str) -> Iterator[ExportedObject]:
    """The objects of an export under ``uri_prefix``, in the listing's (name) order, one
    at a time (``gcs.iter_objects``): the manifest is written as they come, so its task
    holds one series, not the whole export."""
    location = parse_gs_uri(uri_prefix, "uri_prefix", prefix=True)
    lead = f"{location.name}/" if location.name else ""
    skip = {lead + name for name in _MANIFEST_NAMES}
    deltas = f"{lead}{DELTA_FOLDER}/"
    for name, size in iter_objects(gcs, location.bucket, lead or None):
        if name in skip or name.endswith("/") or name.startswith(deltas):
            continue
        m = _OBJECT.fullmatch(name[len(lead):])
        if m is None:
            yield ExportedObject(name, size, None, None, None, None)
        else:
            yield ExportedObject(name, size, m["study"], m["series"], m["instance"],
                                 int(m["frame"]) if m["frame"] else None)


def list_exported_objects(gcs: storage.Client, uri_prefix: str) -> pd.DataFrame:
    """The objects of an export under ``uri_prefix`` as the export gate's table.

    Columns: ``name`` (full object name), ``size`` (bytes), ``study``, ``series``,
    ``instance`` (UIDs parsed from the name, empty if the name does not fit the export
    layout) and ``frame`` (for multi-frame image exports). Sorted by name. Built column
    by column: a dict or a Blob per object would cost several times the table.
    """
    columns: dict[str, list] = {k: [] for k in ExportedObject._fields}
    lists = [columns[k] for k in ExportedObject._fields]
    for obj in iter_exported_objects(gcs, uri_prefix):
        for values, value in zip(lists, obj, strict=True):
            values.append(value)
    frame = pd.DataFrame(columns)
    frame["size"] = frame["size"].astype("int64")
    frame["frame"] = frame["frame"].astype("Int64")
    if frame["name"].is_monotonic_increasing:  # as Cloud Storage lists: no sorted copy
        return frame
    return frame.sort_values("name", ignore_index=True)


def _first(item: dict, keyword: str) -> Any:
    values = (item.get(_TAGS[keyword]) or {}).get("Value") or []
    return values[0] if values else None


def _date(value: Any) -> date | None:
    text = str(value or "").strip()
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


#: The manifest's columns that come from the store, in the order of ``_metadata``'s tuples.
_META_COLUMNS = ("study_uid", "series_uid", "modality", "body_part_examined", "rows",
                 "columns", "pixel_spacing_row_mm", "pixel_spacing_column_mm",
                 "slice_thickness_mm", "study_date", "series_date")


def _series_metadata(destination: DICOMwebClient, study: str,
                     series: str) -> dict[str, tuple]:
    """Clinical attributes of one destination series' instances, by SOP Instance UID,
    as tuples in :data:`_META_COLUMNS` order."""
    out: dict[str, tuple] = {}
    for page in search_pages(destination.search_for_instances, study_instance_uid=study,
                             series_instance_uid=series, fields=list(_FIELDS)):
        for item in page:
            sop = _first(item, "SOPInstanceUID")
            if not sop:
                continue
            spacing = ((item.get(_TAGS["PixelSpacing"]) or {}).get("Value") or [None, None])
            spacing = [*spacing, None, None][:2]
            out[str(sop)] = (
                _first(item, "StudyInstanceUID"), _first(item, "SeriesInstanceUID"),
                _first(item, "Modality"), _first(item, "BodyPartExamined"),
                _int(_first(item, "Rows")), _int(_first(item, "Columns")),
                _float(spacing[0]), _float(spacing[1]),
                _float(_first(item, "SliceThickness")),
                _date(_first(item, "StudyDate")), _date(_first(item, "SeriesDate")),
            )
    return out


def _manifest_table(bucket: str, objects: list[ExportedObject],
                    meta: dict[str, tuple]) -> pa.Table:
    """The rows of ``objects``, built column by column (no dict per row)."""
    columns: dict[str, list] = {name: [] for name in MANIFEST_COLUMNS}
    empty = (None,) * len(_META_COLUMNS)
    for obj in objects:
        found = meta.get(obj.instance) if obj.instance else None
        columns["uri"].append(f"gs://{bucket}/{obj.name}")
        columns["size"].append(obj.size)
        columns["frame"].append(obj.frame)
        columns["sop_uid"].append(obj.instance)
        for name, value in zip(_META_COLUMNS, found or empty, strict=True):
            columns[name].append(value)
        if not found:  # the UIDs parsed from the object's name
            columns["study_uid"][-1], columns["series_uid"][-1] = obj.study, obj.series
    return pa.Table.from_pydict(columns, schema=_SCHEMA)


class _ManifestFile:
    """The manifest being written to a local temporary file, a row group of
    ``ROW_GROUP`` rows at a time (Parquet), or a chunk of lines (CSV)."""

    def __init__(self, out: IO[bytes], out_format: str) -> None:
        self._out = out
        self._pending: list[pa.Table] = []
        self._parquet = pq.ParquetWriter(out, _SCHEMA) if out_format == "parquet" else None
        self._header = True

    def add(self, table: pa.Table) -> None:
        self._pending.append(table)
        if sum(t.num_rows for t in self._pending) >= ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        table = pa.concat_tables(self._pending) if self._pending else _SCHEMA.empty_table()
        self._pending = []
        if self._parquet is not None:
            if table.num_rows:
                self._parquet.write_table(table, row_group_size=ROW_GROUP)
        elif table.num_rows or self._header:
            self._out.write(table.to_pandas().to_csv(index=False, header=self._header)
                            .encode())
            self._header = False

    def close(self) -> None:
        self._flush()
        if self._parquet is not None:
            self._parquet.close()


def build_manifest(destination: DICOMwebClient, gcs: storage.Client, uri_prefix: str, *,
                   out_format: str = "parquet", only: Container[str] | None = None,
                   name: str | None = None) -> ManifestResult:
    """Write the manifest of the export under ``uri_prefix`` beside it; return its URI.

    One row per exported object (see :data:`MANIFEST_COLUMNS`): its ``gs://`` URI, its
    UIDs and the clinical attributes the destination store returns over QIDO-RS.
    ``out_format`` is ``"parquet"`` (typed columns, for training jobs) or ``"csv"``.
    The manifest is written to a local file a series at a time, then uploaded in one
    go, so a reader never sees half of it and the task's memory does not grow with the
    export. ``only`` keeps the objects of those SOP Instance UIDs (an incremental run's
    delta), written as ``name`` (relative to the prefix) instead of ``manifest.<fmt>``.
    The object's metadata carries its row count, so a later run can tell whether it is
    current without reading it.
    """
    if out_format not in ("parquet", "csv"):
        raise ValueError("out_format must be 'parquet' or 'csv'")
    location = parse_gs_uri(uri_prefix, "uri_prefix", prefix=True)
    bucket, prefix = location.bucket, location.name
    rows = missing = 0
    instances: set[str] = set()
    with tempfile.TemporaryFile() as out:
        manifest = _ManifestFile(out, out_format)
        # The listing comes in name order, so each series' objects come together: its
        # clinical attributes are asked for once (QIDO-RS), and only it is held.
        series_of = attrgetter("study", "series")
        listing: Iterable[ExportedObject] = iter_exported_objects(gcs, uri_prefix)
        if only is not None:
            listing = (o for o in listing if o.instance in only)
        for (study, series), group in itertools.groupby(listing, key=series_of):
            objects = list(group)
            meta = _series_metadata(destination, study, series) if study and series else {}
            manifest.add(_manifest_table(bucket, objects, meta))
            rows += len(objects)
            missing += sum(1 for o in objects if not o.instance or o.instance not in meta)
            instances.update(o.instance for o in objects if o.instance)
        manifest.close()
        out.seek(0)
        name = name or f"manifest.{out_format}"
        name = f"{prefix}/{name}" if prefix else name
        blob = gcs.bucket(bucket).blob(name)
        blob.metadata = {"rows": str(rows)}
        blob.upload_from_file(out, content_type=_CONTENT_TYPES[out_format])

    result = ManifestResult(uri=f"gs://{bucket}/{name}", rows=rows, instances=len(instances),
                            missing_metadata=missing, format=out_format)
    log.info("manifest: %d rows (%d instances, %d without store metadata) written to %s",
             result.rows, result.instances, result.missing_metadata, result.uri)
    return result
