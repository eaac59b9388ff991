"""docker-compose.yaml: valid for Compose (no Docker engine here, so `config` is what
can run), Airflow's Celery layout, and wired to the local server and GCS emulator
through the same connection and variables a Google Cloud deployment uses."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yaml"
AIRFLOW = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker",
           "airflow-triggerer", "airflow-init")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_parses_with_docker_compose() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("Debian docker-compose is not installed (make setup installs it)")
    run = subprocess.run([tool, "-f", str(COMPOSE), "config", "-q"], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr


def test_airflow_layout_and_backends_are_wired_by_connection(compose: dict) -> None:
    services = compose["services"]
    assert set(AIRFLOW) | {"postgres", "redis", "healthcare-api", "gcs-emulator"} <= set(services)
    for name in AIRFLOW:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        conn = json.loads(env["AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT"])
        endpoint = urlparse(conn["extra"]["api_endpoint"])
        assert endpoint.hostname == "healthcare-api"
        assert f"--port {endpoint.port}" in " ".join(services["healthcare-api"]["command"])
        gcs = urlparse(env["STORAGE_EMULATOR_HOST"])
        assert gcs.hostname == "gcs-emulator"
        emulator = " ".join(services["gcs-emulator"]["command"])
        assert f"-port {gcs.port}" in emulator and "fake-gcs-server" in emulator
        assert "/data/dicom-deid-export" in emulator  # the export bucket, from the start
        assert "./dags:/opt/airflow/dags" in services[name]["volumes"]
        assert "./plugins:/opt/airflow/plugins" in services[name]["volumes"]


def test_every_published_port_is_on_loopback_only(compose: dict) -> None:
    """The local server and the emulator check no credentials, and Airflow's login is
    airflow/airflow until changed: every port is bound to the host's loopback, never to
    every interface."""
    published = {name: s["ports"] for name, s in compose["services"].items() if s.get("ports")}
    assert {"healthcare-api", "gcs-emulator", "airflow-apiserver"} <= set(published), published
    for name, ports in published.items():
        for port in ports:
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)


def test_init_creates_the_healthcare_api_pool_that_the_dags_name(compose: dict) -> None:
    """The pool of ``dicom_deid.pools``, with its slots and counting deferred tasks."""
    from dicom_deid.pools import pool_command

    script = "\n".join(compose["services"]["airflow-init"]["command"])
    expected = pool_command()
    assert f'airflow pools set {expected[3]} {expected[4]} "{expected[5]}" ' \
           "--include-deferred" in script
