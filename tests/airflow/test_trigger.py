"""HealthcareOperationTrigger run to completion on real operations of the local server."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from airflow.triggers.base import TriggerEvent
from dicom_deid_airflow.hooks.healthcare import HealthcareHook
from dicom_deid_airflow.triggers.healthcare import HealthcareOperationTrigger

from dicom_deid.corpus.burned_instances import burned_instance
from tests.airflow.helpers import BASIC, samples, unique


def first_event(trigger: HealthcareOperationTrigger) -> tuple[TriggerEvent, int]:
    """The trigger's first event, and how often a 10 ms ticker ran meanwhile.

    A ticker that keeps running shows the polls do not block the event loop.
    """

    async def main() -> tuple[TriggerEvent, int]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        run = trigger.run()
        try:
            event = await asyncio.wait_for(anext(run), timeout=120)
        finally:
            done.set()
            await task
            await run.aclose()
        return event, ticks

    return asyncio.run(main())


def test_serialize() -> None:
    trigger = HealthcareOperationTrigger(
        operation_name="projects/p/locations/l/datasets/d/operations/42",
        gcp_conn_id="my_conn", api_endpoint="http://127.0.0.1:8080",
        impersonation_chain=["a@p.iam.gserviceaccount.com"], poll_interval=3.5)
    assert trigger.serialize() == (
        "dicom_deid_airflow.triggers.healthcare.HealthcareOperationTrigger",
        {
            "operation_name": "projects/p/locations/l/datasets/d/operations/42",
            "gcp_conn_id": "my_conn",
            "api_endpoint": "http://127.0.0.1:8080",
            "impersonation_chain": ["a@p.iam.gserviceaccount.com"],
            "poll_interval": 3.5,
        },
    )
    classpath, kwargs = trigger.serialize()
    assert HealthcareOperationTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_success_event_after_a_real_deidentify(hook: HealthcareHook, dataset: str) -> None:
    source = hook.create_dicom_store(dataset, unique("src"))["name"]
    destination = hook.create_dicom_store(dataset, unique("dst"))["name"]
    hook.dicomweb_client(source).store_instances(samples())
    name = hook.deidentify_dicom_store(source, destination, BASIC)
    trigger = HealthcareOperationTrigger(operation_name=name, poll_interval=0.05)
    event, ticks = first_event(trigger)
    assert event.payload == {
        "status": "success",
        "operation": name,
        "counter": {"success": 2, "failure": 0, "pending": 0},
        "logs_url": f"{hook.api_endpoint}/v1/{name}/failures",
        "message": f"operation {name} finished: 2 succeeded, 0 failed",
    }
    assert ticks > 0
    assert hook.count_instances(destination) == 2
    # Running it again (a triggerer restart) changes nothing and gives the same event.
    again, _ = first_event(trigger)
    assert again.payload == event.payload
    assert [o["name"] for o in hook.list_operations(dataset)
            if o["metadata"]["apiMethodName"].endswith("DeidentifyDicomStore")] == [name]


def test_error_event_when_the_operation_failed(hook: HealthcareHook, dataset: str,
                                               bucket) -> None:
    store = hook.create_dicom_store(dataset, unique("imp"))["name"]
    name = hook.import_dicom_store(store, f"gs://{bucket.name}/nothing-here/**")
    event, _ = first_event(HealthcareOperationTrigger(operation_name=name, poll_interval=0.05))
    payload = event.payload
    assert payload["status"] == "error"
    assert payload["operation"] == name
    assert payload["error"]["code"] == 5  # NOT_FOUND, as google.rpc.Code
    assert "no Cloud Storage objects match" in payload["error"]["message"]
    assert payload["message"].startswith(f"operation {name} failed: ")


def test_error_event_for_an_unknown_operation(dataset: str) -> None:
    name = f"{dataset}/operations/999"
    event, _ = first_event(HealthcareOperationTrigger(operation_name=name, poll_interval=0.05))
    payload = event.payload
    assert payload["status"] == "error"
    assert payload["operation"] == name
    assert "error" not in payload  # polling failed; not an operation's own error
    assert "404 NOT_FOUND" in payload["message"] and name in payload["message"]


def test_error_event_when_the_connection_is_missing(dataset: str) -> None:
    trigger = HealthcareOperationTrigger(operation_name=f"{dataset}/operations/1",
                                         gcp_conn_id="no_such_connection")
    event, _ = first_event(trigger)
    assert event.payload["status"] == "error"
    assert "no_such_connection" in event.payload["message"]


def test_polls_start_at_a_second_and_double_up_to_the_interval(hook: HealthcareHook,
                                                               dataset: str) -> None:
    """With poll_interval=60 a job of a few seconds is still seen done within seconds of
    finishing: polls start 1 s apart and double (1, 2, 4 ...), up to poll_interval."""
    source = hook.create_dicom_store(dataset, unique("src"))["name"]
    destination = hook.create_dicom_store(dataset, unique("dst"))["name"]
    # Text burned into ultrasound frames: seconds of OCR (engines loading, then frames).
    hook.dicomweb_client(source).store_instances(
        [burned_instance(70 + i, photometric="RGB").dataset for i in range(3)])
    start = time.monotonic()
    name = hook.deidentify_dicom_store(
        source, destination, {**BASIC, "image": {"textRedactionMode": "REDACT_ALL_TEXT"}})
    event, _ = first_event(HealthcareOperationTrigger(operation_name=name, poll_interval=60))
    elapsed = time.monotonic() - start
    assert event.payload["status"] == "success"
    metadata = hook.get_operation(name)["metadata"]
    took = (datetime.fromisoformat(metadata["endTime"].replace("Z", "+00:00"))
            - datetime.fromisoformat(metadata["createTime"].replace("Z", "+00:00")))
    # The first poll comes within ~0.1 s of submitting: this job was still running then,
    # so a 60 s sleep (the old fixed interval) would show here.
    assert took.total_seconds() > 0.5, "too quick to need a second poll"
    # Done at t; the poll that saw it came at most one doubling later (<= 2t + 1 s).
    assert elapsed <= 2 * took.total_seconds() + 3, (elapsed, took)
