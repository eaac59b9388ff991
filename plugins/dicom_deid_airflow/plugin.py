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

from airflow.plugins_manager import AirflowPlugin

from dicom_deid_airflow.links import DicomStoreLink, HealthcareOperationLink, RunReportLink
from dicom_deid_airflow.report_app import URL_PREFIX, app


class DicomDeidPlugin(AirflowPlugin):
    """dicom-deid: extra links to DICOM stores, operations and run reports; the reports."""

    name = "dicom_deid"
    operator_extra_links = [DicomStoreLink(), HealthcareOperationLink(), RunReportLink()]
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "dicom-deid run reports"}]
