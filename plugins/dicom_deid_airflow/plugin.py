"""Registers the package's operator extra links and the run-report app with Airflow.

The operators carry their links themselves (``operator_extra_links``); registering them
here makes the link classes known to every component and listed by ``airflow plugins``,
as Airflow's "define an operator extra link" guide does. The links' ``operators`` lists
stay empty on purpose: a plugin link attached to operators would take precedence over the
URL the worker stored in XCom, and would then be evaluated in the API server, where a
task's XCom accessor is not available. Airflow imports this module from the plugins
folder (and ``plugins/`` is on ``sys.path``, so the package imports by name).

The FastAPI app serves each run's HTML report under ``/dicom-deid/reports/...`` in the
API server, behind Airflow's login; the ``Run report`` link points there.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from dicom_deid_airflow.links import (
    REPORTS_URL_PREFIX,
    HealthcareDicomStoreLink,
    HealthcareOperationLink,
    RunReportLink,
)


class _ReportApp:
    """The run-report app (``report_app.app``), imported at its first request.

    Every task process loads this module (for plugin macros); FastAPI and Airflow's API
    security, which the app needs, would add about 2 s to each. Only the API server
    ever calls this.
    """

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        from dicom_deid_airflow.report_app import app

        await app(scope, receive, send)


class DicomDeidPlugin(AirflowPlugin):
    """dicom-deid: extra links to DICOM stores, operations and run reports; the reports."""

    name = "dicom_deid"
    operator_extra_links = [HealthcareDicomStoreLink(), HealthcareOperationLink(), RunReportLink()]
    fastapi_apps = [{"app": _ReportApp(), "url_prefix": REPORTS_URL_PREFIX,
                     "name": "dicom-deid run reports"}]
