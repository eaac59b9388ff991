"""Serves run reports from the Airflow API server, behind Airflow's own login.

The report task writes ``report.html`` into the run's report folder on the worker; the
``Run report`` extra link points here, so on-call opens it from the task they are
looking at, with the session they already have. Access follows the DAG's permissions
(``requires_access_dag``), like the run itself: the report shows de-identified
images, which are still a hospital's data. Mounted at ``links.REPORTS_URL_PREFIX`` by
:class:`~dicom_deid_airflow.plugin.DicomDeidPlugin`, which imports this module only
when the first request comes.
"""

from __future__ import annotations

import html
import re

from airflow.api_fastapi.core_api.security import DagAccessEntity, requires_access_dag
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, Response

from dicom_deid_airflow.report_paths import path_segment, report_folder

#: Files of a report folder that may be fetched: the report, the verification table and
#: the gates' results. Anything else (or any path) is refused.
SERVED = re.compile(r"^(report\.html|verification\.csv|[a-z_-]+\.json)$")

app = FastAPI(title="dicom-deid run reports", docs_url=None, redoc_url=None,
              openapi_url=None)
_can_read_run = [Depends(requires_access_dag("GET", DagAccessEntity.RUN))]


@app.get("/reports/{dag_id}/{run_id}", dependencies=_can_read_run)
def run_report(dag_id: str, run_id: str) -> Response:
    """The run's HTML report."""
    return run_file(dag_id, run_id, "report.html")


@app.get("/reports/{dag_id}/{run_id}/{name}", dependencies=_can_read_run)
def run_file(dag_id: str, run_id: str, name: str) -> Response:
    """One of the files the run wrote beside its report (table, gate results)."""
    if not SERVED.match(name):
        raise HTTPException(404, f"{name!r} is not a run report file")
    if not _own_folder(dag_id) or not _own_folder(run_id):
        raise HTTPException(404, "no report is served for a DAG or run ID outside "
                                 "[A-Za-z0-9_.~:+-]")
    path = report_folder(dag_id, run_id) / name
    if not path.is_file():
        if name == "report.html":
            return _not_written(dag_id, run_id)
        raise HTTPException(404, f"no {name} for run {run_id} of {dag_id}: the run has not "
                                 "written it (it had not got that far)")
    media = {"html": "text/html", "csv": "text/csv", "json": "application/json"}
    return FileResponse(path, media_type=media[name.rsplit(".", 1)[1]])


def _own_folder(name: str) -> bool:
    """True if ``name`` is its folder's name exactly: the folder served is then the one
    of the DAG the request was authorized for, by construction rather than by
    :func:`path_segment` being one to one."""
    return bool(name) and path_segment(name) == name


def _not_written(dag_id: str, run_id: str) -> HTMLResponse:
    """A page, not a JSON error, for a person who followed the link: the report is
    opened by the run's first task, so a missing one means the run never started it."""
    run = html.escape(run_id)
    dag = html.escape(dag_id)
    return HTMLResponse(status_code=404, content=(
        f"<!doctype html><meta charset=utf-8><title>No report yet: {dag} {run}</title>"
        "<style>body{font-family:sans-serif;margin:2em}</style>"
        f"<h1>No report for run {run} of {dag}</h1><p>The report is opened by the run's "
        "first task (<code>open_report</code>) and completed by its last "
        "(<code>report</code>). If the run is queued, it will appear once the run starts. "
        "If the run has ended, <code>open_report</code> did not run or failed: open its "
        "task log in the run's grid view.</p>"))
