"""Incremental runs: de-identify only what a long-lived destination does not hold yet.

A scheduled run (``dicom_deidentify_incremental``) reads a **ledger** of what earlier
runs de-identified, asks the source store what it holds now, and sends one
de-identification operation per route restricted (``filterConfig``) to the instances
that are new. Then it exports only the destination's instances that are not in the
export folder yet, and writes a manifest of the whole folder plus one of this run.

The ledger holds no PHI: an entry is a keyed digest (``crypto_key.digest``, keyed by the
pipeline's secret) of a Series or SOP Instance UID, never the UID. It lives beside the
filters in the export bucket, ``_dicom_deid/ledger/<destination store>/``:

- ``planned/<run>.json``: what the run's plan chose (series digest -> instance digests),
  written before any operation starts, so a retried task finds the same work;
- ``committed/<run>.json``: written once the de-identification gates passed; its
  ``parts`` are keyed by the plan's digest, so committing the same plan twice (a
  cleared task) changes nothing, and a re-run that found more work adds a part.

Only committed records count as done. A run that fails before committing leaves its
instances to the next run; de-identifying an instance again gives the same bytes (same
key, same UIDs), which the store accepts as the instance it already holds. A study that
arrives while a run is in progress is not in that run's plan, so the next run takes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from google.api_core import exceptions as gcs_errors

from dicom_deid.gcs import iter_objects, parse_gs_uri
from dicom_deid_airflow.crypto_key import digest
from dicom_deid_airflow.manifest import iter_exported_objects
from dicom_deid_airflow.qido import search_pages
from dicom_deid_airflow.report_paths import path_segment
from dicom_deid_airflow.routing import ROUTES

log = logging.getLogger(__name__)

#: Digest purposes: a series and an instance digest of the same UID never coincide.
SERIES, INSTANCE = "ledger/series", "ledger/instance"
LEDGER_ROOT = "_dicom_deid/ledger"
FILTER_ROOT = "_dicom_deid/filters"


def ledger_folder(plan: dict) -> tuple[str, str]:
    """(bucket, folder) of the destination's ledger: in the export bucket, one folder per
    destination store (its full name as one path segment)."""
    bucket = parse_gs_uri(plan["export_prefix"], "export_prefix", prefix=True).bucket
    return bucket, f"{LEDGER_ROOT}/{path_segment(plan['destination_store'])}"


@dataclass
class Ledger:
    """What committed runs de-identified, as digests, and their totals."""

    series: dict[str, set[str]] = field(default_factory=dict)
    instances: int = 0
    failed: int = 0

    def add(self, part: dict) -> None:
        for series, instances in part["series"].items():
            self.series.setdefault(series, set()).update(instances)
        self.instances += sum(len(v) for v in part["series"].values())
        self.failed += int(part.get("failed", 0))


def _read_json(gcs: Any, bucket: str, name: str) -> dict | None:
    try:
        return json.loads(gcs.bucket(bucket).blob(name).download_as_bytes())
    except gcs_errors.NotFound:
        return None


def read_ledger(gcs: Any, plan: dict, *, skip_part: str | None = None) -> Ledger:
    """Every committed part of every run (but ``skip_part``: the plan being gated)."""
    bucket, folder = ledger_folder(plan)
    ledger = Ledger()
    for name, _ in iter_objects(gcs, bucket, f"{folder}/committed/"):
        record = _read_json(gcs, bucket, name) or {}
        if record.get("source_store") != plan["source_store"]:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(
                f"The ledger of {plan['destination_store']} was written by runs over "
                "another source store; give this source its own destination_store_id")
        for key, part in (record.get("parts") or {}).items():
            if key != skip_part:
                ledger.add(part)
    return ledger


def _value(row: dict, tag: str) -> str:
    return str(((row.get(tag) or {}).get("Value") or [""])[0])


@dataclass
class Increment:
    """The work a plan chose: instance paths per route, and digests for the ledger."""

    paths: dict[str, list[str]] = field(default_factory=lambda: {r: [] for r in ROUTES})
    series: dict[str, list[str]] = field(default_factory=dict)
    studies: set[str] = field(default_factory=set)
    waiting_series: int = 0
    #: Per route, the series that have new instances: (study, series, modality, new
    #: instances, instances in the series), for the cost estimate.
    parts: dict[str, list[tuple[str, str, str, int, int]]] = field(
        default_factory=lambda: {r: [] for r in ROUTES})

    @property
    def instances(self) -> int:
        return sum(len(v) for v in self.series.values())

    def key(self) -> str:
        """The plan's digest: the same work gives the same key."""
        text = json.dumps(self.series, sort_keys=True).encode()
        return hashlib.sha256(text).hexdigest()[:16]


def _series_rows(web: Any) -> Iterator[dict]:
    for page in search_pages(web.search_for_series,
                             fields=["Modality", "NumberOfSeriesRelatedInstances"]):
        yield from page


def _instance_uids(web: Any, study: str, series: str) -> list[str]:
    return [_value(row, "00080018")
            for page in search_pages(web.search_for_instances, study_instance_uid=study,
                                     series_instance_uid=series, fields=["SOPInstanceUID"])
            for row in page]


def find_increment(web: Any, ledger: Ledger, key: bytes, prone: Iterable[str],
                   max_instances: int) -> Increment:
    """The source's instances the ledger does not hold, study by study (oldest study
    UID order is not meaningful, so the order is the UIDs', which is stable), up to
    ``max_instances`` at whole-series boundaries; what is left waits for the next run.

    A series whose instance count equals what the ledger holds for it is not searched
    again: one QIDO-RS search of series, plus one search of instances per new or
    grown series.
    """
    prone = set(prone)
    candidates = []
    for row in _series_rows(web):
        study, series = _value(row, "0020000D"), _value(row, "0020000E")
        count = int(_value(row, "00201209") or 0)
        series_key = digest(key, SERIES, series)
        if count and len(ledger.series.get(series_key, ())) >= count:
            continue
        candidates.append((study, series, _value(row, "00080060"), series_key))
    candidates.sort()
    out = Increment()
    for i, (study, series, modality, series_key) in enumerate(candidates):
        known = ledger.series.get(series_key, set())
        uids = _instance_uids(web, study, series)
        new = [(uid, d) for uid in uids if (d := digest(key, INSTANCE, uid)) not in known]
        if not new:
            continue
        if out.instances and out.instances + len(new) > max_instances:
            out.waiting_series = len(candidates) - i
            break
        route = "pixel" if modality in prone else "metadata"
        out.paths[route].extend(f"/studies/{study}/series/{series}/instances/{uid}"
                                for uid, _ in new)
        out.series[series_key] = sorted(d for _, d in new)
        out.studies.add(study)
        out.parts[route].append((study, series, modality, len(new), len(uids)))
    return out


def write_text(gcs: Any, bucket: str, name: str, text: str, content_type: str) -> str:
    gcs.bucket(bucket).blob(name).upload_from_string(text, content_type=content_type)
    return f"gs://{bucket}/{name}"


def save_plan(gcs: Any, plan: dict, run_id: str, increment: Increment) -> dict[str, Any]:
    """The filter files (one per route with work) and the planned ledger record."""
    bucket, folder = ledger_folder(plan)
    segment = path_segment(run_id)
    out: dict[str, Any] = {}
    for route in ROUTES:
        paths = increment.paths[route]
        out[f"{route}_filter_uri"] = write_text(
            gcs, bucket, f"{FILTER_ROOT}/{segment}/{route}.txt", "\n".join(paths) + "\n",
            "text/plain") if paths else None
    write_text(gcs, bucket, f"{folder}/planned/{segment}.json",
               json.dumps({"key": increment.key(), "series": increment.series}),
               "application/json")
    return out


def commit(gcs: Any, plan: dict, run_id: str, *, stored: int, failed: int) -> dict:
    """Add the run's planned part to its committed record (idempotent by plan key)."""
    bucket, folder = ledger_folder(plan)
    segment = path_segment(run_id)
    planned = _read_json(gcs, bucket, f"{folder}/planned/{segment}.json")
    if planned is None:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException("The run's planned ledger record is missing: re-run "
                                   "plan_increment (nothing was committed)")
    name = f"{folder}/committed/{segment}.json"
    record = _read_json(gcs, bucket, name) or {
        "run_id": run_id, "source_store": plan["source_store"],
        "destination_store": plan["destination_store"], "parts": {}}
    record["parts"][planned["key"]] = {"series": planned["series"], "stored": stored,
                                       "failed": failed}
    write_text(gcs, bucket, name, json.dumps(record), "application/json")
    instances = sum(len(v) for v in planned["series"].values())
    log.info("Ledger: committed %d instances of %d series (part %s of run record %s)",
             instances, len(planned["series"]), planned["key"], name)
    return {"part": planned["key"], "instances": instances, "series": len(planned["series"])}


def planned_key(gcs: Any, plan: dict, run_id: str) -> str | None:
    bucket, folder = ledger_folder(plan)
    planned = _read_json(gcs, bucket, f"{folder}/planned/{path_segment(run_id)}.json")
    return planned["key"] if planned else None


def unexported(web: Any, gcs: Any, export_prefix: str) -> list[str]:
    """Instance paths of the destination store that the export folder lacks.

    The folder is listed once (object names carry study/series/instance); a series
    whose exported instances number what the store holds is not searched again.
    """
    exported: dict[tuple[str, str], set[str]] = {}
    for obj in iter_exported_objects(gcs, export_prefix):
        if obj.study and obj.series and obj.instance:
            exported.setdefault((obj.study, obj.series), set()).add(obj.instance)
    paths = []
    for row in _series_rows(web):
        study, series = _value(row, "0020000D"), _value(row, "0020000E")
        have = exported.get((study, series), set())
        count = int(_value(row, "00201209") or 0)
        if count and len(have) >= count:
            continue
        paths.extend(f"/studies/{study}/series/{series}/instances/{uid}"
                     for uid in _instance_uids(web, study, series) if uid not in have)
    return sorted(paths)


def export_filter_name(run_id: str) -> str:
    return f"{FILTER_ROOT}/{path_segment(run_id)}/export.txt"


def read_filter_instances(gcs: Any, uri: str) -> set[str]:
    """SOP Instance UIDs of a filter file's instance paths (the run's delta)."""
    location = parse_gs_uri(uri, "filter")
    text = gcs.bucket(location.bucket).blob(location.name).download_as_text()
    return {line.rsplit("/", 1)[1] for line in text.splitlines() if "/instances/" in line}
