"""Pieces the de-identification DAGs wire the same way, so they have one home: the run
report's setup and teardown tasks, and one de-identification operator per route.

Called inside a ``with DAG(...)`` block, each adds its tasks to that DAG; the DAG files
keep only what differs between them (params, schedule, the plan and the gates).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import Param, task

from dicom_deid_airflow.configs import profile_descriptions, profiles
from dicom_deid_airflow.operators.healthcare import (
    HEALTHCARE_POOL,
    HealthcareDeidentifyDicomStoreOperator,
)
from dicom_deid_airflow.routing import ROUTES
from dicom_deid_airflow.run_record import CALLBACKS

#: Every task: an owner on-call can find, retries for transient faults only (every
#: deterministic error raises AirflowFailException, which Airflow does not retry), and
#: the callbacks that record each outcome for the run report.
DEFAULT_ARGS = {"owner": "data-platform", "retries": 2, "retry_delay": timedelta(seconds=30),
                **CALLBACKS}
#: The store ``make up`` seeds, the form's default source.
DEMO_SOURCE = "projects/demo/locations/local/datasets/demo/dicomStores/source"


def source_store_param(description: str) -> Param:
    """The trigger form's source store field."""
    return Param(DEMO_SOURCE, type="string", title="Source DICOM store",
                 description=description)


def profile_param(default: str, description: str) -> Param:
    """The trigger form's profile dropdown: each shipped profile with its line from
    ``profiles.yaml``."""
    return Param(default, type="string", enum=profiles(),
                 values_display=profile_descriptions(), title="De-identification profile",
                 description=description)


def open_report(gcp_conn_id: str) -> Any:
    """The setup task ``open_report``: the run's report page exists from the start
    (on-call never meets a 404), and the teardown runs whatever happens between."""

    @task(task_id="open_report", retries=0)
    def open_report(params: dict | None = None) -> str:
        """Setup: the run's report page, with the params and an in-progress banner."""
        from dicom_deid_airflow.run_report import open_run_report
        from dicom_deid_airflow.steps import RunRef

        return open_run_report(params or {}, RunRef.current(gcp_conn_id))

    return open_report()


def report(gcp_conn_id: str) -> Any:
    """The teardown task ``report``: the report completed whatever happened (status
    banner, failed task and its error, params, resources, durations, gates, cost,
    audit trail, before/after pairs); a destination store this run created and left
    empty is deleted when it failed."""

    @task(task_id="report", retries=0)
    def report() -> dict:
        """Teardown: the run report completed, whatever happened upstream."""
        from airflow.sdk import get_current_context

        from dicom_deid_airflow.run_report import write_run_report
        from dicom_deid_airflow.steps import RunRef

        return write_run_report(get_current_context(), RunRef.current(gcp_conn_id),
                                final=True)

    return report()


def deidentify_routes(plan: Any, routes: Any, gcp_conn_id: str,
                      **kwargs: Any) -> dict[str, HealthcareDeidentifyDicomStoreOperator]:
    """``deidentify_<route>`` for each route: the plan's stores, the route's config and
    filter (``routes["<route>_config"]``, ``routes["<route>_filter_uri"]``, XComArgs),
    deferrable, in the ``healthcare_api`` pool; ``kwargs`` add to every one."""
    return {
        name: HealthcareDeidentifyDicomStoreOperator(
            task_id=f"deidentify_{name}",
            source_store=plan["source_store"],
            destination_store=plan["destination_store"],
            max_failures=plan["max_failures"],
            config=routes[f"{name}_config"],
            filter_uri=routes[f"{name}_filter_uri"],
            gcp_conn_id=gcp_conn_id,
            pool=HEALTHCARE_POOL,
            deferrable=True,
            **kwargs,
        )
        for name in ROUTES
    }
