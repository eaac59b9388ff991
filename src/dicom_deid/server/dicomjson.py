"""Instance headers in the DICOM JSON model (PS3.18 Annex F), bulk data left out."""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset

from .pixels import read_stored

BULK_THRESHOLD = 1024


def _drop_bulk(node: dict) -> dict:
    out = {}
    for tag, elem in node.items():
        if "BulkDataURI" in elem:
            continue
        if elem.get("vr") == "SQ" and "Value" in elem:
            elem = {**elem, "Value": [_drop_bulk(item) for item in elem["Value"]]}
        out[tag] = elem
    return out


def header(path: Path, tags: list[int] | None = None) -> dict:
    """The instance's attributes as DICOM JSON (only ``tags`` if given)."""
    ds = read_stored(path, stop_before_pixels=True)
    if tags is not None:
        # A plain Dataset: dcmread gives a FileDataset, whose constructor differs.
        ds = Dataset({t: ds[t] for t in tags if t in ds})
    body = ds.to_json_dict(
        bulk_data_threshold=BULK_THRESHOLD,
        bulk_data_element_handler=lambda _elem: "",
        suppress_invalid_tags=True,
    )
    return _drop_bulk(body)
