"""HealthcareHook against the real local server (tests/conftest.py ``server``).

The connection ``google_cloud_default`` comes from ``AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT``
(see conftest.py). Requests are counted by wrapping the hook's real HTTP transport, which
still sends every request: nothing is mocked.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from dicom_deid_airflow.hooks.healthcare import (
    DEFAULT_ENDPOINT,
    HealthcareApiError,
    HealthcareHook,
    MetricsNotReady,
    dataset_of,
    is_google_endpoint,
)
from google.auth.credentials import AnonymousCredentials

from dicom_deid.devstack import ServerProcess, free_port
from tests.airflow.conftest import LOCATION, PROJECT
from tests.airflow.helpers import dataset_name, samples, unique


def count_requests(hook: HealthcareHook) -> list[tuple[str, str]]:
    """Record (method, uri) of every request the hook's discovery client sends."""
    http = hook.get_conn()._http
    sent: list[tuple[str, str]] = []
    real = http.request

    def request(uri, method="GET", *args, **kwargs):
        sent.append((method, uri))
        return real(uri, method, *args, **kwargs)

    http.request = request
    return sent


def test_connection_gives_endpoint_project_and_anonymous_credentials(server) -> None:
    hook = HealthcareHook()
    assert hook.api_endpoint == server.url
    assert hook.project_id == PROJECT
    assert not hook.is_google
    assert isinstance(hook.get_credentials(), AnonymousCredentials)
    assert hook.dicomweb_url("projects/p/locations/l/datasets/d/dicomStores/s") == (
        f"{server.url}/v1/projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb")
    # The hook argument wins over the connection; Google's endpoint means real credentials.
    google = HealthcareHook(api_endpoint=DEFAULT_ENDPOINT)
    assert google.is_google and google.api_endpoint == DEFAULT_ENDPOINT


def test_client_is_built_like_the_providers(server, monkeypatch) -> None:
    """GoogleBaseHook's authorized HTTP (user agent) and client options (endpoint;
    universe domain on Google)."""
    import google_auth_httplib2

    hook = HealthcareHook()
    conn = hook.get_conn()
    assert isinstance(conn._http, google_auth_httplib2.AuthorizedHttp)
    assert isinstance(conn._http.credentials, AnonymousCredentials)
    assert conn._baseUrl.startswith(server.url)
    google = HealthcareHook(api_endpoint=DEFAULT_ENDPOINT)
    assert google._client_options().api_endpoint is None  # Google's default: no override
    regional = HealthcareHook(api_endpoint="https://us-central1-healthcare.googleapis.com")
    assert regional._client_options().api_endpoint == regional.api_endpoint
    monkeypatch.setenv("GOOGLE_CLOUD_UNIVERSE_DOMAIN", "example-universe.goog")
    assert google._client_options().universe_domain == "example-universe.goog"
    assert hook._client_options().api_endpoint == server.url  # the local server: as given


def test_endpoint_and_name_helpers() -> None:
    assert is_google_endpoint("https://healthcare.googleapis.com")
    assert is_google_endpoint("https://us-central1-healthcare.googleapis.com/")
    assert not is_google_endpoint("http://127.0.0.1:8080")
    assert not is_google_endpoint("https://googleapis.com.example.org")
    name = "projects/p/locations/l/datasets/d/dicomStores/s"
    assert dataset_of(name) == "projects/p/locations/l/datasets/d"
    assert dataset_of("projects/p/locations/l/datasets/d/operations/1") == dataset_of(name)
    with pytest.raises(ValueError):
        dataset_of("datasets/d")


def test_create_dataset_is_idempotent(hook: HealthcareHook) -> None:
    dataset_id = unique("ds")
    first = hook.create_dataset(PROJECT, LOCATION, dataset_id)
    again = hook.create_dataset(None, LOCATION, dataset_id)  # 409: get and return it
    assert first == again == {"name": dataset_name(dataset_id)}


def test_existing_empty_store_is_reused(hook: HealthcareHook, dataset: str) -> None:
    store_id = unique("st")
    created = hook.create_dicom_store(dataset, store_id)
    sent = count_requests(hook)
    reused = hook.create_dicom_store(dataset, store_id)
    assert created["name"] == reused["name"] == f"{dataset}/dicomStores/{store_id}"
    methods = [m for m, _ in sent]
    assert methods == ["POST", "GET", "GET"]  # create (409), metrics, get


def test_non_empty_store_is_refused_unless_overwrite(hook: HealthcareHook, dataset: str) -> None:
    store_id = unique("st")
    name = hook.create_dicom_store(dataset, store_id)["name"]
    hook.dicomweb_client(name).store_instances(samples())
    assert hook.count_instances(name) == 2
    with pytest.raises(AirflowException, match="holds 2 instances.*overwrite=True"):
        hook.create_dicom_store(dataset, store_id)
    assert hook.count_instances(name) == 2  # nothing was touched
    recreated = hook.create_dicom_store(dataset, store_id, overwrite=True)
    assert recreated["name"] == name
    assert hook.count_instances(name) == 0
    assert hook.get_store_metrics(name)["instanceCount"] == "0"


def test_api_errors_carry_status_and_message(hook: HealthcareHook, dataset: str) -> None:
    with pytest.raises(HealthcareApiError) as err:
        hook.get_dicom_store(f"{dataset}/dicomStores/missing")
    exc = err.value
    assert (exc.code, exc.status) == (404, "NOT_FOUND")
    assert "not found" in exc.api_message
    assert str(exc).startswith(f"get DICOM store {dataset}/dicomStores/missing failed: ")
    assert str(exc).endswith("(404 NOT_FOUND)")
    assert not exc.retryable
    # A request the API refused fails the task at once: Airflow does not retry it.
    assert isinstance(exc, AirflowFailException)
    with pytest.raises(HealthcareApiError) as err:
        hook.create_dicom_store(dataset, "bad id!")
    assert (err.value.code, err.value.status) == (400, "INVALID_ARGUMENT")
    assert isinstance(err.value, AirflowException)
    for text in (str(err.value), repr(err.value)):
        assert "Bearer" not in text and "Authorization" not in text


def test_dicomweb_errors_carry_the_apis_status_and_no_uid(hook: HealthcareHook,
                                                          dataset: str) -> None:
    """requests' own ``HTTPError: 404 ... for url: .../studies/<UID>`` quotes the UID and
    drops the API's message; the hook's session raises the API's status instead."""
    web = hook.dicomweb_client(f"{dataset}/dicomStores/missing")
    with pytest.raises(HealthcareApiError) as err:
        web.search_for_studies(search_filters={"StudyInstanceUID": "1.2.3.4.5.6.7"})
    exc = err.value
    assert (exc.code, exc.status) == (404, "NOT_FOUND") and isinstance(exc, AirflowFailException)
    assert "1.2.3.4.5.6.7" not in str(exc)
    assert str(exc).startswith(f"DICOMweb GET studies of DICOM store {dataset}/dicomStores/"
                               "missing failed:")


def test_a_4xx_is_not_retried(dataset: str) -> None:
    hook = HealthcareHook(num_retries=4)
    sent = count_requests(hook)
    with pytest.raises(HealthcareApiError, match="404"):
        hook.get_operation(f"{dataset}/operations/123")
    assert len(sent) == 1
    with pytest.raises(HealthcareApiError, match="409"):
        hook._execute(hook._datasets().create(
            parent=f"projects/{PROJECT}/locations/{LOCATION}",
            datasetId=dataset.rsplit("/", 1)[1], body={}), "create dataset")
    assert len(sent) == 2


def test_a_connection_error_is_retried_with_backoff() -> None:
    hook = HealthcareHook(api_endpoint=f"http://127.0.0.1:{free_port()}", num_retries=1)
    sent = count_requests(hook)
    with pytest.raises(HealthcareApiError, match="did not answer after 1 retries") as err:
        hook.get_operation("projects/p/locations/l/datasets/d/operations/1")
    assert err.value.code is None and err.value.retryable
    assert len(sent) == 2  # the first attempt and one retry


def test_dicomweb_client_stores_and_searches(hook: HealthcareHook, dataset: str) -> None:
    name = hook.create_dicom_store(dataset, unique("web"))["name"]
    client = hook.dicomweb_client(name)
    assert client.base_url == hook.dicomweb_url(name)
    ct = samples()[0]
    client.store_instances([ct])
    found = client.search_for_instances(search_filters={"SOPInstanceUID": ct.SOPInstanceUID})
    assert [i["00080018"]["Value"][0] for i in found] == [ct.SOPInstanceUID]
    assert hook.count_instances(name) == 1


class LaggingMetricsHook(HealthcareHook):
    """A store whose metrics have not caught up with its writes, as on Google for a few
    minutes after an import: every other call is the real one."""

    def get_store_metrics(self, name: str) -> dict:
        return {"name": name}


def test_metrics_not_ready_is_an_error_and_search_counts(dataset: str) -> None:
    hook = LaggingMetricsHook()
    name = hook.create_dicom_store(dataset, unique("lag"))["name"]
    assert hook.count_instances(name) == 0  # empty: metrics and search agree
    hook.dicomweb_client(name).store_instances(samples())
    with pytest.raises(MetricsNotReady, match="not ready"):
        hook.count_instances(name)
    assert hook.count_instances_by_search(name, page=1) == 2  # paged with offset
    assert hook.instance_count(name) == 2
    with pytest.raises(AirflowException, match=r"holds instances \(found by search\)"):
        hook.create_dicom_store(dataset, name.rsplit("/", 1)[1])


def test_delete_store(hook: HealthcareHook, dataset: str) -> None:
    name = hook.create_dicom_store(dataset, unique("del"))["name"]
    hook.delete_dicom_store(name)
    with pytest.raises(HealthcareApiError, match="404"):
        hook.delete_dicom_store(name)
    hook.delete_dicom_store(name, missing_ok=True)


@pytest.mark.parametrize("fault", ["503/2", "429/3"])
def test_transient_errors_from_the_server_are_retried(tmp_path, fault: str) -> None:
    """A server that answers every 2nd (3rd) request with 503 (429), as Google's front
    ends do under load or quota: every call still succeeds, through retries."""
    server = ServerProcess(tmp_path / "data", free_port(), tmp_path / "server.log",
                           args=["--workers", "1", "--inject-errors", fault]).start()
    try:
        hook = HealthcareHook(api_endpoint=server.url, num_retries=5)
        sent = count_requests(hook)
        dataset = hook.create_dataset(None, LOCATION, unique("faults"))["name"]
        store = hook.create_dicom_store(dataset, unique("st"))["name"]
        hook.dicomweb_client(store).store_instances(samples())
        assert hook.count_instances(store) == 2
        series = hook.dicomweb_client(store).search_for_series()
        assert len(series) == 2
        code = fault.split("/")[0]
        injected = (tmp_path / "server.log").read_text().count(f"injected {code}")
        # Each injected error hit a call that then succeeded: it was retried.
        assert injected >= 3, "the server did not inject errors"
        assert len(sent) >= 4
    finally:
        server.stop()


def test_a_bad_fault_spec_is_refused(tmp_path) -> None:
    run = subprocess.run([sys.executable, "-m", "dicom_deid.cli", "serve", "--inject-errors",
                          "404/2", "--data-dir", str(tmp_path)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2 and "CODE/N" in run.stderr
