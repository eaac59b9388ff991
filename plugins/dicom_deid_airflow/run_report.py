"""The run report's content: what happened in the run, gathered for on-call.

The page is opened by the DAG's setup task (:func:`open_run_report`: params and an
"in progress" banner, so the Run report link never answers 404 while the run lives) and
completed by its teardown (:func:`write_run_report`), which runs whatever happened
upstream. The teardown must never crash: each section is gathered on its own, and a
section that cannot be built says so on the page instead of taking the others with it.

What it reads: the task states of the run (Airflow's execution API), each task's own
record of its outcome (``run_record``), the plan ``validate`` pushed to XCom, the files
the steps wrote into the report folder (gates, verification table, cost estimate,
review decision). What it never shows: a server path, a DICOM value, a source image
unless the deployment turned that on (see ``review``).
"""

from __future__ import annotations

import csv
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from dicom_deid.api_schema import config_digest
from dicom_deid_airflow.operators.review import DECISION_FILE
from dicom_deid_airflow.report_page import Banner, Sections, write_report
from dicom_deid_airflow.run_record import read_outcomes

if TYPE_CHECKING:
    from dicom_deid_airflow.steps import RunRef

log = logging.getLogger(__name__)

#: Gates whose result files the report lists, in the order they run.
GATES = ("deidentified", "counts", "export")
#: Operations whose counts the report shows.
OPERATION_TASKS = ("deidentify_pixel", "deidentify_metadata", "export")
#: Plan fields shown as resources.
RESOURCES = (("source store", "source_store"), ("destination store", "destination_store"),
             ("export folder", "export_prefix"))
FAILED_STATES = ("failed", "upstream_failed")
#: What an incremental run's plan found (``incremental_steps.plan_increment``).
INCREMENT_COUNTS = ("instances", "studies", "waiting_series", "done_before",
                    "pending_export")
_PAIRS = 6


def shown_params(params: dict) -> dict[str, Any]:
    """The params as used, with study UIDs counted rather than listed (a source UID
    points at a patient's visit)."""
    shown = {}
    for key, value in sorted(params.items()):
        if key == "study_uids":
            value = f"{len(value or [])} given" if value else "all studies"
        shown[key] = "(empty)" if value in (None, "") else value
    return shown


def in_run_order(tasks: list[Any]) -> list[str]:
    """Task ids upstream first (the order the graph reads), ties kept in DAG order."""
    pending = {t.task_id: set(t.upstream_task_ids) for t in tasks}
    order: list[str] = []
    while pending:
        ready = [t for t, ups in pending.items() if not ups - set(order)] or list(pending)[:1]
        for task_id in ready:
            order.append(task_id)
            del pending[task_id]
    return order


def task_log_url(dag_id: str, run_id: str, task_id: str) -> str:
    """The task instance's page (its log) in the Airflow 3 UI."""
    from airflow.sdk.configuration import conf

    base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    return (f"{base}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/tasks/"
            f"{quote(task_id, safe='')}")


def open_run_report(params: dict, run: RunRef) -> str:
    """Setup: the page with the params and an in-progress banner."""
    sections = Sections(banner=Banner("running", "This run is in progress",
                                      "The page is completed when the run ends."),
                        params=shown_params(params))
    path = _write(run, sections)
    return path.name


def _states(context: dict, run: RunRef) -> dict[str, str]:
    ti = context["ti"]
    found = ti.get_task_states(dag_id=run.dag_id, run_ids=[run.run_id])
    return {task: str(state or "none") for task, state in (found.get(run.run_id) or {}).items()}


def _pull(context: dict, task_id: str, key: str = "return_value") -> Any:
    try:
        return context["ti"].xcom_pull(task_ids=task_id, key=key)
    except Exception:  # a task that never ran has no XCom
        return None


def _banner(run: RunRef, states: dict[str, str], outcomes: dict[str, dict], final: bool,
            dry_run: bool, increment: dict | None = None) -> Banner:
    failed = [t for t, s in states.items() if s == "failed"]
    if failed:
        items = []
        for task_id in failed:
            error = (outcomes.get(task_id) or {}).get("error") or {}
            items.append({"task": task_id, "class": error.get("class", "unknown error"),
                          "message": error.get("message", "(no record: open the task log)"),
                          "log": task_log_url(run.dag_id, run.run_id, task_id)})
        return Banner("failed", f"Run failed at {', '.join(failed)}",
                      "Nothing after the failed task ran; its error is below.", items)
    if not final:
        return Banner("running", "Awaiting review", "A reviewer decides whether this sample "
                      "is exported: open Required Actions in Airflow.")
    if dry_run and states.get("unless_dry_run") == "success":
        return Banner("dry-run", "Dry run: validated and routed, nothing created",
                      "The routing and the cost estimate below are what a real run would do.")
    if increment is not None and not increment.get("work") and \
            states.get("unless_nothing_new") == "success":
        return Banner("succeeded", "Nothing new", "The source holds no instance the ledger "
                      "does not, and the export folder lacks none: nothing was de-identified "
                      "or exported.")
    if increment is not None:
        return Banner("succeeded", "Run succeeded", f"{increment.get('instances', 0)} new "
                      "instances de-identified, verified, gated and committed to the "
                      "ledger; the export and the manifest extended.")
    return Banner("succeeded", "Run succeeded", "De-identified, verified, gated, exported "
                  "and handed off.")


def _audit_rows(context: dict, run: RunRef) -> list[dict[str, str]]:
    """Each operation the run started, with the link to its audit log entries."""
    from dicom_deid_airflow.audit_links import audit_log_url
    from dicom_deid_airflow.operators.healthcare import OPERATION_KEY

    rows = []
    endpoint = None
    for task_id in OPERATION_TASKS:
        name = _pull(context, task_id, OPERATION_KEY)
        if not name:
            continue
        endpoint = endpoint if endpoint is not None else run.hook().api_endpoint
        rows.append({"task": task_id, "operation": name,
                     "url": audit_log_url(endpoint, name)})
    return rows


def _tasks(dag_task_ids: list[str], states: dict[str, str],
           outcomes: dict[str, dict]) -> list[dict[str, Any]]:
    rows = []
    for task_id in dag_task_ids:
        record = outcomes.get(task_id) or {}
        rows.append({"task": task_id, "state": states.get(task_id, "none"),
                     "duration_s": record.get("duration_s"),
                     "tries": record.get("try_number")})
    return rows


def _gate_rows(out: Path) -> list[dict[str, Any]]:
    gates = []
    for name in GATES:
        path = out / f"{name}.json"
        if path.exists():
            gate = json.loads(path.read_text())["gate"]
            gates.append({"name": name, "success": gate["success"],
                          "failed": [f"{f['expectation']}({f['column'] or ''}): "
                                     f"{f.get('observed', '')}" for f in gate["failed"]]})
    return gates


def _pairs(run: RunRef, plan: dict, out: Path) -> tuple[list[Any], str]:
    """Sampled before/after pairs (``review.review_pairs``) of the verification table."""
    table = out / "verification.csv"
    if not table.exists():
        return [], ""
    from dicom_deid_airflow.review import review_pairs, show_source_enabled

    with table.open() as fh:
        # Pairs that failed a check first: they are what the reviewer must see.
        rows = sorted(csv.DictReader(fh), key=lambda r: r.get("status") == "ok")
    hook = run.hook()
    show = show_source_enabled()
    pairs = review_pairs(hook.dicomweb_client(plan["source_store"]),
                         hook.dicomweb_client(plan["destination_store"]), rows,
                         show_source=show, limit=_PAIRS)
    note = ("Source frames are shown (Variable dicom_deid_review_show_source is true)."
            if show else "Source frames are not shown: they carry PHI. A deployment can "
            "turn them on with the Variable dicom_deid_review_show_source.")
    return pairs, note


def _cleanup(plan: dict, context: dict, run: RunRef, states: dict[str, str]) -> str:
    """A destination store this run created and left empty is deleted when it failed."""
    if not any(s in FAILED_STATES for s in states.values()) or not plan.get(
            "destination_store"):
        return ""
    if not _pull(context, "create_destination_store", "created"):
        ran = states.get("create_destination_store") == "success"
        return "kept (not created by this run)" if ran else ""
    hook = run.hook()
    count = hook.instance_count(plan["destination_store"])
    if count:
        return f"kept: holds {count} instances (this failed run wrote them)"
    hook.delete_dicom_store(plan["destination_store"], missing_ok=True)
    log.info("Deleted the empty destination store %s, which this failed run created",
             plan["destination_store"])
    return "deleted: this failed run created it and left it empty"


def write_run_report(context: dict, run: RunRef, *, final: bool = True) -> dict[str, Any]:
    """Teardown (and the review's preparation): the complete page. Never raises."""
    out = run.report_dir
    params = dict(context.get("params") or {})
    sections = Sections(banner=Banner("running", "Run report", ""),
                        params=shown_params(params))
    plan = {key: _pull(context, "validate", key) for key in (
        "source_store", "destination_store", "export_prefix", "profile", "config",
        "dry_run", "source_instances", "export_mime_type")}
    dag_tasks = in_run_order(context["dag"].tasks)
    outcomes = read_outcomes(out)

    def attempt(what: str, fn: Any) -> Any:
        try:
            return fn()
        except Exception as exc:  # one section lost, not the page
            log.warning("report section %s could not be built: %s", what, type(exc).__name__)
            sections.notes.append(f"The {what} section could not be built "
                                  f"({type(exc).__name__}); the task log of 'report' says "
                                  "more.")
            return None

    states = attempt("task states", lambda: _states(context, run)) or {}
    states.pop(context["ti"].task_id, None)
    increment = _pull(context, "plan_increment") if "plan_increment" in dag_tasks else None
    sections.banner = _banner(run, states, outcomes, final, bool(plan.get("dry_run")),
                              increment)
    sections.tasks = _tasks([t for t in dag_tasks if t != context["ti"].task_id], states,
                            outcomes)
    sections.resources = {label: plan.get(key) or "(not resolved: validate did not pass)"
                          for label, key in RESOURCES}
    manifest = _pull(context, "manifest") or {}
    if manifest.get("uri"):
        sections.resources["manifest"] = manifest["uri"]
    if final:
        cleanup = attempt("cleanup", lambda: _cleanup(plan, context, run, states))
        if cleanup:
            sections.resources["destination store"] = (
                f"{plan['destination_store']} ({cleanup})")
    counts: dict[str, Any] = {}
    if plan.get("profile"):
        counts["profile"] = plan["profile"]
        counts["config digest"] = config_digest(plan["config"]) if plan.get("config") else "-"
    if plan.get("source_instances") is not None:
        counts["source instances"] = plan["source_instances"]
    for key in INCREMENT_COUNTS:
        if increment and key in increment:
            counts[f"increment: {key.replace('_', ' ')}"] = increment[key]
    for task_id in OPERATION_TASKS:
        result = _pull(context, task_id) or {}
        for key in ("success", "failure"):
            if key in result:
                counts[f"{task_id} {key}"] = int(result[key])
    sections.counts = counts
    sections.audit = attempt("audit trail", lambda: _audit_rows(context, run)) or []
    estimate_path = out / "estimate.json"
    if estimate_path.exists():
        sections.estimate = attempt("cost estimate",
                                    lambda: json.loads(estimate_path.read_text()))
    sections.gates = attempt("quality gates", lambda: _gate_rows(out)) or []
    decision_path = out / DECISION_FILE
    if decision_path.exists():
        sections.review = attempt("review", lambda: json.loads(decision_path.read_text()))
    if manifest.get("uri"):
        sections.handoff = (f"Manifest published ({manifest.get('rows', '?')} rows): the "
                            "Asset event dicom_deid_manifest starts dicom_training_handoff.")
    else:
        sections.handoff = "Not handed off: no manifest was published by this run."
    if plan.get("destination_store") and (out / "verification.csv").exists():
        found = attempt("before/after pairs", lambda: _pairs(run, plan, out))
        if found:
            sections.pairs, note = found
            sections.notes.append(note)
    path = _write(run, sections)
    return {"report": path.name, "status": sections.banner.status,
            "pairs": len(sections.pairs), "gates": len(sections.gates)}


def _write(run: RunRef, sections: Sections) -> Path:
    return write_report(run.report_dir / "report.html", title=f"{run.dag_id} · {run.run_id}",
                        sections=sections,
                        written=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))
