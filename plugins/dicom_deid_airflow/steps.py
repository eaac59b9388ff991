"""What the ``dicom_deidentify`` DAG's Python tasks do, kept out of ``dags/``.

The DAG file only wires tasks; the work lives here so the triggerer, the workers and
the tests import one package. Every step takes plain values (names, URIs, counts) and
the :class:`RunRef` of its run (DAG id, run id, connection: passed in, never assumed, so
a copied or renamed DAG writes its report where its Run report link looks), and returns
a small dict meant for XCom: no DICOM data, no PHI, no secrets. Tables (verification
sample, manifest) go to the run's report folder or beside the export; only their
locations travel.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicom_deid.gcs import parse_gs_uri
from dicom_deid_airflow.configs import SUITES
from dicom_deid_airflow.cost import RouteSize, load_pricing
from dicom_deid_airflow.cost import estimate as cost_estimate
from dicom_deid_airflow.hooks.healthcare import HealthcareHook
from dicom_deid_airflow.lineage import report_manifest_lineage
from dicom_deid_airflow.manifest import build_manifest, list_exported_objects
from dicom_deid_airflow.params import ParamError, run_slug, validate_params
from dicom_deid_airflow.preflight import check_resources
from dicom_deid_airflow.qido import search_pages
from dicom_deid_airflow.quality import counts_table, raise_if_failed, run_gate
from dicom_deid_airflow.report_paths import path_segment, reports_dir
from dicom_deid_airflow.routing import (
    ROUTES,
    pixel_prone_modalities,
    redacted_modalities,
    redacts_all_text,
    route,
    route_config,
)
from dicom_deid_airflow.storage import storage_client
from dicom_deid_airflow.verification.run import read_verification_table, sample_and_verify

#: The routing's sizes and the cost estimate, in the run's report folder.
ESTIMATE_FILE = "estimate.json"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRef:
    """The run a step works for: where its report goes and which connection it uses."""

    dag_id: str
    run_id: str
    gcp_conn_id: str = "google_cloud_default"

    @classmethod
    def current(cls, gcp_conn_id: str = "google_cloud_default") -> RunRef:
        """The run of the task that is executing (Airflow's task context)."""
        from airflow.sdk import get_current_context

        context = get_current_context()
        return cls(context["dag"].dag_id, context["run_id"], gcp_conn_id)

    @property
    def report_dir(self) -> Path:
        return reports_dir(self.dag_id, self.run_id)

    def hook(self) -> HealthcareHook:
        return HealthcareHook(gcp_conn_id=self.gcp_conn_id)


def validate_run(params: dict, run: RunRef,
                 render: Callable[[str], str] | None = None, *,
                 reuse_destination: bool = False) -> dict:
    """The ``validate`` task: params and profile (``params.validate_params``), then every
    resource the run needs (``preflight.check_resources``), before anything is created.

    A bad param fails at once (AirflowFailException: no retry); the resolved destination
    store and export folder are logged and saved for the report.
    """
    from airflow.sdk.exceptions import AirflowFailException

    try:
        plan = validate_params(params, render=render, run_id=run.run_id)
    except ParamError as exc:
        raise AirflowFailException(str(exc)) from None
    found = check_resources(plan, run.hook(), storage_client(run.gcp_conn_id),
                            run_slug(run.run_id), reuse_destination=reuse_destination)
    log.info("Destination store: %s; export folder: %s; profile %s%s",
             plan["destination_store"], plan["export_prefix"], plan["profile"],
             " (dry run: nothing will be created)" if plan["dry_run"] else "")
    return {**plan, **found}


def _route_sizes(hook: HealthcareHook, store: str, rows: list[dict],
                 routes: dict[str, list[str]]) -> dict[str, RouteSize]:
    """Instances, bytes and modalities per route, from each series' metrics."""
    modality_of = {f"/studies/{_value(r, '0020000D')}/series/{_value(r, '0020000E')}":
                   _value(r, "00080060") or "?" for r in rows}
    sizes: dict[str, RouteSize] = {}
    for name, paths in routes.items():
        instances = size = 0
        modalities: dict[str, int] = {}
        for path in paths:
            _, study, _, series = path.strip("/").split("/")
            metrics = hook.get_series_metrics(store, study, series)
            count = int(metrics.get("instanceCount") or 0)
            instances += count
            size += int(metrics.get("blobStorageSizeBytes") or 0)
            modality = modality_of.get(path, "?")
            modalities[modality] = modalities.get(modality, 0) + count
        sizes[name] = RouteSize(instances=instances, bytes=size, series=len(paths),
                                modalities=modalities)
    return sizes


def _value(row: dict, tag: str) -> str:
    return str(((row.get(tag) or {}).get("Value") or [""])[0])


def plan_routes(plan: dict, run: RunRef) -> dict:
    """Search the source's series, split them by modality and write the filter files.

    The filter files (``filterConfig.resourcePathsGcsUri``) go to the export bucket
    under ``_dicom_deid/filters/`` - outside the export prefix's study folders - and
    hold only UIDs, which the API needs. XCom gets, per route, its series count
    (``series``), filter URI (``<route>_filter_uri``) and config (``<route>_config``):
    flat keys, so that the DAG wires each into its operator as an XComArg.
    """
    hook = run.hook()
    web = hook.dicomweb_client(plan["source_store"])
    rows = list(web.search_for_series(fields=["Modality"], get_remaining=True))
    routes = route(rows, plan["study_uids"], pixel_prone_modalities())
    if not any(routes.values()):
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException("No series matched: the source store (or the study "
                                   "filter) has no series to de-identify")
    bucket_name = parse_gs_uri(plan["export_prefix"], "export_prefix").bucket
    bucket = storage_client(run.gcp_conn_id).bucket(bucket_name)
    sizes = _route_sizes(hook, plan["source_store"], rows, routes)
    estimate = cost_estimate(sizes, load_pricing())
    (run.report_dir / ESTIMATE_FILE).write_text(json.dumps(
        {"routes": {name: size.to_dict() for name, size in sizes.items()},
         "estimate": estimate.to_dict()}, indent=2))
    out: dict[str, Any] = {"series": {}, "instances": {n: s.instances for n, s in sizes.items()}}
    for name in ROUTES:
        paths = routes[name]
        uri = None
        if paths:
            blob = bucket.blob(f"_dicom_deid/filters/{path_segment(run.run_id)}/{name}.txt")
            blob.upload_from_string("\n".join(paths) + "\n", content_type="text/plain")
            uri = f"gs://{bucket_name}/{blob.name}"
        out["series"][name] = len(paths)
        out[f"{name}_filter_uri"] = uri
        out[f"{name}_config"] = route_config(plan["config"], pixel=name == "pixel")
    return out


def chosen_routes(routes: dict) -> list[str]:
    """The de-identification tasks to run: one per route with series (the API refuses
    an empty filter)."""
    return [f"deidentify_{name}" for name in ROUTES if routes["series"][name]]


def _date_shift(config: dict) -> bool:
    text = config.get("text") or {}
    items = list(text.get("transformations") or ()) + list(
        text.get("additionalTransformations") or ())
    return any("dateShiftConfig" in item for item in items)


def verify(plan: dict, run: RunRef) -> dict:
    """The verification sample (``verification.run.sample_and_verify``): counts in XCom,
    the table in the run's report folder."""
    hook = run.hook()
    result = sample_and_verify(
        hook.dicomweb_client(plan["source_store"]),
        hook.dicomweb_client(plan["destination_store"]),
        size=plan["sample_size"], seed=run.run_id,
        pixel_redaction=redacted_modalities(plan["config"]),
        date_shift=_date_shift(plan["config"]), out_dir=run.report_dir,
        all_text=redacts_all_text(plan["config"]))
    return result.to_dict()


def failed_instances(outcomes: Iterable[dict | None]) -> int:
    """Instances the de-identification operations failed, over the routes that ran (a
    skipped route has no outcome)."""
    return sum(int((outcome or {}).get("failure", 0)) for outcome in outcomes)


def _source_instances(hook: HealthcareHook, plan: dict) -> int:
    if not plan["study_uids"]:
        return hook.instance_count(plan["source_store"])
    web = hook.dicomweb_client(plan["source_store"])
    return sum(len(page) for uid in plan["study_uids"]
               for page in search_pages(web.search_for_instances, fields=["SOPInstanceUID"],
                                        search_filters={"StudyInstanceUID": uid}))


def gate_deidentified(plan: dict, verification: dict, outcomes: Iterable[dict | None],
                      run: RunRef) -> dict:
    """Gate 1: every sampled pair passed every check; gate 2: counts reconcile
    (destination + failures = source). Both results are written before failing."""
    hook = run.hook()
    out = run.report_dir
    sample = run_gate(SUITES / "deidentified.json",
                      read_verification_table(out / verification["table_file"]),
                      name="deidentified", out_dir=out)
    counts = run_gate(
        SUITES / "counts.json",
        counts_table(_source_instances(hook, plan),
                     hook.instance_count(plan["destination_store"]),
                     failed_instances(outcomes)),
        name="counts", params={"max_failures": plan["max_failures"]}, out_dir=out)
    results = [sample.to_dict(), counts.to_dict()]
    (out / "gates-deidentified.json").write_text(json.dumps(results, indent=2))
    raise_if_failed(sample)
    raise_if_failed(counts)
    return {"gates": [r["name"] for r in results], "passed": True}


def gate_export(plan: dict, run: RunRef) -> dict:
    """Objects under the export prefix = destination instances (frames, for PNG),
    named study/series/instance, none empty."""
    hook = run.hook()
    objects = list_exported_objects(storage_client(run.gcp_conn_id), plan["export_prefix"])
    suite = "export.json"
    if plan["export_mime_type"] == "image/png":  # one image per frame
        suite = "export-png.json"
        search = hook.dicomweb_client(plan["destination_store"]).search_for_instances
        expected = sum(int((r.get("00280008", {}).get("Value") or [1])[0])
                       for page in search_pages(search, fields=["NumberOfFrames"])
                       for r in page)
    else:
        expected = hook.instance_count(plan["destination_store"])
    result = run_gate(SUITES / suite, objects, name="export",
                      params={"expected_count": expected}, out_dir=run.report_dir)
    raise_if_failed(result)
    return {"objects": int(len(objects)), "expected": expected}


def write_manifest(plan: dict, run: RunRef) -> dict:
    """The manifest beside the export (Parquet), as ``manifest.build_manifest`` writes it."""
    result = build_manifest(run.hook().dicomweb_client(plan["destination_store"]),
                            storage_client(run.gcp_conn_id), plan["export_prefix"])
    report_manifest_lineage(result.uri, plan["export_prefix"])  # OpenLineage, if configured
    return result.to_dict()


def operation_counts(outcomes: dict[str, dict | None]) -> dict[str, int]:
    """``{"<task> success": n, "<task> failure": n}`` for the operations that ran."""
    counts: dict[str, int] = {}
    for task_id, result in outcomes.items():
        for key in ("success", "failure"):
            if key in (result or {}):
                counts[f"{task_id} {key}"] = int(result[key])
    return counts
