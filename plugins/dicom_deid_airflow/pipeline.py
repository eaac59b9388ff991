"""What the ``dicom_deidentify`` DAG's Python tasks do, kept out of ``dags/``.

The DAG file only wires tasks; the work lives here so the triggerer, the workers and
the tests import one package. Every function takes plain values (names, URIs,
counts) and returns small dicts meant for XCom: no DICOM data, no PHI, no secrets.
Tables (verification sample, manifest) go to the run's report folder or beside the
export, and only their locations travel.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from dicom_deid.api_schema import ConfigError, validate

ROOT = Path(os.environ.get("DICOM_DEID_HOME", Path(__file__).resolve().parents[2]))
CONFIGS = ROOT / "include" / "configs"
STORE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")
STORE_NAME = re.compile(
    r"^projects/[^/]+/locations/[^/]+/datasets/[A-Za-z0-9_.-]+/dicomStores/[A-Za-z0-9_.-]+$")
UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
MIME_TYPES = ("application/dicom", "image/png")


def profiles() -> list[str]:
    """The de-identification profiles users may pick: ``include/configs/deid/*.json``."""
    return sorted(p.stem for p in (CONFIGS / "deid").glob("*.json"))


def routing() -> dict[str, Any]:
    """Which modalities get pixel text redaction (``include/configs/routing.yaml``)."""
    return yaml.safe_load((CONFIGS / "routing.yaml").read_text())["pixel_redaction"]


def reports_root() -> Path:
    """Where run reports live: ``$DICOM_DEID_REPORTS``, else ``$AIRFLOW_HOME/reports``.

    Workers write there and the API server serves it (``report_app``), so in a
    multi-host deployment it must be a volume both see.
    """
    return Path(os.environ.get("DICOM_DEID_REPORTS")
                or Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "reports")


def path_segment(name: str) -> str:
    """A DAG or run ID as a folder or object name: run IDs carry ``:`` and ``+``, which
    become ``_``; ``.`` and ``..`` (which the report app gets from a URL) become ``_``
    too, so a name never leaves its parent folder."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return "_" * len(safe) if set(safe) <= {"."} else safe


def report_folder(dag_id: str, run_id: str) -> Path:
    """A run's report folder."""
    return reports_root() / path_segment(dag_id) / path_segment(run_id)


def reports_dir(dag_id: str, run_id: str) -> Path:
    """A run's report folder, created: where its tables and report are written."""
    path = report_folder(dag_id, run_id)
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class RunPlan:
    """A validated run: resource names, the config and what to do with the output."""

    source_store: str
    dataset: str
    destination_store: str
    profile: str
    config: dict
    study_uids: list[str]
    sample_size: int
    export_prefix: str
    export_mime_type: str
    overwrite: bool
    max_failures: int

    def as_xcom(self) -> dict:
        return {**self.__dict__}


#: Params whose value may be a Jinja template (``{{ run_slug }}``, ``{{ params.profile }}``):
#: a run's own store and export folder by default, so runs triggered with the defaults
#: never collide.
TEMPLATED_PARAMS = ("destination_store_id", "export_prefix")


def run_slug(run_id: str) -> str:
    """The run ID as a store ID and path segment: ``manual__2026-11-25T19:28:00+00:00``
    -> ``manual-2026-11-25t19-28-00-00-00``."""
    return re.sub(r"[^a-z0-9.]+", "-", run_id.lower()).strip("-.")[:200] or "run"


def validate_params(params: dict, render: Callable[[str], str] | None = None) -> dict:
    """Check every param and the chosen config before anything is created.

    ``render`` expands the templated params (see ``TEMPLATED_PARAMS``) in the run's
    context. Errors name the param (or the config field, by its JSON path) and never echo
    a study UID list or a config's keys back.
    """
    if render is not None:
        params = {**params, **{k: render(str(params[k])) for k in TEMPLATED_PARAMS
                               if "{{" in str(params.get(k) or "")}}
    source = str(params.get("source_store") or "")
    if not STORE_NAME.match(source):
        raise ValueError("source_store must be projects/P/locations/L/datasets/D/dicomStores/S")
    dest_id = str(params.get("destination_store_id") or "")
    if not STORE_ID.match(dest_id):
        raise ValueError("destination_store_id may only hold letters, digits, _ . - "
                         "(1-256 characters)")
    dataset = source.rsplit("/dicomStores/", 1)[0]
    destination = f"{dataset}/dicomStores/{dest_id}"
    if destination == source:
        raise ValueError("destination_store_id must differ from the source store")
    profile = str(params.get("profile") or "")
    if profile not in profiles():
        raise ValueError(f"profile must be one of {profiles()}")
    config = json.loads((CONFIGS / "deid" / f"{profile}.json").read_text())
    try:
        validate(config)
    except ConfigError as exc:
        raise ValueError(f"profile {profile}: {exc}") from None
    studies = [str(s).strip() for s in (params.get("study_uids") or []) if str(s).strip()]
    bad = sum(not UID.match(s) for s in studies)
    if bad:
        raise ValueError(f"study_uids: {bad} value(s) are not DICOM UIDs")
    size = int(params.get("sample_size") or 0)
    if not 1 <= size <= 10_000:
        raise ValueError("sample_size must be between 1 and 10000")
    prefix = str(params.get("export_prefix") or "").rstrip("/")
    if not re.match(r"^gs://[a-z0-9][a-z0-9._-]{1,61}[a-z0-9](/.*)?$", prefix):
        raise ValueError("export_prefix must be a gs://bucket[/prefix] URI")
    mime = str(params.get("export_mime_type") or "application/dicom")
    if mime not in MIME_TYPES:
        raise ValueError(f"export_mime_type must be one of {list(MIME_TYPES)}")
    return RunPlan(source, dataset, destination, profile, config, studies, size, prefix, mime,
                   bool(params.get("overwrite")), int(params.get("max_failures") or 0)
                   ).as_xcom()


def gcs_client(project: str = "local") -> storage.Client:
    """Cloud Storage, or the emulator ``STORAGE_EMULATOR_HOST`` names (no credentials)."""
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return storage.Client(project=project, credentials=AnonymousCredentials())
    from airflow.providers.google.cloud.hooks.gcs import GCSHook

    return GCSHook().get_conn()


def split_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` -> (``bucket``, ``a/b``)."""
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    return bucket, name


def route(source_rows: list[dict], plan: dict) -> dict[str, list[str]]:
    """Series paths for each route (``pixel`` / ``metadata``) from QIDO series rows.

    A series whose modality is burned-in-text prone goes to ``pixel``; with study UIDs
    given (an ad-hoc run) other studies are left out.
    """
    prone = set(routing()["modalities"])
    studies = set(plan["study_uids"])
    out: dict[str, list[str]] = {"pixel": [], "metadata": []}
    for row in source_rows:
        study = row.get("0020000D", {}).get("Value", [""])[0]
        series = row.get("0020000E", {}).get("Value", [""])[0]
        modality = (row.get("00080060", {}).get("Value") or [""])[0]
        if studies and study not in studies:
            continue
        key = "pixel" if modality in prone else "metadata"
        out[key].append(f"/studies/{study}/series/{series}")
    return out


def route_config(plan: dict, pixel: bool) -> dict:
    """The run's config, with pixel text redaction added for the pixel route."""
    config = json.loads(json.dumps(plan["config"]))
    if pixel and not (config.get("image") or {}).get("textRedactionMode"):
        config["image"] = {**(config.get("image") or {}),
                           "textRedactionMode": routing()["text_redaction_mode"]}
    return config


def _hook():  # noqa: ANN202 - imported late: Airflow's hook machinery is heavy to import
    from dicom_deid_airflow.hooks.healthcare import HealthcareHook

    return HealthcareHook()


def plan_routes(plan: dict, run_id: str) -> dict:
    """Search the source's series, split them by modality and write the filter files.

    The filter files (``filterConfig.resourcePathsGcsUri``) go to the export bucket
    under ``_dicom_deid/filters/`` - outside the export prefix's study folders - and
    hold only UIDs, which the API needs; XCom gets their URIs and counts.
    """
    web = _hook().dicomweb_client(plan["source_store"])
    rows = web.search_for_series(fields=["Modality"], get_remaining=True)
    routes = route(rows, plan)
    bucket_name, _ = split_uri(plan["export_prefix"])
    bucket = gcs_client().bucket(bucket_name)
    safe = path_segment(run_id)
    out: dict[str, Any] = {}
    for name, paths in routes.items():
        uri = None
        if paths:
            blob = bucket.blob(f"_dicom_deid/filters/{safe}/{name}.txt")
            blob.upload_from_string("\n".join(paths) + "\n", content_type="text/plain")
            uri = f"gs://{bucket_name}/{blob.name}"
        out[name] = {"series": len(paths), "filter_uri": uri,
                     "config": route_config(plan, pixel=name == "pixel")}
    return out


SUITES = CONFIGS / "quality"
DAG_ID = "dicom_deidentify"


def _date_shift(config: dict) -> bool:
    text = config.get("text") or {}
    items = list(text.get("transformations") or ()) + list(
        text.get("additionalTransformations") or ())
    return any("dateShiftConfig" in item for item in items)


def _pixel_redaction(plan: dict) -> bool | set[str]:
    """Where the verification sample should find no text: everywhere when the profile
    itself redacts pixels, else in the modalities routed to pixel redaction."""
    mode = (plan["config"].get("image") or {}).get("textRedactionMode", "")
    if mode in ("REDACT_ALL_TEXT", "REDACT_SENSITIVE_TEXT"):
        return True
    return set(routing()["modalities"])


def verify(plan: dict, run_id: str) -> dict:
    """The verification sample (``verification.sample_and_verify``): counts in XCom,
    the table in the run's report folder."""
    from dicom_deid_airflow.verification import sample_and_verify

    hook = _hook()
    result = sample_and_verify(
        hook.dicomweb_client(plan["source_store"]),
        hook.dicomweb_client(plan["destination_store"]),
        size=plan["sample_size"], seed=run_id, pixel_redaction=_pixel_redaction(plan),
        date_shift=_date_shift(plan["config"]), out_dir=reports_dir(DAG_ID, run_id))
    return result.to_dict()


def _source_instances(plan: dict) -> int:
    hook = _hook()
    if not plan["study_uids"]:
        return hook.count_instances(plan["source_store"])
    web = hook.dicomweb_client(plan["source_store"])
    return sum(len(web.search_for_instances(search_filters={"StudyInstanceUID": uid},
                                            get_remaining=True))
               for uid in plan["study_uids"])


def gate_deidentified(plan: dict, routes: dict, verification: dict, failures: int,
                      run_id: str) -> dict:
    """Gate 1: every sampled pair passed every check; gate 2: counts reconcile
    (destination + failures = source). Both results are written before failing."""
    from dicom_deid_airflow.quality import counts_table, raise_if_failed, run_gate
    from dicom_deid_airflow.verification import read_verification_table

    out = reports_dir(DAG_ID, run_id)
    sample = run_gate(SUITES / "deidentified.json",
                      read_verification_table(Path(verification["table_path"])),
                      name="deidentified", out_dir=out)
    counts = run_gate(
        SUITES / "counts.json",
        counts_table(_source_instances(plan), _hook().count_instances(plan["destination_store"]),
                     failures),
        name="counts", params={"max_failures": plan["max_failures"]}, out_dir=out)
    results = [sample.to_dict(), counts.to_dict()]
    (out / "gates-deidentified.json").write_text(json.dumps(results, indent=2))
    raise_if_failed(sample)
    raise_if_failed(counts)
    return {"gates": [r["name"] for r in results], "passed": True}


def gate_export(plan: dict, run_id: str) -> dict:
    """Objects under the export prefix = destination instances, named study/series/
    instance, none empty."""
    from dicom_deid_airflow.manifest import list_exported_objects
    from dicom_deid_airflow.quality import raise_if_failed, run_gate

    objects = list_exported_objects(gcs_client(), plan["export_prefix"])
    suite = "export.json"
    expected = _hook().count_instances(plan["destination_store"])
    if plan["export_mime_type"] == "image/png":  # one image per frame
        suite = "export-png.json"
        rows = _hook().dicomweb_client(plan["destination_store"]).search_for_instances(
            fields=["NumberOfFrames"], get_remaining=True)
        expected = sum(int((r.get("00280008", {}).get("Value") or [1])[0]) for r in rows)
    result = run_gate(SUITES / suite, objects, name="export",
                      params={"expected_count": expected}, out_dir=reports_dir(DAG_ID, run_id))
    raise_if_failed(result)
    return {"objects": int(len(objects)), "expected": expected}


def write_manifest(plan: dict) -> dict:
    """The manifest beside the export (Parquet), as ``manifest.build_manifest`` writes it."""
    from dicom_deid_airflow.manifest import build_manifest

    result = build_manifest(_hook().dicomweb_client(plan["destination_store"]), gcs_client(),
                            plan["export_prefix"])
    return result.to_dict()


def gate_manifest(uri: str) -> dict:
    """The manifest suite over the manifest the handoff was given."""
    from dicom_deid_airflow.handoff import read_manifest
    from dicom_deid_airflow.quality import raise_if_failed, run_gate

    table = read_manifest(uri)
    result = run_gate(SUITES / "manifest.json", table, name="manifest")
    raise_if_failed(result)
    return {"rows": int(len(table)), "expectations": result.evaluated, "passed": True}


def write_run_report(plan: dict, run_id: str, outcomes: dict[str, Any]) -> dict:
    """The run's HTML report in its report folder: counts, config digest, gates and up
    to six sampled destination frames (of pairs that passed verification) with their
    painted areas outlined."""
    from dicom_deid_airflow.report import config_digest, thumbnail, write_report

    out = reports_dir(DAG_ID, run_id)
    gates: list[dict] = []
    for name in ("deidentified", "counts", "export"):  # the gates' result files
        if (out / f"{name}.json").exists():
            gate = json.loads((out / f"{name}.json").read_text())["gate"]
            gates.append({"name": name, "success": gate["success"],
                          "failed": [f"{f['expectation']}({f['column'] or ''})"
                                     for f in gate["failed"]]})
    thumbs: list[tuple[str, str]] = []
    table = out / "verification.csv"
    if table.exists():
        import csv

        web = _hook().dicomweb_client(plan["destination_store"])
        with table.open() as fh:
            # Only pairs that passed every check: a failed one may still show text.
            rows = [r for r in csv.DictReader(fh) if r.get("status") == "ok"][:6]
        for row in rows:
            try:
                [item] = web.search_for_instances(
                    search_filters={"SOPInstanceUID": row["dest_sop_uid"]})
                png = web.retrieve_instance_rendered(
                    item["0020000D"]["Value"][0], item["0020000E"]["Value"][0],
                    row["dest_sop_uid"], media_types=("image/png",))
                thumbs.append((f"{row.get('modality', '')} sample {row['sample_index']}: "
                               f"{row.get('status', '')}", thumbnail(png)))
            except Exception:  # a frame that does not render is left out, not fatal
                continue
    counts = {"profile": plan["profile"], "config digest": config_digest(plan["config"]),
              **{k: v for k, v in outcomes.items() if isinstance(v, (int, str))}}
    path = write_report(out / "report.html", title=f"{DAG_ID} {run_id}", counts=counts,
                        gates=gates, thumbnails=thumbs)
    return {"report": str(path), "thumbnails": len(thumbs), "gates": len(gates)}
