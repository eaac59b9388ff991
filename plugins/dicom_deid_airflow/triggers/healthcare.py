"""Trigger that waits for a Cloud Healthcare API long-running operation.

A deferred task frees its worker slot while this trigger polls ``operations.get`` in
the triggerer. Why it is written this way:

- The discovery client is synchronous, so each poll (and building the hook, which reads
  the connection) runs in a thread via ``asyncio.to_thread``: the triggerer's event loop,
  shared by many triggers, is never blocked.
- A trigger may run more than once (a triggerer restart or a redistribution starts it
  again), so ``run()`` only reads: it never submits or changes anything. It yields one
  event, when the operation is done or when polling fails, and returns.
- ``on_kill`` runs only when a user acts on the deferred task (mark failed or success,
  clear): then it asks the API to cancel the operation, the counterpart of the operator's
  ``on_kill``. A triggerer restart does not call it.
- Polls start 1 s apart and double up to ``poll_interval``: a small job is seen done
  within a second or two of finishing, a long one is not polled more than it needs.
- Events carry the operation's name, counts, ``logsUrl`` and the API's error: locations
  and counts only, never DICOM data (events end up in XCom-like storage and logs).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from dicom_deid_airflow.hooks.healthcare import (
    HealthcareHook,
    operation_counter,
    operation_event,
    poll_waits,
)


class HealthcareOperationTrigger(BaseTrigger):
    """Poll a Cloud Healthcare API operation until it is done.

    :param operation_name: ``projects/P/locations/L/datasets/D/operations/ID``.
    :param gcp_conn_id: the connection the hook reads (endpoint, project, credentials).
    :param api_endpoint: overrides the connection's ``api_endpoint`` extra.
    :param impersonation_chain: service account(s) to impersonate (Google endpoint only).
    :param poll_interval: the longest wait between polls (the first is 1 s, then doubles).

    Yields ``{"status": "success" | "error", "operation", "counter": {"success",
    "failure", "pending"}, "logs_url"?, "error"?: {"code", "message"}, "message"}``.
    ``status`` is ``error`` when the operation ended with an error, and also when it could
    not be polled (then there is no ``error`` key: the operation may still be running).
    """

    def __init__(self, operation_name: str, gcp_conn_id: str = "google_cloud_default",
                 api_endpoint: str | None = None,
                 impersonation_chain: str | Sequence[str] | None = None,
                 poll_interval: float = 10.0) -> None:
        super().__init__()
        self.operation_name = operation_name
        self.gcp_conn_id = gcp_conn_id
        self.api_endpoint = api_endpoint
        self.impersonation_chain = impersonation_chain
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Classpath and kwargs: what the triggerer needs to rebuild this trigger."""
        return (
            "dicom_deid_airflow.triggers.healthcare.HealthcareOperationTrigger",
            {
                "operation_name": self.operation_name,
                "gcp_conn_id": self.gcp_conn_id,
                "api_endpoint": self.api_endpoint,
                "impersonation_chain": self.impersonation_chain,
                "poll_interval": self.poll_interval,
            },
        )

    def _hook(self) -> HealthcareHook:
        return HealthcareHook(gcp_conn_id=self.gcp_conn_id,
                              impersonation_chain=self.impersonation_chain,
                              api_endpoint=self.api_endpoint)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the operation is done; yield one event."""
        name = self.operation_name
        try:
            hook = await asyncio.to_thread(self._hook)
            waits = poll_waits(self.poll_interval)
            while True:
                operation = await asyncio.to_thread(hook.get_operation, name)
                if operation.get("done"):
                    event = operation_event(operation)
                    self.log.info("%s", event["message"])
                    yield TriggerEvent(event)
                    return
                counter, wait = operation_counter(operation), next(waits)
                self.log.info("Operation %s running: %d succeeded, %d failed, %d pending; "
                              "next poll in %s s", name, counter["success"],
                              counter["failure"], counter["pending"], wait)
                await asyncio.sleep(wait)
        except Exception as exc:  # one error event, never a crashed trigger
            self.log.error("Polling operation %s failed: %s", name, exc)
            yield TriggerEvent({"status": "error", "operation": name, "counter": {},
                                "message": f"polling operation {name} failed: {exc}"})

    async def on_kill(self) -> None:
        """The user killed the deferred task: cancel the operation (best effort)."""
        try:
            hook = await asyncio.to_thread(self._hook)
            await asyncio.to_thread(hook.cancel_operation, self.operation_name)
        except Exception as exc:
            self.log.warning("Could not cancel operation %s: %s", self.operation_name, exc)
