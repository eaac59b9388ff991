"""The training handoff's optional Vertex AI job: configuration, DAG wiring, real runs.

Vertex AI itself is never called (no Google access here, and no HTTP is faked):

- the config tests check ``dicom_deid_airflow.vertex`` and build the job body, which
  is checked against the real ``google.cloud.aiplatform_v1`` ``CustomJob`` message;
- the off run is ``airflow dags test`` with no Variable: the load step runs, the
  Vertex AI task is skipped, the run succeeds;
- the on run sets the Variable (``AIRFLOW_VAR_DICOM_DEID_VERTEX_AI``, the environment
  secrets backend) with a connection that does not exist: the real task runner renders the
  provider operator's templates (XComs of ``vertex_job_spec``) and stores them, then
  the operator stops at the connection lookup, before any Google client exists. The
  stored rendered fields are what the job would have been submitted with.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from dicom_deid_airflow.vertex import (
    ENV_MANIFEST,
    ENV_STATS,
    VARIABLE,
    VertexConfig,
    VertexConfigError,
    custom_job,
    handoff_job,
    parse_config,
)

from dicom_deid.gcs import client as gcs_client
from tests.dags.helpers import AIRFLOW, migrated_airflow, write_minimal_export

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "dags" / "dicom_training_handoff.py"
DAG_ID = "dicom_training_handoff"
BUCKET = "dicom-deid-handoff"
GOOD = {
    "enabled": True, "project_id": "ml-research-42", "region": "europe-west4",
    "container_uri": "europe-docker.pkg.dev/ml-research-42/train/dicom-trainer:1.2",
    "display_name": "chest-us-baseline", "machine_type": "n1-highmem-8",
    "replica_count": 2, "accelerator_type": "NVIDIA_TESLA_T4", "accelerator_count": 1,
    "args": ["--epochs", "3"], "env": {"WANDB_MODE": "offline"},
    "base_output_dir": "gs://ml-research-42-runs/dicom",
    "service_account": "trainer@ml-research-42.iam.gserviceaccount.com",
}


# --- configuration -------------------------------------------------------------------

def test_off_by_default_absent_or_disabled() -> None:
    assert parse_config(None) is None
    assert parse_config("") is None
    # Disabled: the job's keys are not needed...
    assert parse_config('{"enabled": false}') is None
    assert parse_config({**GOOD, "enabled": False}) is None
    # ...and handoff_job then yields nothing to run.
    assert handoff_job("gs://b-1/x/manifest.parquet", None, None) is None


def test_a_good_config_parses_with_defaults() -> None:
    config = parse_config(json.dumps(GOOD))
    assert config == VertexConfig(**{**GOOD, "args": ("--epochs", "3")})
    minimal = parse_config({"enabled": True, "project_id": "p-12345", "region": "us-central1",
                            "container_uri": "gcr.io/p-12345/trainer"})
    assert (minimal.machine_type, minimal.replica_count, minimal.manifest_arg,
            minimal.gcp_conn_id, minimal.display_name) == (
        "n1-standard-4", 1, "--manifest", "google_cloud_default", "dicom-deid-training")


@pytest.mark.parametrize(("change", "message"), [
    ({"project_id": None}, "missing key 'project_id'"),
    ({"container_uri": ""}, "missing key 'container_uri'"),
    ({"machine_typ": "n1-standard-4"}, "unknown key 'machine_typ'"),
    ({"enabled": "yes"}, "'enabled' must be true or false"),
    ({"region": "Europe West"}, "'region' must be a Vertex AI region"),
    ({"project_id": "Patient Name"}, "'project_id' must be a Google Cloud project ID"),
    ({"container_uri": "trainer latest"}, "'container_uri' must be a container image"),
    ({"replica_count": 0}, "'replica_count' must be an integer >= 1"),
    ({"replica_count": True}, "'replica_count' must be an integer >= 1"),
    ({"accelerator_count": 0}, "'accelerator_count' must be >= 1 when 'accelerator_type'"),
    ({"accelerator_type": None}, "'accelerator_type' must be set when 'accelerator_count'"),
    ({"args": "--epochs 3"}, "'args' must be a list of strings"),
    ({"env": {"DB_PASSWORD": "x"}}, "'env' name 'DB_PASSWORD' looks like a secret"),
    ({"env": {ENV_MANIFEST: "gs://x/y"}}, f"'env' name '{ENV_MANIFEST}' is reserved"),
    ({"env": {"1BAD": "x"}}, "'env' name '1BAD' is not an environment variable name"),
    ({"manifest_arg": "manifest"}, "'manifest_arg' must be a flag"),
    ({"base_output_dir": "/tmp/out"}, "'base_output_dir' must be a gs://bucket"),
    ({"service_account": "trainer"}, "'service_account' must be a service account e-mail"),
    ({"display_name": "x" * 129}, "'display_name' must be a string of 1 to 128"),
])
def test_a_bad_config_names_the_key(change: dict, message: str) -> None:
    with pytest.raises(VertexConfigError, match=re.escape(message)) as info:
        parse_config({**GOOD, **change})
    assert VARIABLE in str(info.value)
    # The value is not echoed back: a Variable is free text someone pasted.
    assert "Patient Name" not in str(info.value)


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(VertexConfigError) as info:
        parse_config({"enabled": True, "region": 4, "replica_count": -1})
    text = str(info.value)
    for part in ("missing key 'project_id'", "missing key 'container_uri'", "'region' must",
                 "'replica_count' must"):
        assert part in text


def test_a_typo_fails_even_when_off_and_bad_json_is_named() -> None:
    with pytest.raises(VertexConfigError, match="unknown key 'enable'"):
        parse_config('{"enable": true}')
    with pytest.raises(VertexConfigError, match="not valid JSON"):
        parse_config('{"enabled": true,')
    with pytest.raises(VertexConfigError, match="must be a JSON object"):
        parse_config("[1, 2]")


def test_train_on_vertex_forces_a_run_but_needs_the_settings() -> None:
    with pytest.raises(VertexConfigError, match="train_on_vertex is set"):
        parse_config(None, force=True)
    with pytest.raises(VertexConfigError, match="missing key 'project_id'"):
        parse_config({"enabled": False}, force=True)
    assert parse_config({**GOOD, "enabled": False}, force=True).project_id == "ml-research-42"


def test_the_job_body_is_a_valid_vertex_custom_job_that_reads_the_manifest() -> None:
    from google.cloud.aiplatform_v1.types import CustomJob

    manifest = "gs://exports-1/run-7/manifest.parquet"
    stats = "gs://exports-1/run-7/dataset_stats.json"
    body = custom_job(parse_config(GOOD), manifest, stats)
    job = CustomJob(body)  # the real v1 message: an unknown or mistyped field raises
    chief, workers = job.job_spec.worker_pool_specs
    assert (chief.replica_count, workers.replica_count) == (1, 1)  # 2 = one chief + one
    assert chief.container_spec.image_uri == GOOD["container_uri"]
    assert list(chief.container_spec.args) == ["--epochs", "3", "--manifest", manifest]
    env = {e.name: e.value for e in chief.container_spec.env}
    assert env == {"WANDB_MODE": "offline", ENV_MANIFEST: manifest, ENV_STATS: stats}
    assert chief.machine_spec.machine_type == "n1-highmem-8"
    assert chief.machine_spec.accelerator_count == 1
    assert job.job_spec.base_output_directory.output_uri_prefix == GOOD["base_output_dir"]
    assert job.job_spec.service_account == GOOD["service_account"]
    assert job.display_name == "chest-us-baseline"


def test_manifest_by_environment_only_and_gs_required() -> None:
    config = parse_config({**GOOD, "manifest_arg": None, "replica_count": 1})
    body = custom_job(config, "gs://exports-1/m.parquet", None)
    [pool] = body["job_spec"]["worker_pool_specs"]
    assert pool["container_spec"]["args"] == ["--epochs", "3"]
    assert {"name": ENV_MANIFEST, "value": "gs://exports-1/m.parquet"} in pool[
        "container_spec"]["env"]
    with pytest.raises(VertexConfigError, match="gs:// URI"):
        handoff_job("/local/manifest.parquet", None, GOOD)
    spec = handoff_job("gs://exports-1/m.parquet", None, GOOD)
    assert set(spec) == {"project_id", "region", "gcp_conn_id", "custom_job"}


# --- the DAG -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def handoff_dag():  # noqa: ANN201
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}
    return bag.dags[DAG_ID]


def test_the_vertex_task_is_the_providers_deferrable_operator_fed_by_xcom(handoff_dag) -> None:
    from airflow.providers.google.cloud.operators.vertex_ai.custom_job import (
        CreateCustomJobOperator,
    )
    from airflow.sdk.definitions.xcom_arg import XComArg
    from dicom_deid_airflow.operators.vertex import VertexCustomJobOperator

    job = handoff_dag.get_task("vertex_training_job")
    assert isinstance(job, VertexCustomJobOperator)
    assert job.deferrable and job.retries == 0  # a retry would submit a second job
    assert job.upstream_task_ids == {"vertex_job_spec"}
    assert handoff_dag.get_task("vertex_job_spec").upstream_task_ids == {"load_for_training"}
    # Every field that comes from the run is a template field (else XCom would not
    # resolve into it) and is an XComArg of the deciding task at parse time.
    for name in ("project_id", "region", "gcp_conn_id", "custom_job"):
        assert name in job.template_fields
        assert isinstance(getattr(job, name), XComArg)
    assert handoff_dag.params["train_on_vertex"] is False
    # When it runs, the provider's operator does the work, with the rendered fields.
    rendered = VertexCustomJobOperator(task_id="t", project_id="my-project",
                                       region="us-central1", custom_job={"display_name": "x"},
                                       poll_interval=30)
    provider = rendered.provider_operator()
    assert isinstance(provider, CreateCustomJobOperator)
    assert (provider.project_id, provider.region, provider.custom_job, provider.deferrable,
            provider.poll_interval) == ("my-project", "us-central1", {"display_name": "x"},
                                        True, 30)
    assert rendered.extra_links_params == {"region": "us-central1", "project_id": "my-project"}


def test_parsing_the_handoff_dag_does_not_load_vertex_ai() -> None:
    """google-cloud-aiplatform takes 15-20 s to import: not at parse time."""
    code = ("import sys; sys.path[:0] = ['plugins', 'dags']; import dicom_training_handoff; "
            "print('google.cloud.aiplatform' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "False"


# --- real runs -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory, server, gcs_emulator) -> dict:  # noqa: ANN001
    return migrated_airflow(tmp_path_factory.mktemp("airflow-handoff"), server.url,
                            gcs_emulator.host, BUCKET)


def _export(prefix: str) -> str:
    return write_minimal_export(gcs_client("test").bucket(BUCKET), prefix)


def _airflow(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True,
                          timeout=600)


def _dags_test(env: dict, manifest: str) -> tuple[subprocess.CompletedProcess, str]:
    run = _airflow(env, "dags", "test", DAG_ID, "--dagfile-path", str(DAG_FILE),
                   "--conf", json.dumps({"manifest": manifest}))
    found = re.search(r"DagRun Finished: .*?run_id=([^,\s]+),", run.stdout + run.stderr)
    assert found, run.stdout[-3000:] + run.stderr[-3000:]
    return run, found[1]


def _db(env: dict, run_id: str) -> tuple[dict[str, str], dict[str, dict]]:
    """Task states and rendered template fields of a run, from the run's metadata DB."""
    db = sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db")
    try:
        states = dict(db.execute("select task_id, state from task_instance "
                                 "where dag_id = ? and run_id = ?", (DAG_ID, run_id)))
        rendered = {task: json.loads(fields) for task, fields in db.execute(
            "select task_id, rendered_fields from rendered_task_instance_fields "
            "where dag_id = ? and run_id = ?", (DAG_ID, run_id))}
    finally:
        db.close()
    return states, rendered


def test_without_the_variable_the_vertex_task_is_skipped_and_the_run_succeeds(
        airflow_env) -> None:
    prefix = f"off-{uuid.uuid4().hex[:6]}"
    manifest = _export(prefix)
    run, run_id = _dags_test(airflow_env, manifest)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    states, _ = _db(airflow_env, run_id)
    assert states == {
        "manifest_uris": "success", "gate_manifest": "success", "load_for_training": "success",
        "vertex_job_spec": "success", "vertex_training_job": "skipped"}
    stats = gcs_client("test").bucket(
        BUCKET).blob(f"{prefix}/dataset_stats.json").download_as_bytes()
    assert json.loads(stats)["loaded"] == 1


def test_with_the_variable_the_operator_renders_the_job_on_the_manifest(airflow_env) -> None:
    manifest = _export(f"on-{uuid.uuid4().hex[:6]}")
    stats = manifest.rsplit("/", 1)[0] + "/dataset_stats.json"
    config = {**GOOD, "gcp_conn_id": "vertex_not_configured"}  # no such connection
    # The Variable, as the environment secrets backend holds it (AIRFLOW_VAR_<KEY>):
    # read by the deciding task at run time, like one set with `airflow variables set`.
    env = {**airflow_env, f"AIRFLOW_VAR_{VARIABLE.upper()}": json.dumps(config)}
    run, run_id = _dags_test(env, manifest)
    log = run.stdout + run.stderr
    states, rendered = _db(airflow_env, run_id)
    assert {k: states[k] for k in ("load_for_training", "vertex_job_spec")} == {
        "load_for_training": "success", "vertex_job_spec": "success"}, log[-4000:]
    # The operator ran and stopped where it looks up its connection: no client, no call.
    assert states["vertex_training_job"] == "failed"
    assert "The conn_id `vertex_not_configured` isn't defined" in log
    assert "aiplatform.googleapis.com" not in log

    fields = rendered["vertex_training_job"]
    assert (fields["project_id"], fields["region"], fields["gcp_conn_id"]) == (
        "ml-research-42", "europe-west4", "vertex_not_configured")
    from google.cloud.aiplatform_v1.types import CustomJob

    job = CustomJob(fields["custom_job"])
    assert job.display_name == "chest-us-baseline"
    assert len(job.job_spec.worker_pool_specs) == 2
    for pool in job.job_spec.worker_pool_specs:
        assert pool.container_spec.image_uri == GOOD["container_uri"]
        assert list(pool.container_spec.args) == ["--epochs", "3", "--manifest", manifest]
        container_env = {e.name: e.value for e in pool.container_spec.env}
        assert container_env[ENV_MANIFEST] == manifest and container_env[ENV_STATS] == stats
        assert pool.machine_spec.machine_type == "n1-highmem-8"
        assert pool.machine_spec.accelerator_type.name == "NVIDIA_TESLA_T4"
    assert job.job_spec.base_output_directory.output_uri_prefix == GOOD["base_output_dir"]
