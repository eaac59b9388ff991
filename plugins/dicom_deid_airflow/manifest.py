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

import io
import logging
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from dicomweb_client.api import DICOMwebClient
from google.cloud import storage

from dicom_deid.gcs import parse_gs_uri
from dicom_deid_airflow.qido import search_pages

__all__ = ["MANIFEST_COLUMNS", "ManifestResult", "build_manifest", "list_exported_objects"]

log = logging.getLogger(__name__)

_UID = r"[0-9][0-9.]*"
_OBJECT = re.compile(
    rf"(?P<study>{_UID})/(?P<series>{_UID})/(?P<instance>{_UID})"
    r"(?:\.(?P<ext>dcm|png|jpg)|/(?P<frame>[0-9]+)\.(?P<fext>png|jpg))"
)
_MANIFEST_NAMES = ("manifest.parquet", "manifest.csv")

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


def list_exported_objects(gcs: storage.Client, uri_prefix: str) -> pd.DataFrame:
    """The objects of an export under ``uri_prefix``: one row per object.

    Columns: ``name`` (full object name), ``size`` (bytes), ``study``, ``series``,
    ``instance`` (UIDs parsed from the name, empty if the name does not fit the export
    layout), ``frame`` (for multi-frame image exports) and ``uri``. Sorted by name.
    """
    location = parse_gs_uri(uri_prefix, "uri_prefix", prefix=True)
    bucket, prefix = location.bucket, location.name
    lead = f"{prefix}/" if prefix else ""
    skip = {lead + name for name in _MANIFEST_NAMES}
    columns: dict[str, list] = {k: [] for k in ("name", "size", "study", "series",
                                                "instance", "frame", "uri")}
    # Only the name and size are kept of each object (a Blob holds all its metadata),
    # column by column. Cloud Storage answers 1,000 objects a page; fake-gcs-server
    # answers all of them in one (about 120 MiB of JSON at 20,000 objects), and asking
    # it for pages makes it list everything again for each one.
    for blob in gcs.list_blobs(bucket, prefix=lead or None,
                               fields="items(name,size),nextPageToken"):
        if blob.name in skip or blob.name.endswith("/"):
            continue
        m = _OBJECT.fullmatch(blob.name[len(lead):])
        columns["name"].append(blob.name)
        columns["size"].append(int(blob.size or 0))
        columns["study"].append(m["study"] if m else None)
        columns["series"].append(m["series"] if m else None)
        columns["instance"].append(m["instance"] if m else None)
        columns["frame"].append(int(m["frame"]) if m and m["frame"] else None)
        columns["uri"].append(f"gs://{bucket}/{blob.name}")
    frame = pd.DataFrame(columns)
    frame["size"] = frame["size"].astype("int64")
    frame["frame"] = frame["frame"].astype("Int64")
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


def _metadata(destination: DICOMwebClient) -> dict[str, tuple]:
    """Clinical attributes of every destination instance, by SOP Instance UID, as
    tuples in :data:`_META_COLUMNS` order (a page of search results at a time: a row
    of the manifest is a few hundred bytes, its DICOM JSON a few KiB)."""
    out: dict[str, tuple] = {}
    for page in search_pages(destination.search_for_instances, fields=list(_FIELDS)):
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


def _manifest_table(objects: pd.DataFrame, meta: dict[str, tuple]) -> pa.Table:
    """One row per object, built column by column (no dict per row)."""
    columns: dict[str, list] = {name: [] for name in MANIFEST_COLUMNS}
    empty = (None,) * len(_META_COLUMNS)
    for obj in objects.itertuples(index=False):
        found = meta.get(obj.instance) if isinstance(obj.instance, str) else None
        columns["uri"].append(obj.uri)
        columns["size"].append(int(obj.size))
        columns["frame"].append(None if pd.isna(obj.frame) else int(obj.frame))
        columns["sop_uid"].append(obj.instance)
        for name, value in zip(_META_COLUMNS, found or empty, strict=True):
            columns[name].append(value)
        if not found:  # the UIDs parsed from the object's name
            columns["study_uid"][-1], columns["series_uid"][-1] = obj.study, obj.series
    return pa.Table.from_pydict(columns, schema=_SCHEMA)


def build_manifest(destination: DICOMwebClient, gcs: storage.Client, uri_prefix: str, *,
                   out_format: str = "parquet") -> ManifestResult:
    """Write the manifest of the export under ``uri_prefix`` beside it; return its URI.

    One row per exported object (see :data:`MANIFEST_COLUMNS`): its ``gs://`` URI, its
    UIDs and the clinical attributes the destination store returns over QIDO-RS.
    ``out_format`` is ``"parquet"`` (typed columns, for training jobs) or ``"csv"``.
    The manifest is written last, in one upload, so a reader never sees half of it.
    """
    if out_format not in ("parquet", "csv"):
        raise ValueError("out_format must be 'parquet' or 'csv'")
    location = parse_gs_uri(uri_prefix, "uri_prefix", prefix=True)
    bucket, prefix = location.bucket, location.name
    objects = list_exported_objects(gcs, uri_prefix)
    meta = _metadata(destination)
    table = _manifest_table(objects, meta)

    buf = io.BytesIO()
    if out_format == "parquet":
        pq.write_table(table, buf)
        content_type = "application/vnd.apache.parquet"
    else:
        table.to_pandas().to_csv(buf, index=False)
        content_type = "text/csv"
    name = f"{prefix}/manifest.{out_format}" if prefix else f"manifest.{out_format}"
    gcs.bucket(bucket).blob(name).upload_from_string(buf.getvalue(),
                                                     content_type=content_type)

    missing = sum(1 for sop in objects["instance"]
                  if not isinstance(sop, str) or sop not in meta)
    result = ManifestResult(uri=f"gs://{bucket}/{name}", rows=table.num_rows,
                            instances=int(objects["instance"].nunique()),
                            missing_metadata=missing, format=out_format)
    log.info("manifest: %d rows (%d instances, %d without store metadata) written to %s",
             result.rows, result.instances, result.missing_metadata, result.uri)
    return result
