"""Extra links from a task to the DICOM store and the operation it worked on, and to
its run's report.

On Google the links open the Cloud console; against the local server they open the
resource's REST URL (``{endpoint}/v1/{name}``), which answers with its JSON (an
operation's ``metadata.logsUrl`` lists per-instance failures).

How Airflow 3.3 resolves them: the operator calls ``persist()`` while it runs, which
pushes ``{"endpoint", "name"}`` to XCom under the link's ``key``. When the task
finishes, the task runner calls ``get_link()`` in the worker (which reads that XCom back)
and stores the resulting URL in XCom under ``xcom_key`` (``_link_<class name>``); the API
server shows that stored URL. Only resource names and the endpoint go to XCom: no PHI,
no credentials.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

from dicom_deid_airflow.hooks.healthcare import is_google_endpoint

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey

CONSOLE = "https://console.cloud.google.com/healthcare/browser"
#: Where the API server mounts the run-report app (``report_app``).
REPORTS_URL_PREFIX = "/dicom-deid"


def _parts(name: str) -> dict[str, str]:
    """``projects/P/locations/L/datasets/D/...`` -> {"projects": P, "locations": L, ...}."""
    segments = name.strip("/").split("/")
    return dict(zip(segments[::2], segments[1::2], strict=False))


def dicom_store_url(endpoint: str, store_name: str) -> str:
    """Console page of a DICOM store on Google; its REST URL on any other endpoint."""
    if not is_google_endpoint(endpoint):
        return f"{endpoint.rstrip('/')}/v1/{store_name}"
    p = _parts(store_name)
    return (f"{CONSOLE}/locations/{p['locations']}/datasets/{p['datasets']}/dicomStores/"
            f"{p['dicomStores']}/details/overview?project={quote(p['projects'])}")


def operation_url(endpoint: str, operation_name: str) -> str:
    """The dataset's operations page on Google; the operation's REST URL elsewhere."""
    if not is_google_endpoint(endpoint):
        return f"{endpoint.rstrip('/')}/v1/{operation_name}"
    p = _parts(operation_name)
    return (f"{CONSOLE}/locations/{p['locations']}/datasets/{p['datasets']}/operations"
            f"?project={quote(p['projects'])}")


class _HealthcareLink(BaseOperatorLink):
    """A link built from ``{"endpoint", "name"}`` that the operator persisted to XCom."""

    key: ClassVar[str]

    @classmethod
    def persist(cls, context: Context, *, endpoint: str, name: str) -> None:
        """Remember what the link needs (the Google provider's ``BaseGoogleLink`` pattern)."""
        context["ti"].xcom_push(key=cls.key, value={"endpoint": endpoint, "name": name})

    def url(self, endpoint: str, name: str) -> str:
        raise NotImplementedError

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        value: Any = XCom.get_value(ti_key=ti_key, key=self.key)
        if not isinstance(value, dict) or not value.get("name"):
            return ""
        return self.url(value["endpoint"], value["name"])


class HealthcareDicomStoreLink(_HealthcareLink):
    """The DICOM store the task created, de-identified into or exported."""

    name = "DICOM store"
    key = "healthcare_dicom_store"

    def url(self, endpoint: str, name: str) -> str:
        return dicom_store_url(endpoint, name)


class HealthcareOperationLink(_HealthcareLink):
    """The long-running operation the task started or reattached to."""

    name = "Operation"
    key = "healthcare_operation"

    def url(self, endpoint: str, name: str) -> str:
        return operation_url(endpoint, name)


def run_report_url(dag_id: str, run_id: str) -> str:
    """Where the API server serves a run's report (see ``report_app``).

    Absolute when ``[api] base_url`` is set (Airflow behind a proxy or a path prefix);
    otherwise relative to the UI's origin, which the UI opens in the same tab.
    """
    from airflow.sdk.configuration import conf

    base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    return (f"{base}{REPORTS_URL_PREFIX}/reports/{quote(dag_id, safe='')}/{quote(run_id, safe='')}"
            "/report.html")  # by name, so the page's relative links reach its files


class RunReportLink(BaseOperatorLink):
    """The run's HTML report: counts, config digest, gates, outlined thumbnails.

    Built from the task instance's key alone (DAG and run), so it can sit on any task of
    the run; the DAG puts it on every task, because on-call starts from the one that
    failed. The report is written when the run ends; before that the link answers 404
    with that explanation.
    """

    name = "Run report"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return run_report_url(ti_key.dag_id, ti_key.run_id)


def add_run_report_link(tasks: Iterable[BaseOperator]) -> None:
    """Give each task a ``Run report`` link, beside the links its class defines.

    Set on the instance so that ``@task`` functions get it too; Airflow serializes and
    evaluates a task's links per instance.
    """
    for task in tasks:
        links = tuple(task.operator_extra_links)
        if not any(isinstance(link, RunReportLink) for link in links):
            task.operator_extra_links = (*links, RunReportLink())
