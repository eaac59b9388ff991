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

import re

from airflow.api_fastapi.core_api.security import DagAccessEntity, requires_access_dag
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import FileResponse

from dicom_deid_airflow.report_paths import report_folder

#: Files of a report folder that may be fetched: the report, the verification table and
#: the gates' results. Anything else (or any path) is refused.
SERVED = re.compile(r"^(report\.html|verification\.csv|[a-z_-]+\.json)$")

app = FastAPI(title="dicom-deid run reports", docs_url=None, redoc_url=None,
              openapi_url=None)
_can_read_run = [Depends(requires_access_dag("GET", DagAccessEntity.RUN))]


@app.get("/reports/{dag_id}/{run_id}", dependencies=_can_read_run)
def run_report(dag_id: str, run_id: str) -> FileResponse:
    """The run's HTML report."""
    return run_file(dag_id, run_id, "report.html")


@app.get("/reports/{dag_id}/{run_id}/{name}", dependencies=_can_read_run)
def run_file(dag_id: str, run_id: str, name: str) -> FileResponse:
    """One of the files the run wrote beside its report (table, gate results)."""
    if not SERVED.match(name):
        raise HTTPException(404, f"{name!r} is not a run report file")
    path = report_folder(dag_id, run_id) / name
    if not path.is_file():
        raise HTTPException(404, f"no {name} for run {run_id} of {dag_id}: the report task "
                                 "writes it when the run ends")
    media = {"html": "text/html", "csv": "text/csv", "json": "application/json"}
    return FileResponse(path, media_type=media[name.rsplit(".", 1)[1]])
