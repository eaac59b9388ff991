"""What the tests that run ``airflow`` as a subprocess share: the environment and DB."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from dicom_deid_airflow.manifest import MANIFEST_COLUMNS
from google.cloud import storage
from PIL import Image

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



def write_minimal_export(bucket: storage.Bucket, prefix: str) -> str:
    """One exported PNG and its manifest (the columns ``manifest.build_manifest`` writes,
    the ones the manifest gate requires filled), as a handoff expects; the manifest's URI."""
    png = io.BytesIO()
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8)).save(png, format="PNG")
    name = f"{prefix}/1.2.826.0.1/1.2.826.0.1.2/1.2.826.0.1.2.3.png"
    bucket.blob(name).upload_from_string(png.getvalue(), content_type="image/png")
    row = dict.fromkeys(MANIFEST_COLUMNS)
    row.update(uri=f"gs://{bucket.name}/{name}", study_uid="1.2.826.0.1",
               series_uid="1.2.826.0.1.2", sop_uid="1.2.826.0.1.2.3", size=len(png.getvalue()),
               modality="US", rows=6, columns=8)
    table = io.BytesIO()
    pd.DataFrame([row], columns=list(MANIFEST_COLUMNS)).to_parquet(table, index=False)
    bucket.blob(f"{prefix}/manifest.parquet").upload_from_string(table.getvalue())
    return f"gs://{bucket.name}/{prefix}/manifest.parquet"
