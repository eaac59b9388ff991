"""The training handoff: prove an export is trainable by loading it as arrays.

On Google Cloud a team would start a Vertex AI job on the manifest; locally (and in
CI) the handoff loads every exported image the manifest lists into a numpy array,
the way a training data loader would, and writes dataset statistics beside the
manifest. An image that does not load fails the task with a count, not a value.
Before loading, the manifest gate (Great Expectations) checks the manifest itself.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pydicom
from PIL import Image

from dicom_deid.gcs import parse_gs_uri
from dicom_deid_airflow.configs import SUITES
from dicom_deid_airflow.quality import raise_if_failed, run_gate
from dicom_deid_airflow.run_record import safe_error
from dicom_deid_airflow.storage import storage_client

log = logging.getLogger(__name__)


def read_manifest(uri: str, gcp_conn_id: str = "google_cloud_default") -> pd.DataFrame:
    """The manifest (Parquet or CSV) the de-identification run wrote beside its export."""
    location = parse_gs_uri(uri, "manifest", require_name=True)
    name = location.name
    data = storage_client(gcp_conn_id).bucket(location.bucket).blob(name).download_as_bytes()
    if name.endswith(".parquet"):
        return pd.read_parquet(io.BytesIO(data))
    return pd.read_csv(io.BytesIO(data))


def _array(data: bytes, name: str) -> np.ndarray:
    if name.endswith(".png"):
        return np.asarray(Image.open(io.BytesIO(data)))
    ds = pydicom.dcmread(io.BytesIO(data))
    return np.asarray(ds.pixel_array)


def gate_manifest(uri: str, gcp_conn_id: str = "google_cloud_default") -> dict:
    """The manifest suite over the manifest the handoff was given."""
    table = read_manifest(uri, gcp_conn_id)
    result = run_gate(SUITES / "manifest.json", table, name="manifest")
    raise_if_failed(result)
    return {"rows": int(len(table)), "expectations": result.evaluated, "passed": True}


def load_and_describe(manifest_uri: str,
                      gcp_conn_id: str = "google_cloud_default") -> dict[str, Any]:
    """Load every listed image; write ``dataset_stats.json`` beside the manifest."""
    table = read_manifest(manifest_uri, gcp_conn_id)
    client = storage_client(gcp_conn_id)
    stats: dict[str, dict[str, Any]] = defaultdict(lambda: {"images": 0, "pixels": 0,
                                                            "sum": 0.0, "shapes": set()})
    failed = 0
    for row in table.itertuples(index=False):
        try:
            location = parse_gs_uri(str(row.uri), "uri", require_name=True)
            array = _array(client.bucket(location.bucket).blob(location.name)
                           .download_as_bytes(), location.name)
        except Exception:  # counted, never quoted: the object could be anything
            failed += 1
            continue
        entry = stats[str(row.modality or "unknown")]
        entry["images"] += 1
        entry["pixels"] += int(array.size)
        entry["sum"] += float(array.astype(np.float64).sum())
        entry["shapes"].add("x".join(str(d) for d in array.shape))
    summary = {
        "manifest": manifest_uri,
        "rows": int(len(table)),
        "loaded": int(sum(e["images"] for e in stats.values())),
        "failed": failed,
        "by_modality": {m: {"images": e["images"], "mean": e["sum"] / max(1, e["pixels"]),
                            "shapes": sorted(e["shapes"])} for m, e in sorted(stats.items())},
    }
    manifest = parse_gs_uri(manifest_uri, "manifest", require_name=True)
    bucket, name = manifest.bucket, manifest.name
    out = name.rsplit("/", 1)[0] + "/dataset_stats.json" if "/" in name else "dataset_stats.json"
    client.bucket(bucket).blob(out).upload_from_string(json.dumps(summary, indent=2),
                                                        content_type="application/json")
    if failed:
        raise ValueError(f"{failed} of {len(table)} exported images did not load as arrays")
    return {"stats": f"gs://{bucket}/{out}", "loaded": summary["loaded"], "rows": summary["rows"]}


def manifests_of(events: Sequence[Any], manual: str | None) -> list[str]:
    """Every manifest the triggering Asset events name, oldest first (a run triggered by
    several events - two exports finished while a run was queued - must handle each),
    else the manual run's ``manifest`` param: one URI, or several separated by commas or
    new lines (the catch-up for events published while the DAG was paused, which
    Airflow does not queue).

    An event without a manifest URI fails the run naming its position: skipping it would
    lose an export without a word.
    """
    from airflow.sdk.exceptions import AirflowFailException

    uris: list[str] = []
    bad: list[int] = []
    for i, event in enumerate(events):
        uri = (getattr(event, "extra", None) or {}).get("manifest")
        if not uri:
            bad.append(i)
        elif uri not in uris:
            uris.append(str(uri))
    if bad:
        raise AirflowFailException(
            f"{len(bad)} of the {len(events)} dicom_deid_manifest events carry no manifest "
            f"URI (events {bad}); the others were not handed off either")
    if uris:
        return uris
    listed = [u for u in re.split(r"[\s,]+", str(manual or "")) if u]
    if listed:
        return list(dict.fromkeys(listed))
    raise AirflowFailException("no dicom_deid_manifest event triggered this run and no "
                               "manifest param was given")


def for_each_manifest(uris: Sequence[str], step: Callable[[str], dict],
                      what: str) -> list[dict]:
    """Run ``step`` on every manifest; fail naming every manifest it could not handle,
    after trying them all, so one bad export does not hide the state of the others."""
    from airflow.sdk.exceptions import AirflowException

    results: list[dict] = []
    failed: list[str] = []
    for uri in uris:
        try:
            results.append({"manifest": uri, **step(uri)})
        except Exception as exc:
            # The message only where it is known not to quote data (run_record.safe_error):
            # a reader's error may quote a value of the file it could not read.
            error = safe_error(exc) or {}
            log.error("%s failed for %s: %s", what, uri, error.get("class"))
            failed.append(f"{uri} ({error.get('class')}: {error.get('message')})")
    if failed:
        raise AirflowException(f"{what} failed for {len(failed)} of {len(uris)} manifests: "
                               + "; ".join(failed))
    return results
