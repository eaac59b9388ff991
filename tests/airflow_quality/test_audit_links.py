"""``audit_log_url``: the Logs Explorer on Google, the local server's entries elsewhere."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests
from dicom_deid_airflow.audit_links import audit_log_url

OP = "projects/my-proj/locations/us-central1/datasets/ds/operations/1234567890"


@pytest.mark.parametrize("endpoint", ["", "https://healthcare.googleapis.com",
                                      "https://healthcare.googleapis.com/"])
def test_google_opens_the_logs_explorer_on_the_operation(endpoint: str) -> None:
    url = audit_log_url(endpoint, OP)
    head, _, project = url.partition("?project=")
    assert project == "my-proj"
    assert head.startswith("https://console.cloud.google.com/logs/query;query=")
    query = unquote(head.split(";query=", 1)[1])
    assert query == (f'protoPayload.serviceName="healthcare.googleapis.com" '
                     f'AND operation.id="{OP}"')
    assert " " not in head and '"' not in head  # encoded, so the link survives copying


def test_local_server_answers_the_entries_itself() -> None:
    url = audit_log_url("http://127.0.0.1:8080/", OP)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
        "http://127.0.0.1:8080/v1/auditLogs/entries")
    assert parse_qs(parts.query) == {"filter": [f'operation.id="{OP}"']}


def test_a_name_without_a_project_gets_no_project_parameter() -> None:
    assert "?project=" not in audit_log_url("", "operations/42")


def test_the_local_link_answers_the_operation_entries(server, healthcare) -> None:
    """Against the session's server: the link is a working read of the trail."""
    datasets = healthcare.projects().locations().datasets()
    op = datasets.create(parent="projects/links/locations/l",
                         datasetId=f"audit-{uuid.uuid4().hex[:8]}", body={}).execute()
    r = requests.get(audit_log_url(server.url, op["name"]), timeout=30)
    assert r.status_code == 200
    [entry] = r.json()["entries"]
    assert entry["operation"] == {"id": op["name"], "producer": "healthcare.googleapis.com",
                                  "first": True}
    assert entry["protoPayload"]["methodName"] == (
        "google.cloud.healthcare.v1.dataset.DatasetService.CreateDataset")
