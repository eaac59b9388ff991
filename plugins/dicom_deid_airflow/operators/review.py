"""The optional human review before export: Airflow 3's Human-in-the-loop approval.

Burned-in text is where automatic checks are weakest, and the field's advice is to look
at the output. When a run asks for it (``require_review``), this task writes the run
report with the sampled before/after pairs, then waits for a person to approve or reject
in Airflow's Required Actions view (the report link is in the request's body).
Rejection or no answer within ``response_timeout`` fails the task, so the run is red and
nothing is exported; the decision and who made it go into the run's report folder.

When the run does not ask for a review the task returns at once: one task in the graph
either way, no branch to reason about.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.exceptions import HITLRejectException, HITLTriggerEventError
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk.exceptions import AirflowFailException

from dicom_deid_airflow.links import run_report_url
from dicom_deid_airflow.report_paths import reports_dir

if TYPE_CHECKING:
    from airflow.sdk import Context

#: The file in the run's report folder that holds the review's outcome.
DECISION_FILE = "review.json"


def _as_bool(value: object) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


class ReviewApprovalOperator(ApprovalOperator):
    """Approve or reject the sampled pairs before export (see the module docstring).

    :param required: whether this run asks for a review (templated: the run's plan).
    :param prepare: called with the context before the request is made; the DAG uses it
        to write the report the reviewer opens.
    """

    template_fields: Sequence[str] = (*ApprovalOperator.template_fields, "required")

    def __init__(self, *, required: bool | str = False,
                 prepare: Any = None,
                 response_timeout: timedelta | None = timedelta(hours=24),
                 **kwargs: Any) -> None:
        super().__init__(fail_on_reject=True, response_timeout=response_timeout, **kwargs)
        self.required = required
        self.prepare = prepare

    def _write(self, context: Context, decision: dict) -> None:
        folder = reports_dir(context["dag"].dag_id, context["run_id"])
        (folder / DECISION_FILE).write_text(json.dumps(decision))

    def execute(self, context: Context) -> Any:
        if not _as_bool(self.required):
            self.log.info("This run did not ask for a review (require_review is off)")
            self._write(context, {"required": False})
            return {"required": False}
        if self.prepare is not None:
            self.prepare(context)
        self._write(context, {"required": True, "decision": "awaiting"})
        url = run_report_url(context["dag"].dag_id, context["run_id"])
        self.body = f"{self.body or ''}\n\nRun report: {url}".strip()
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        user = event.get("responded_by_user") or {}
        decision = {"required": True,
                    "decision": (event.get("chosen_options") or ["timeout"])[0]
                    if "error" not in event else str(event.get("error_type") or "error"),
                    "reviewer": user.get("name") or user.get("id") if isinstance(user, dict)
                    else str(user),
                    "responded_at": str(event.get("responded_at") or "")}
        self._write(context, decision)
        try:
            result = super().execute_complete(context, event)
        except (HITLRejectException, HITLTriggerEventError) as exc:
            # A person's verdict (or their silence) is final: a retry would ask again and
            # overwrite the decision the report shows.
            what = ("rejected the sample" if isinstance(exc, HITLRejectException)
                    else "got no answer in time")
            who = f" (by {decision['reviewer']})" if decision["reviewer"] else ""
            raise AirflowFailException(
                f"the review {what}{who}: nothing is exported") from exc
        return {"required": True, "decision": decision["decision"],
                "reviewer": decision["reviewer"], "chosen_options": result["chosen_options"]}
