"""What the ``dicom_deidentify_incremental`` DAG's Python tasks do.

The mechanics (ledger, increment, export difference) are in ``incremental``; here they
are put in the order a run needs, with the same contract as ``steps``: plain values in,
a small PHI-free dict out for XCom, tables and lists in Cloud Storage or the report
folder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from dicom_deid.gcs import parse_gs_uri
from dicom_deid_airflow import incremental
from dicom_deid_airflow.configs import SUITES
from dicom_deid_airflow.cost import RouteSize, load_pricing
from dicom_deid_airflow.cost import estimate as cost_estimate
from dicom_deid_airflow.crypto_key import CRYPTO_KEY_VARIABLE, CryptoKeyError, read_crypto_key
from dicom_deid_airflow.hooks.healthcare import HealthcareApiError
from dicom_deid_airflow.lineage import report_manifest_lineage
from dicom_deid_airflow.manifest import DELTA_FOLDER, build_manifest
from dicom_deid_airflow.quality import counts_table, raise_if_failed, run_gate
from dicom_deid_airflow.report_paths import path_segment
from dicom_deid_airflow.routing import ROUTES, pixel_prone_modalities, route_config
from dicom_deid_airflow.steps import (
    ESTIMATE_FILE,
    RunRef,
    failed_instances,
    validate_run,
)
from dicom_deid_airflow.storage import storage_client
from dicom_deid_airflow.verification.run import read_verification_table

log = logging.getLogger(__name__)

#: The increment's summary, in the run's report folder.
INCREMENT_FILE = "increment.json"


def _key() -> bytes:
    try:
        return read_crypto_key(CRYPTO_KEY_VARIABLE)
    except CryptoKeyError as exc:
        raise AirflowFailException(str(exc)) from None


def validate_incremental(params: dict, run: RunRef,
                         render: Callable[[str], str] | None = None) -> dict:
    """``steps.validate_run`` accepting a destination that holds earlier runs' instances,
    and the crypto key checked now: without it the run could not agree with the others."""
    if params.get("overwrite"):
        raise AirflowFailException("overwrite is not allowed on an incremental destination: "
                                   "it would delete what earlier runs de-identified")
    plan = validate_run(params, run, render, reuse_destination=True)
    _key()
    if plan["export_mime_type"] != "application/dicom":
        raise AirflowFailException("export_mime_type: incremental runs export DICOM (the "
                                   "export folder is compared with the store instance by "
                                   "instance)")
    return plan


def _destination_exists(run: RunRef, plan: dict) -> bool:
    try:
        run.hook().get_dicom_store(plan["destination_store"])
    except HealthcareApiError as exc:
        if exc.code == 404:
            return False
        raise
    return True


def _estimate(run: RunRef, plan: dict, increment: incremental.Increment) -> None:
    """The increment's sizes and cost estimate (``estimate.json``, as the manual DAG's
    ``route`` writes it): a series' bytes from its metrics, pro rata of its new
    instances."""
    hook = run.hook()
    sizes = {}
    for route, parts in increment.parts.items():
        size = 0
        modalities: dict[str, int] = {}
        for study, series, modality, new, total in parts:
            metrics = hook.get_series_metrics(plan["source_store"], study, series)
            size += int(metrics.get("blobStorageSizeBytes") or 0) * new // max(total, 1)
            modalities[modality or "?"] = modalities.get(modality or "?", 0) + new
        sizes[route] = RouteSize(instances=sum(p[3] for p in parts), bytes=size,
                                 series=len(parts), modalities=modalities)
    estimate = cost_estimate(sizes, load_pricing())
    (run.report_dir / ESTIMATE_FILE).write_text(json.dumps(
        {"routes": {name: s.to_dict() for name, s in sizes.items()},
         "estimate": estimate.to_dict()}, indent=2))


def plan_increment(plan: dict, run: RunRef, max_instances: int) -> dict[str, Any]:
    """The instances the ledger does not hold (up to ``max_instances``), as one filter
    file per route, and whether anything is left to export from earlier runs.

    ``work`` is false when there is nothing to de-identify and nothing to export: the run
    then stops, green, at ``unless_nothing_new``.
    """
    gcs = storage_client(run.gcp_conn_id)
    hook = run.hook()
    ledger = incremental.read_ledger(gcs, plan)
    increment = incremental.find_increment(
        hook.dicomweb_client(plan["source_store"]), ledger, _key(),
        pixel_prone_modalities(), max_instances)
    out: dict[str, Any] = incremental.save_plan(gcs, plan, run.run_id, increment)
    _estimate(run, plan, increment)
    pending_export = 0
    if not increment.instances and _destination_exists(run, plan):
        pending_export = len(incremental.unexported(
            hook.dicomweb_client(plan["destination_store"]), gcs, plan["export_prefix"]))
    out.update({
        "instances": increment.instances, "series": {r: 0 for r in ROUTES},
        "studies": len(increment.studies), "waiting_series": increment.waiting_series,
        "done_before": ledger.instances, "pending_export": pending_export,
        "work": bool(increment.instances or pending_export)})
    for route in ROUTES:
        out["series"][route] = len({p.rsplit("/instances/", 1)[0]
                                    for p in increment.paths[route]})
        out[f"{route}_config"] = route_config(plan["config"], pixel=route == "pixel")
    summary = {k: out[k] for k in ("instances", "series", "studies", "waiting_series",
                                   "done_before", "pending_export")}
    (run.report_dir / INCREMENT_FILE).write_text(json.dumps(summary, indent=2))
    log.info("Increment: %d new instances in %d studies (%s); %d instances done by earlier "
             "runs; %d series left for later runs; %d instances of earlier runs to export",
             increment.instances, len(increment.studies),
             ", ".join(f"{r} {n} series" for r, n in out["series"].items()),
             ledger.instances, increment.waiting_series, pending_export)
    if increment.waiting_series:
        log.warning("max_instances_per_run reached: %d series wait for the next run (or "
                    "trigger the DAG again to catch up now)", increment.waiting_series)
    return out


def gate_increment(plan: dict, increment: dict, verification: dict,
                   outcomes: Iterable[dict | None], run: RunRef) -> dict:
    """The verification sample's gate, and counts that reconcile over every run: the
    destination holds what the ledger's committed runs stored plus this run's work,
    less the failures; this run's failures are bounded by ``max_failures``."""
    gcs = storage_client(run.gcp_conn_id)
    hook = run.hook()
    out = run.report_dir
    prior = incremental.read_ledger(
        gcs, plan, skip_part=incremental.planned_key(gcs, plan, run.run_id))
    failures = failed_instances(outcomes)
    sample = run_gate(SUITES / "deidentified.json",
                      read_verification_table(out / verification["table_file"]),
                      name="deidentified", out_dir=out)
    counts = run_gate(
        SUITES / "counts.json",
        counts_table(prior.instances + int(increment["instances"]),
                     hook.instance_count(plan["destination_store"]), prior.failed + failures),
        name="counts", params={"max_failures": plan["max_failures"] + prior.failed},
        out_dir=out)
    results = [sample.to_dict(), counts.to_dict()]
    (out / "gates-deidentified.json").write_text(json.dumps(results, indent=2))
    raise_if_failed(sample)
    raise_if_failed(counts)
    return {"gates": [r["name"] for r in results], "passed": True}


def commit_ledger(plan: dict, increment: dict, outcomes: Iterable[dict | None],
                  run: RunRef) -> dict:
    """The run's planned part becomes committed: later runs will not take it again."""
    if not int(increment["instances"]):
        return {"instances": 0}
    outcomes = list(outcomes)
    stored = sum(int((o or {}).get("success", 0)) for o in outcomes)
    return incremental.commit(storage_client(run.gcp_conn_id), plan, run.run_id,
                              stored=stored, failed=failed_instances(outcomes))


def plan_export(plan: dict, run: RunRef) -> dict:
    """The destination's instances the export folder lacks, as the export's filter: this
    run's, and any an earlier run de-identified but did not export (it failed later)."""
    gcs = storage_client(run.gcp_conn_id)
    paths = incremental.unexported(run.hook().dicomweb_client(plan["destination_store"]),
                                   gcs, plan["export_prefix"])
    bucket = parse_gs_uri(plan["export_prefix"], "export_prefix", prefix=True).bucket
    uri = incremental.write_text(gcs, bucket, incremental.export_filter_name(run.run_id),
                                 "\n".join(paths) + "\n", "text/plain")
    log.info("Export: %d instances of the destination are not in %s yet", len(paths),
             plan["export_prefix"])
    return {"filter_uri": uri if paths else None, "instances": len(paths)}


def write_manifests(plan: dict, planned_export: dict, objects: int, run: RunRef) -> dict:
    """The cumulative manifest (every exported object) and this run's delta
    (``manifests/<run>.parquet``: the objects this run exported). Skipped - so no Asset
    event starts a training job - when nothing was exported and the cumulative manifest
    already lists every object."""
    gcs = storage_client(run.gcp_conn_id)
    web = run.hook().dicomweb_client(plan["destination_store"])
    location = parse_gs_uri(plan["export_prefix"], "export_prefix", prefix=True)
    if not planned_export.get("instances"):
        name = f"{location.name}/manifest.parquet" if location.name else "manifest.parquet"
        blob = gcs.bucket(location.bucket).get_blob(name)
        if blob is not None and (blob.metadata or {}).get("rows") == str(objects):
            raise AirflowSkipException(f"Nothing new was exported; the manifest already "
                                       f"lists all {objects} objects")
    cumulative = build_manifest(web, gcs, plan["export_prefix"])
    result = cumulative.to_dict()
    if planned_export.get("instances"):
        only = incremental.read_filter_instances(gcs, planned_export["filter_uri"])
        delta = build_manifest(web, gcs, plan["export_prefix"], only=only,
                               name=f"{DELTA_FOLDER}/{path_segment(run.run_id)}.parquet")
        result.update(delta_uri=delta.uri, delta_rows=delta.rows)
        report_manifest_lineage(delta.uri, plan["export_prefix"])
    report_manifest_lineage(cumulative.uri, plan["export_prefix"])  # OpenLineage, if set
    return result
