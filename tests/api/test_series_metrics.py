"""``dicomWeb.studies.getStudyMetrics`` and ``studies.series.getSeriesMetrics`` through
the Google API discovery client against the real local server.

The client builds the URLs from the discovery document that ships with
google-api-python-client, so these tests also pin the paths and the response shapes
(int64 as JSON strings) to Google's published contract.
"""

from __future__ import annotations

import json

import pytest
import requests
from googleapiclient.errors import HttpError
from pydicom.uid import generate_uid

from dicom_deid.devstack import wait_for_operation
from tests.api.dicom_factory import make_instance, to_bytes
from tests.helpers import stow_raw

STUDY_FIELDS = {"study", "blobStorageSizeBytes", "structuredStorageSizeBytes",
                "instanceCount", "seriesCount"}
SERIES_FIELDS = {"series", "blobStorageSizeBytes", "structuredStorageSizeBytes",
                 "instanceCount"}


def _studies(healthcare):
    return healthcare.projects().locations().datasets().dicomStores().dicomWeb().studies()


def _expect_error(request, status: int, grpc_status: str) -> dict:
    with pytest.raises(HttpError) as info:
        request.execute()
    assert info.value.resp.status == status, info.value.content
    err = json.loads(info.value.content)["error"]
    assert (err["code"], err["status"]) == (status, grpc_status)
    assert err["message"]
    return err


@pytest.fixture
def stored(store, dicomweb):
    """Two studies in a new store: A with a two-instance CT series and a one-instance MR
    series, B with one larger CT instance. The bytes of each instance, by series."""
    study_a, study_b = generate_uid(), generate_uid()
    ct_a, mr_a, ct_b = generate_uid(), generate_uid(), generate_uid()
    instances = [
        make_instance(study_a, ct_a, instance_number=1),
        make_instance(study_a, ct_a, instance_number=2, seed=1),
        make_instance(study_a, mr_a, modality="MR"),
        make_instance(study_b, ct_b, rows=32, columns=32),
    ]
    files = [to_bytes(ds) for ds in instances]
    r = stow_raw(dicomweb.base_url, files)
    assert r.status_code == 200, r.text
    sizes: dict[tuple[str, str], list[int]] = {}
    for ds, data in zip(instances, files, strict=True):
        sizes.setdefault((ds.StudyInstanceUID, ds.SeriesInstanceUID), []).append(len(data))
    return {"store": store, "study_a": study_a, "study_b": study_b,
            "ct_a": ct_a, "mr_a": mr_a, "ct_b": ct_b, "sizes": sizes}


def test_study_metrics_shape_and_counts(healthcare, stored):
    store, study = stored["store"], stored["study_a"]
    name = f"{store}/dicomWeb/studies/{study}"
    metrics = _studies(healthcare).getStudyMetrics(study=name).execute()
    assert set(metrics) == STUDY_FIELDS
    assert metrics["study"] == name
    # int64 fields are JSON strings, as in Google's JSON mapping.
    assert all(isinstance(metrics[k], str) for k in STUDY_FIELDS - {"study"})
    assert metrics["seriesCount"] == "2"
    assert metrics["instanceCount"] == "3"
    expected = sum(sum(v) for (st, _), v in stored["sizes"].items() if st == study)
    assert int(metrics["blobStorageSizeBytes"]) == expected
    assert metrics["structuredStorageSizeBytes"] == "0"


def test_series_metrics_shape_and_counts(healthcare, stored):
    store, study, series = stored["store"], stored["study_a"], stored["ct_a"]
    name = f"{store}/dicomWeb/studies/{study}/series/{series}"
    metrics = _studies(healthcare).series().getSeriesMetrics(series=name).execute()
    assert set(metrics) == SERIES_FIELDS
    assert metrics["series"] == name
    assert all(isinstance(metrics[k], str) for k in SERIES_FIELDS - {"series"})
    assert metrics["instanceCount"] == "2"
    assert int(metrics["blobStorageSizeBytes"]) == sum(stored["sizes"][(study, series)])
    assert metrics["structuredStorageSizeBytes"] == "0"


def test_study_and_series_metrics_add_up_to_the_store_metrics(healthcare, stores, stored):
    store = stored["store"]
    total = stores.getDICOMStoreMetrics(name=store).execute()
    studies = _studies(healthcare)
    by_study = [studies.getStudyMetrics(study=f"{store}/dicomWeb/studies/{uid}").execute()
                for uid in (stored["study_a"], stored["study_b"])]
    by_series = [
        studies.series().getSeriesMetrics(
            series=f"{store}/dicomWeb/studies/{st}/series/{se}").execute()
        for st, se in stored["sizes"]
    ]
    for field in ("instanceCount", "blobStorageSizeBytes", "structuredStorageSizeBytes"):
        assert sum(int(m[field]) for m in by_study) == int(total[field]), field
        assert sum(int(m[field]) for m in by_series) == int(total[field]), field
    assert sum(int(m["seriesCount"]) for m in by_study) == int(total["seriesCount"])
    assert len(by_study) == int(total["studyCount"])


def test_metrics_follow_a_deleted_series(healthcare, stores, stored):
    store, study = stored["store"], stored["study_a"]
    studies = _studies(healthcare)
    op = stores.studies().series().delete(
        dicomWebPath=f"studies/{study}/series/{stored['mr_a']}", parent=store).execute()
    assert "error" not in wait_for_operation(healthcare, op["name"])
    metrics = studies.getStudyMetrics(study=f"{store}/dicomWeb/studies/{study}").execute()
    assert (metrics["seriesCount"], metrics["instanceCount"]) == ("1", "2")
    _expect_error(studies.series().getSeriesMetrics(
        series=f"{store}/dicomWeb/studies/{study}/series/{stored['mr_a']}"), 404, "NOT_FOUND")


def test_unknown_study_is_not_found(healthcare, stored):
    err = _expect_error(_studies(healthcare).getStudyMetrics(
        study=f"{stored['store']}/dicomWeb/studies/{generate_uid()}"), 404, "NOT_FOUND")
    assert "study" in err["message"]


def test_unknown_series_is_not_found(healthcare, stored):
    store, study = stored["store"], stored["study_a"]
    series = _studies(healthcare).series()
    _expect_error(series.getSeriesMetrics(
        series=f"{store}/dicomWeb/studies/{study}/series/{generate_uid()}"), 404, "NOT_FOUND")
    # A series that exists, but under another study, is not that study's series.
    _expect_error(series.getSeriesMetrics(
        series=f"{store}/dicomWeb/studies/{study}/series/{stored['ct_b']}"), 404, "NOT_FOUND")
    _expect_error(series.getSeriesMetrics(
        series=f"{store}/dicomWeb/studies/{generate_uid()}/series/{stored['ct_a']}"),
        404, "NOT_FOUND")


def test_unknown_store_is_not_found(healthcare, dataset):
    missing = f"{dataset}/dicomStores/missing-{generate_uid()[-8:]}"
    studies = _studies(healthcare)
    study = generate_uid()
    _expect_error(studies.getStudyMetrics(study=f"{missing}/dicomWeb/studies/{study}"),
                  404, "NOT_FOUND")
    _expect_error(studies.series().getSeriesMetrics(
        series=f"{missing}/dicomWeb/studies/{study}/series/{generate_uid()}"),
        404, "NOT_FOUND")


def test_malformed_uid_is_invalid(healthcare, store):
    _expect_error(_studies(healthcare).getStudyMetrics(
        study=f"{store}/dicomWeb/studies/not-a-uid"), 400, "INVALID_ARGUMENT")


def test_empty_store_has_no_studies(healthcare, store):
    _expect_error(_studies(healthcare).getStudyMetrics(
        study=f"{store}/dicomWeb/studies/{generate_uid()}"), 404, "NOT_FOUND")


def test_metrics_are_read_only(server, stored):
    """The verbs are GET only, as in the discovery document: a POST is refused and does
    not fall through to STOW-RS."""
    url = f"{server.url}/v1/{stored['store']}/dicomWeb/studies/{stored['study_a']}"
    r = requests.post(f"{url}:getStudyMetrics", data=b"")
    assert r.status_code == 405
    assert r.json()["error"]["code"] == 405


def test_series_metrics_size_the_cost_estimate(healthcare, stores, stored):
    """The cost estimate sizes each route from getSeriesMetrics answers (no instance is
    retrieved); those sizes add up to the store's own metrics."""
    from dicom_deid_airflow.cost import RouteSize

    store = stored["store"]
    series = _studies(healthcare).series()
    modality = {stored["ct_a"]: "CT", stored["mr_a"]: "MR", stored["ct_b"]: "CT"}
    size = RouteSize.from_series_metrics(
        (modality[se], series.getSeriesMetrics(
            series=f"{store}/dicomWeb/studies/{st}/series/{se}").execute())
        for st, se in stored["sizes"])
    total = stores.getDICOMStoreMetrics(name=store).execute()
    assert size.bytes == int(total["blobStorageSizeBytes"])
    assert size.instances == int(total["instanceCount"])
    assert size.series == int(total["seriesCount"])
    assert size.modalities == {"CT": 2, "MR": 1}
