"""The operators against the real local server and GCS emulator.

Most tests call ``execute`` with a hand-built context whose only stand-ins are the task
instance's XCom and its task state store (tests/airflow/helpers.py ``context``);
deferral is followed by running the real trigger and calling ``execute_complete`` with
its event, as the triggerer and the worker would. The last test runs a DAG with
``dag.test()`` on a real metadata database, so the retry goes through Airflow 3.3's
``task_state_store``.
"""

from __future__ import annotations

import asyncio
import json
import os
import textwrap
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred
from dicom_deid_airflow.hooks.healthcare import HealthcareApiError, HealthcareHook
from dicom_deid_airflow.links import (
    HealthcareDicomStoreLink,
    HealthcareOperationLink,
    dicom_store_url,
    operation_url,
)
from dicom_deid_airflow.operators.healthcare import (
    OPERATION_KEY,
    HealthcareCreateDicomStoreOperator,
    HealthcareDeidentifyDicomStoreOperator,
    HealthcareDeleteDicomStoreOperator,
    HealthcareExportDicomStoreOperator,
    HealthcareImportDicomStoreOperator,
    load_config,
)
from dicom_deid_airflow.plugin import DicomDeidPlugin
from dicom_deid_airflow.triggers.healthcare import HealthcareOperationTrigger
from pydicom.data import get_testdata_file

from tests.airflow.conftest import LOCATION, PROJECT
from tests.airflow.helpers import BASIC, TaskInstance, context, samples, unique

KEEP_ALL = {"dicom": {"filterProfile": "KEEP_ALL_PROFILE"}}

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def source(hook: HealthcareHook, dataset: str) -> str:
    """A store holding two pydicom samples (CT, MR)."""
    name = hook.create_dicom_store(dataset, unique("src"))["name"]
    hook.dicomweb_client(name).store_instances(samples())
    return name


def new_store(hook: HealthcareHook, dataset: str) -> str:
    return hook.create_dicom_store(dataset, unique("dst"))["name"]


def run_trigger(trigger: HealthcareOperationTrigger) -> dict:
    async def first() -> dict:
        run = trigger.run()
        try:
            return (await asyncio.wait_for(anext(run), timeout=120)).payload
        finally:
            await run.aclose()

    return asyncio.run(first())


def deidentify(source: str, destination: str, **kwargs) -> HealthcareDeidentifyDicomStoreOperator:
    kwargs.setdefault("config", BASIC)
    kwargs.setdefault("deferrable", True)
    return HealthcareDeidentifyDicomStoreOperator(task_id="deidentify", source_store=source,
                                        destination_store=destination, poll_interval=0.05,
                                        **kwargs)


def test_deidentify_defers_then_returns_counts(hook, dataset, source) -> None:
    destination = new_store(hook, dataset)
    ti = TaskInstance("deidentify")
    operator = deidentify(source, destination)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context(ti))
    trigger = deferred.value.trigger
    assert isinstance(trigger, HealthcareOperationTrigger)
    assert deferred.value.method_name == "execute_complete"
    name = trigger.operation_name
    assert name.startswith(f"{dataset}/operations/")
    # Saved before deferring: the operation name and what the links need.
    assert ti.xcom[OPERATION_KEY] == name
    assert ti.xcom[HealthcareOperationLink.key] == {"endpoint": hook.api_endpoint, "name": name}
    assert ti.xcom[HealthcareDicomStoreLink.key] == {"endpoint": hook.api_endpoint,
                                                     "name": destination}

    event = run_trigger(trigger)
    result = operator.execute_complete(context(ti), event)
    assert result == {"operation": name, "success": 2, "failure": 0,
                      "destination": destination}
    assert json.loads(json.dumps(result)) == result  # XCom-safe
    assert hook.count_instances(destination) == 2


def test_config_from_a_json_file_and_non_deferrable_mode(hook, dataset, source) -> None:
    destination = new_store(hook, dataset)
    config = str(REPO / "include" / "configs" / "deid" / "basic.json")
    result = deidentify(source, destination, config=config, deferrable=False).execute(
        context(TaskInstance("deidentify")))
    assert (result["success"], result["failure"]) == (2, 0)
    assert hook.count_instances(destination) == 2


def test_failures_above_the_threshold_fail_with_the_counts(hook, dataset, source) -> None:
    destination = new_store(hook, dataset)
    deidentify(source, destination, deferrable=False).execute(context(TaskInstance("deidentify")))
    # The same source again under another profile: the same UIDs with other bytes, so
    # every instance conflicts with the one already in the destination and fails.
    again = deidentify(source, destination, deferrable=False, config=KEEP_ALL)
    with pytest.raises(AirflowFailException) as err:
        again.execute(context(TaskInstance("deidentify")))
    message = str(err.value)
    assert "2 of 2 instances failed (0 succeeded), more than max_failures=0" in message
    assert f"per-instance reasons: {hook.api_endpoint}/v1/{dataset}/operations/" in message
    assert message.endswith("/failures")
    # Tolerated when the threshold allows it (templated values arrive as strings).
    result = deidentify(source, destination, deferrable=False, max_failures="2",
                        config=KEEP_ALL).execute(context(TaskInstance("deidentify")))
    assert (result["success"], result["failure"]) == (0, 2)


def test_an_operation_error_fails_the_task_naming_it(hook, dataset, source) -> None:
    operator = deidentify(source, new_store(hook, dataset))
    event = {"status": "error", "operation": f"{dataset}/operations/7", "counter": {},
             "error": {"code": 13, "message": "internal error: ValueError"}}
    with pytest.raises(AirflowException,
                       match=f"operation {dataset}/operations/7 failed: internal error: "
                             r"ValueError \(code 13\)"):
        operator.execute_complete(context(TaskInstance("deidentify")), event)


@pytest.mark.parametrize(("code", "final"), [(3, True), (5, True), (7, True), (9, True),
                                             (1, True), (13, False), (14, False),
                                             (10, False)])
def test_only_a_transient_operation_error_is_retried(hook, dataset, source, code: int,
                                                     final: bool) -> None:
    """INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED... would fail a new operation the
    same way: AirflowFailException, no retry. INTERNAL, UNAVAILABLE, ABORTED may not."""
    operator = deidentify(source, new_store(hook, dataset))
    event = {"status": "error", "operation": f"{dataset}/operations/8", "counter": {},
             "error": {"code": code, "message": "nope"}}
    with pytest.raises(AirflowException) as err:
        operator.execute_complete(context(TaskInstance("deidentify")), event)
    assert isinstance(err.value, AirflowFailException) is final


def test_a_retry_reattaches_instead_of_resubmitting(hook, dataset, source) -> None:
    destination = new_store(hook, dataset)
    ti = TaskInstance("deidentify")
    before = len(hook.list_operations(dataset))
    with pytest.raises(TaskDeferred) as deferred:
        deidentify(source, destination).execute(context(ti))
    name = deferred.value.trigger.operation_name
    # That try is lost while deferred; the next one finds the saved operation name.
    ti.try_number = 2
    result = deidentify(source, destination, deferrable=False).execute(context(ti))
    assert result["operation"] == name
    assert (result["success"], result["failure"]) == (2, 0)
    assert len(hook.list_operations(dataset)) == before + 1
    # A saved name the API does not know is dropped and a new operation submitted.
    ti.task_state.set(OPERATION_KEY, f"{dataset}/operations/404")
    fresh = deidentify(source, new_store(hook, dataset), deferrable=False).execute(context(ti))
    assert fresh["operation"] not in (name, f"{dataset}/operations/404")
    assert ti.xcom[OPERATION_KEY] == fresh["operation"]
    assert len(hook.list_operations(dataset)) == before + 2


def test_on_kill_cancels_the_running_operation(hook, dataset, source) -> None:
    """Operator (worker side) and trigger (deferred task) both ask the API to cancel."""
    operator = deidentify(source, new_store(hook, dataset))
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context(TaskInstance("deidentify")))
    operator.on_kill()
    first = hook.get_operation(deferred.value.trigger.operation_name)
    with pytest.raises(TaskDeferred) as deferred:
        deidentify(source, new_store(hook, dataset)).execute(context(TaskInstance("deidentify")))
    trigger = deferred.value.trigger
    asyncio.run(trigger.on_kill())
    second = hook.get_operation(trigger.operation_name)
    for operation in (first, second):  # asked before it finished (spawning workers takes ~1 s)
        assert operation["metadata"].get("cancelRequested") is True
        hook.wait_for_operation(operation["name"], poll_interval=0.05)


def test_export_to_a_bucket(hook, dataset, source, bucket) -> None:
    ti = TaskInstance("export")
    operator = HealthcareExportDicomStoreOperator(task_id="export", store=source,
                                        uri_prefix=f"gs://{bucket.name}/export",
                                        poll_interval=0.05, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context(ti))
    result = operator.execute_complete(context(ti), run_trigger(deferred.value.trigger))
    assert result["success"] == hook.count_instances(source) == 2
    assert result["failure"] == 0
    assert result["uri_prefix"] == f"gs://{bucket.name}/export"
    objects = [b.name for b in bucket.list_blobs(prefix="export/")]
    assert len(objects) == 2 and all(o.endswith(".dcm") for o in objects)
    assert ti.xcom[HealthcareDicomStoreLink.key]["name"] == source


def test_import_from_a_bucket_counts_a_non_dicom_file_as_a_failure(hook, dataset,
                                                                    bucket) -> None:
    for i, path in enumerate(get_testdata_file(n) for n in ("CT_small.dcm", "MR_small.dcm")):
        bucket.blob(f"drop/series/{i}.dcm").upload_from_filename(path)
    bucket.blob("drop/notes.txt").upload_from_string(b"not a DICOM file")
    store = new_store(hook, dataset)
    ti = TaskInstance("import")
    operator = HealthcareImportDicomStoreOperator(task_id="import", store=store,
                                        uri=f"gs://{bucket.name}/drop/**", poll_interval=0.05,
                                        max_failures=1, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context(ti))
    result = operator.execute_complete(context(ti), run_trigger(deferred.value.trigger))
    assert (result["success"], result["failure"]) == (2, 1)
    assert hook.count_instances(store) == 2
    assert ti.xcom[HealthcareDicomStoreLink.key]["name"] == store

    strict = HealthcareImportDicomStoreOperator(task_id="import", store=new_store(hook, dataset),
                                      uri=f"gs://{bucket.name}/drop/**", deferrable=False,
                                      poll_interval=0.05)
    with pytest.raises(AirflowFailException, match=r"1 of 3 instances failed"):
        strict.execute(context(TaskInstance("import")))


def test_create_store_operator_is_idempotent(hook) -> None:
    dataset_id = unique("create")
    ti = TaskInstance("create")
    by_parts = HealthcareCreateDicomStoreOperator(task_id="create", location=LOCATION,
                                        dataset_id=dataset_id, store_id="out")
    name = by_parts.execute(context(ti))
    assert name == f"projects/{PROJECT}/locations/{LOCATION}/datasets/{dataset_id}/dicomStores/out"
    assert ti.xcom[HealthcareDicomStoreLink.key] == {"endpoint": hook.api_endpoint, "name": name}
    by_name = HealthcareCreateDicomStoreOperator(
        task_id="create", dataset_name=name.split("/dicomStores/")[0], store_id="out")
    assert by_name.execute(context(ti)) == name  # empty: reused
    hook.dicomweb_client(name).store_instances(samples()[:1])
    with pytest.raises(AirflowException, match="holds 1 instances"):
        by_name.execute(context(ti))
    overwrite = HealthcareCreateDicomStoreOperator(
        task_id="create", dataset_name=name.split("/dicomStores/")[0], store_id="out",
        overwrite="True")  # as a template renders it
    assert overwrite.execute(context(ti)) == name
    assert hook.count_instances(name) == 0
    with pytest.raises(ValueError, match="dataset_name, or location and dataset_id"):
        HealthcareCreateDicomStoreOperator(task_id="bad", store_id="x")


def test_delete_store_operator(hook, dataset) -> None:
    name = new_store(hook, dataset)
    HealthcareDeleteDicomStoreOperator(task_id="delete", store=name).execute({})
    HealthcareDeleteDicomStoreOperator(task_id="delete", store=name).execute({})  # missing_ok
    with pytest.raises(HealthcareApiError, match="404"):
        HealthcareDeleteDicomStoreOperator(task_id="delete", store=name,
                                           missing_ok=False).execute({})


def test_template_fields_render() -> None:
    context = {"params": {"src": "projects/p/locations/l/datasets/d/dicomStores/a",
                          "dst": "b", "profile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE",
                          "max_failures": 3, "overwrite": True, "bucket": "bk"},
               "run_id": "manual__1"}
    deid = HealthcareDeidentifyDicomStoreOperator(
        task_id="d", source_store="{{ params.src }}",
        destination_store="{{ params.src.rsplit('/', 1)[0] }}/{{ params.dst }}",
        config={"dicom": {"filterProfile": "{{ params.profile }}"}},
        filter_uri="gs://{{ params.bucket }}/{{ run_id }}.txt",
        max_failures="{{ params.max_failures }}", api_endpoint="{{ 'http://x' }}")
    deid.render_template_fields(context)
    assert deid.source_store == "projects/p/locations/l/datasets/d/dicomStores/a"
    assert deid.destination_store == "projects/p/locations/l/datasets/d/dicomStores/b"
    assert deid.config == {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}}
    assert deid.filter_uri == "gs://bk/manual__1.txt"
    assert deid.max_failures == "3" and deid.api_endpoint == "http://x"
    export = HealthcareExportDicomStoreOperator(task_id="e", store="{{ params.src }}",
                                      uri_prefix="gs://{{ params.bucket }}/{{ run_id }}",
                                      mime_type="{{ 'image/png' }}")
    export.render_template_fields(context)
    assert (export.store, export.uri_prefix, export.mime_type) == (
        context["params"]["src"], "gs://bk/manual__1", "image/png")
    create = HealthcareCreateDicomStoreOperator(task_id="c", dataset_name="{{ params.src[:-15] }}",
                                      store_id="{{ params.dst }}",
                                      overwrite="{{ params.overwrite }}")
    create.render_template_fields(context)
    assert (create.store_id, create.overwrite) == ("b", "True")
    for operator in (deid, export, create):
        assert {"gcp_conn_id", "api_endpoint", "impersonation_chain"} <= set(
            operator.template_fields)
        assert operator.ui_color


def test_load_config(tmp_path) -> None:
    (tmp_path / "c.json").write_text(json.dumps(BASIC))
    assert load_config("c.json", [Path("/nonexistent"), tmp_path]) == BASIC
    assert load_config(str(tmp_path / "c.json")) == BASIC
    assert load_config(json.dumps(BASIC)) == BASIC
    assert load_config("gs://b/config.json") == "gs://b/config.json"
    with pytest.raises(AirflowException, match="not found"):
        load_config("missing.json", [tmp_path])
    with pytest.raises(AirflowException, match="tojson"):
        load_config(str(BASIC))  # a dict rendered by Jinja without | tojson


def test_link_urls_and_plugin() -> None:
    store = "projects/my-proj/locations/us-central1/datasets/ds/dicomStores/st"
    operation = "projects/my-proj/locations/us-central1/datasets/ds/operations/123"
    google = "https://healthcare.googleapis.com"
    assert dicom_store_url(google, store) == (
        "https://console.cloud.google.com/healthcare/browser/locations/us-central1/datasets/"
        "ds/dicomStores/st/details/overview?project=my-proj")
    assert operation_url(google, operation) == (
        "https://console.cloud.google.com/healthcare/browser/locations/us-central1/datasets/"
        "ds/operations?project=my-proj")
    assert dicom_store_url("http://127.0.0.1:8080/", store) == f"http://127.0.0.1:8080/v1/{store}"
    assert operation_url("http://h:1", operation) == f"http://h:1/v1/{operation}"
    names = {link.name for link in DicomDeidPlugin.operator_extra_links}
    assert names == {"DICOM store", "Operation", "Run report"}
    assert {link.name for link in HealthcareDeidentifyDicomStoreOperator.operator_extra_links} == (
        names - {"Run report"})  # the DAG adds that one to each of its tasks
    assert all(not link.operators for link in DicomDeidPlugin.operator_extra_links)
    assert [a["url_prefix"] for a in DicomDeidPlugin.fastapi_apps] == ["/dicom-deid"]


DAG_FILE = '''
"""Written by tests/airflow/test_operators.py: one de-identification task, two tries."""
from datetime import datetime, timedelta

from airflow.sdk import DAG

from dicom_deid_airflow.operators.healthcare import HealthcareDeidentifyDicomStoreOperator


class LostAfterTheTrigger(HealthcareDeidentifyDicomStoreOperator):
    """Try 1 dies when it resumes after the trigger fired (a lost worker, say)."""

    def execute_complete(self, context, event):
        if context["ti"].try_number == 1:
            raise RuntimeError("simulated: worker lost after the trigger fired")
        return super().execute_complete(context, event)


with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    LostAfterTheTrigger(task_id="deidentify", source_store={source!r},
                        destination_store={destination!r}, config={config!r},
                        poll_interval=0.1, retries=1, retry_delay=timedelta(0),
                        deferrable=True)
'''


@pytest.fixture(scope="module")
def airflow_db() -> None:
    """The session's metadata database (SQLite in the test AIRFLOW_HOME), created."""
    import tempfile

    from airflow import settings
    from airflow.utils import db

    home = Path(os.environ["AIRFLOW_HOME"]).resolve()
    if not (str(settings.SQL_ALCHEMY_CONN).startswith("sqlite")
            and home.is_relative_to(Path(tempfile.gettempdir()).resolve())):
        pytest.skip("refusing to write test runs into a non-temporary Airflow database")
    db.initdb()


def test_dag_retry_reattaches_through_task_state_store(hook, dataset, source, airflow_db,
                                                        tmp_path, monkeypatch) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.models.task_state_store import TaskStateStoreModel
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    destination = new_store(hook, dataset)
    dag_id = "deid_retry_" + unique("t").replace("-", "_")
    # dag.test() syncs the configured DAG bundles: make this test's folder the only one,
    # so nothing is written to (or parsed from) the project's dags/.
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([{
        "name": "dicom-deid-airflow-tests", "kwargs": {"path": str(tmp_path)},
        "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle"}]))
    path = tmp_path / f"{dag_id}.py"
    path.write_text(textwrap.dedent(DAG_FILE).format(
        dag_id=dag_id, source=source, destination=destination, config=BASIC))
    dag = DagBag(dag_folder=str(path)).get_dag(dag_id)
    before = len(hook.list_operations(dataset))

    run = dag.test()

    assert run.state == "success"
    ti = run.get_task_instance("deidentify")
    assert (ti.state, ti.try_number) == ("success", 2)
    operations = hook.list_operations(dataset)
    assert len(operations) == before + 1  # try 2 reattached: no second submission
    name = operations[0]["name"]
    with create_session() as session:
        xcoms = {x.key: XComModel.deserialize_value(x) for x in session.scalars(
            select(XComModel).where(XComModel.dag_id == dag_id))}
        state = list(session.scalars(select(TaskStateStoreModel).where(
            TaskStateStoreModel.dag_id == dag_id)))
    assert xcoms["return_value"] == {"operation": name, "success": 2, "failure": 0,
                                     "destination": destination}
    assert xcoms[OPERATION_KEY] == name
    # The worker stored each link's URL; the API server reads it back like this.
    assert xcoms["_link_HealthcareDicomStoreLink"] == f"{hook.api_endpoint}/v1/{destination}"
    assert xcoms["_link_HealthcareOperationLink"] == f"{hook.api_endpoint}/v1/{name}"
    task = SerializedDagModel.get_dag(dag_id).get_task("deidentify")
    assert task.get_extra_links(ti, "Operation") == f"{hook.api_endpoint}/v1/{name}"
    # The verdict was reached, so the saved name is gone: clearing the task reruns it.
    assert [row.key for row in state] == []
    assert hook.count_instances(destination) == 2
