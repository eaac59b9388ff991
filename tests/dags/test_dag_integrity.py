"""The DAG folder parses as the scheduler would parse it: no import errors, no
warnings, no network at parse time, and what on-call needs to read a failed run."""

from __future__ import annotations

import socket
import warnings
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag(monkeypatch_module):  # noqa: ANN201
    from airflow.dag_processing.dagbag import DagBag

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bag = DagBag(dag_folder=str(DAGS))
    bag.parse_warnings = [w for w in caught if str(DAGS) in str(w.filename)]
    return bag


@pytest.fixture(scope="module")
def monkeypatch_module():  # noqa: ANN201
    """No network while parsing: a DAG file that calls out at import fails here."""
    mp = pytest.MonkeyPatch()

    def refuse(*args, **kwargs):
        raise OSError("network access while parsing DAGs")

    mp.setattr(socket.socket, "connect", refuse)
    yield mp
    mp.undo()


def test_no_import_errors_or_warnings(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert dagbag.parse_warnings == []
    assert {"dicom_deidentify", "dicom_training_handoff"} <= set(dagbag.dag_ids)


def test_dags_say_who_owns_them_and_what_they_do(dagbag) -> None:
    for dag_id in dagbag.dag_ids:
        dag = dagbag.dags[dag_id]
        assert dag.tags, dag_id
        assert dag.doc_md, dag_id
        for t in dag.tasks:
            assert t.owner and t.owner != "airflow", (dag_id, t.task_id)


def test_trigger_form_offers_the_shipped_profiles(dagbag) -> None:
    dag = dagbag.dags["dicom_deidentify"]
    profile = dag.params.get_param("profile")
    shipped = sorted(p.stem for p in (DAGS.parent / "include" / "configs" / "deid").glob("*.json"))
    assert profile.schema["enum"] == shipped
    assert {"source_store", "destination_store_id", "study_uids", "sample_size",
            "export_prefix", "export_mime_type", "overwrite"} <= set(dag.params.keys())


def test_every_deidentify_task_links_to_the_run_report(dagbag) -> None:
    """On-call opens the report from whichever task they are looking at; the link also
    survives serialization (what the API server reads)."""
    from airflow.serialization.serialized_objects import OperatorSerialization

    dag = dagbag.dags["dicom_deidentify"]
    assert len(dag.tasks) >= 10
    for task in dag.tasks:
        links = OperatorSerialization.serialize_operator(task).get("_operator_extra_links")
        assert "Run report" in (links or {}), task.task_id


def test_the_incremental_dag_is_scheduled_and_its_runs_never_overlap(dagbag) -> None:
    dag = dagbag.dags["dicom_deidentify_incremental"]
    assert dag.timetable.expression == "0 0 * * *"  # @daily
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    assert dag.params["profile"] == "longitudinal"


def test_every_healthcare_api_operation_takes_a_slot_of_the_pool(dagbag) -> None:
    from dicom_deid_airflow.operators.healthcare import HealthcareOperationOperator

    from dicom_deid.pools import HEALTHCARE_POOL

    operations = [(dag_id, t) for dag_id, dag in dagbag.dags.items() for t in dag.tasks
                  if isinstance(t, HealthcareOperationOperator)]
    assert len(operations) >= 6
    assert [(d, t.task_id) for d, t in operations if t.pool != HEALTHCARE_POOL] == []


def test_the_schedule_comes_from_the_variable_when_set(monkeypatch) -> None:  # noqa: ANN001
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AIRFLOW_VAR_DICOM_DEID_INCREMENTAL_SCHEDULE", "0 2 * * *")
    bag = DagBag(dag_folder=str(DAGS / "dicom_deidentify_incremental.py"))
    assert bag.import_errors == {}
    assert bag.dags["dicom_deidentify_incremental"].timetable.expression == "0 2 * * *"
