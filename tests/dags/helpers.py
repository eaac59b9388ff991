"""What the tests that run ``airflow`` as a subprocess share: the environment and DB."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dicom_deid.devstack import airflow_env
from dicom_deid.gcs import client as gcs_client

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def migrated_airflow(home: Path, server_url: str, gcs_host: str, bucket: str) -> dict:
    """The environment ``make up`` gives Airflow (connection to the local server, the
    emulator, dags/ and plugins/), on a migrated SQLite DB in ``home``, with ``bucket``
    created. Variables set in the caller's environment are left out, so that each test
    says which it sets."""
    env = {k: v for k, v in airflow_env(home, server_url, gcs_host).items()
           if not k.startswith("AIRFLOW_VAR_")}
    env.update({"AIRFLOW__CORE__UNIT_TEST_MODE": "False",  # tests/conftest.py sets it
                "DICOM_DEID_REPORTS": str(home / "reports")})
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True)
    client = gcs_client("test")
    if client.lookup_bucket(bucket) is None:
        client.create_bucket(bucket)
    return env

