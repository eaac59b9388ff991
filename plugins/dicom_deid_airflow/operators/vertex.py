"""The Vertex AI training job of the handoff, with the provider's operator loaded late.

Importing the Google provider's Vertex AI operators loads ``google-cloud-aiplatform``,
which takes 15-20 s here. At parse time that would put the handoff DAG near the DAG
processor's 30 s import timeout, and every worker running any task of the DAG would
pay it again, for a step that is off by default. This operator carries the same
template fields and is built at parse time from Airflow alone; when it runs, it builds
the provider's :class:`CreateCustomJobOperator` from its rendered fields and lets it do
everything: submit, defer to ``CustomJobTrigger``, finish in ``execute_complete``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.google.cloud.links.vertex_ai import VertexAICustomJobLink
from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from airflow.providers.google.cloud.operators.vertex_ai.custom_job import (
        CreateCustomJobOperator,
    )
    from airflow.sdk import Context


class VertexCustomJobOperator(BaseOperator):
    """Create a Vertex AI CustomJob and wait for it (deferrable): the provider's
    ``CreateCustomJobOperator``, imported only when the task runs.

    :param project_id: Google Cloud project (templated).
    :param region: Vertex AI region (templated).
    :param custom_job: the CustomJob body as a dict (templated).
    :param gcp_conn_id: Google Cloud connection (templated).
    :param impersonation_chain: service account(s) to impersonate (templated).
    :param deferrable: free the worker slot while the job runs (default).
    :param poll_interval: seconds between polls of the job.
    """

    template_fields: Sequence[str] = ("project_id", "region", "custom_job", "gcp_conn_id",
                                      "impersonation_chain")
    template_fields_renderers = {"custom_job": "json"}
    operator_extra_links = (VertexAICustomJobLink(),)
    ui_color = "#e8f0fe"

    def __init__(self, *, project_id: str, region: str, custom_job: dict | str,
                 gcp_conn_id: str = "google_cloud_default",
                 impersonation_chain: str | Sequence[str] | None = None,
                 deferrable: bool = True, poll_interval: int = 60, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.project_id = project_id
        self.region = region
        self.custom_job = custom_job
        self.gcp_conn_id = gcp_conn_id
        self.impersonation_chain = impersonation_chain
        self.deferrable = deferrable
        self.poll_interval = poll_interval

    @property
    def extra_links_params(self) -> dict[str, Any]:
        """What the provider's Vertex AI link reads from its operator."""
        return {"region": self.region, "project_id": self.project_id}

    def provider_operator(self) -> CreateCustomJobOperator:
        """The provider's operator, from this task's rendered fields."""
        from airflow.providers.google.cloud.operators.vertex_ai.custom_job import (
            CreateCustomJobOperator,
        )

        return CreateCustomJobOperator(
            task_id=self.task_id, project_id=self.project_id, region=self.region,
            custom_job=self.custom_job, gcp_conn_id=self.gcp_conn_id,
            impersonation_chain=self.impersonation_chain, deferrable=self.deferrable,
            poll_interval=self.poll_interval)

    def execute(self, context: Context) -> Any:
        return self.provider_operator().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Resumed after the trigger (deferral names this method on this task)."""
        return self.provider_operator().execute_complete(context, event)
