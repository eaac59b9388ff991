"""Extra links from a task to the DICOM store and the operation it worked on.

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

from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

from dicom_deid_airflow.hooks.healthcare import is_google_endpoint

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey

CONSOLE = "https://console.cloud.google.com/healthcare/browser"


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


class DicomStoreLink(_HealthcareLink):
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
