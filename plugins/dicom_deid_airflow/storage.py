"""The Cloud Storage client the tasks use, from the same connection as the Healthcare
API calls.

``STORAGE_EMULATOR_HOST`` set (the local default, tests, the demo): the emulator,
anonymously, as the server itself reaches it. Otherwise the Google provider's
``GCSHook`` on ``gcp_conn_id``, so credentials and impersonation come from the Airflow
connection like everything else the DAG does.
"""

from __future__ import annotations

import os

from google.cloud import storage

from dicom_deid import gcs


def storage_client(gcp_conn_id: str = "google_cloud_default") -> storage.Client:
    """Cloud Storage (through the connection), or the emulator ``STORAGE_EMULATOR_HOST``
    names."""
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return gcs.client()
    from airflow.providers.google.cloud.hooks.gcs import GCSHook  # heavy: only on Google

    return GCSHook(gcp_conn_id=gcp_conn_id).get_conn()
