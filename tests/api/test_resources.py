"""Datasets, DICOM stores and operations through the Google API discovery client."""

from __future__ import annotations

import json
import uuid

import pytest
import requests
from googleapiclient.errors import HttpError

from dicom_deid.devstack import wait_for_operation
from tests.api.dicom_factory import make_instance, to_bytes
from tests.helpers import PARENT, stow_raw


def _id(prefix: str = "ds") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _error(exc: HttpError) -> dict:
    return json.loads(exc.content)["error"]


def _expect_error(request, status: int, grpc_status: str) -> dict:
    """Execute ``request``; it must fail with ``status`` and ``error.status``."""
    with pytest.raises(HttpError) as info:
        request.execute()
    assert info.value.resp.status == status, info.value.content
    err = _error(info.value)
    assert err["code"] == status
    assert err["status"] == grpc_status
    assert err["message"]
    return err


# -- datasets ---------------------------------------------------------------------


def test_dataset_create_get_delete(datasets):
    ds_id = _id()
    name = f"{PARENT}/datasets/{ds_id}"
    created = datasets.create(parent=PARENT, datasetId=ds_id, body={}).execute()
    # As on Google: a long-running operation, done, whose response is the dataset.
    assert created["name"].startswith(f"{name}/operations/") and created["done"] is True
    assert created["response"] == {"@type": "type.googleapis.com/google.cloud.healthcare.v1."
                                            "dataset.Dataset", "name": name}
    assert created["metadata"]["apiMethodName"].endswith("DatasetService.CreateDataset")
    fetched = datasets.operations().get(name=created["name"]).execute()
    assert (fetched["done"], fetched["response"]) == (True, created["response"])
    assert datasets.get(name=name).execute()["name"] == name

    assert datasets.delete(name=name).execute() == {}
    err = _expect_error(datasets.get(name=name), 404, "NOT_FOUND")
    assert ds_id in err["message"]
    # Deleting again is a 404 too, and the ID can be used again.
    _expect_error(datasets.delete(name=name), 404, "NOT_FOUND")
    again = datasets.create(parent=PARENT, datasetId=ds_id, body={}).execute()
    assert again["response"]["name"] == name
    datasets.delete(name=name).execute()


def test_dataset_time_zone_is_kept(datasets):
    ds_id = _id()
    name = f"{PARENT}/datasets/{ds_id}"
    created = datasets.create(parent=PARENT, datasetId=ds_id,
                              body={"timeZone": "Europe/Paris"}).execute()
    try:
        assert {k: v for k, v in created["response"].items() if k != "@type"} == {
            "name": name, "timeZone": "Europe/Paris"}
        assert datasets.get(name=name).execute()["timeZone"] == "Europe/Paris"
    finally:
        datasets.delete(name=name).execute()


def test_dataset_create_twice_is_already_exists(datasets, new_dataset):
    ds_id = new_dataset.rsplit("/", 1)[1]
    err = _expect_error(datasets.create(parent=PARENT, datasetId=ds_id, body={}),
                        409, "ALREADY_EXISTS")
    assert ds_id in err["message"]
    # The first one is untouched.
    assert datasets.get(name=new_dataset).execute()["name"] == new_dataset


def test_dataset_list_pages_through_everything(datasets):
    prefix = f"pg-{uuid.uuid4().hex[:8]}"
    mine = [f"{PARENT}/datasets/{prefix}-{i}" for i in range(5)]
    for name in mine:
        datasets.create(parent=PARENT, datasetId=name.rsplit("/", 1)[1], body={}).execute()
    try:
        seen: list[str] = []
        pages = 0
        token = None
        while True:
            resp = datasets.list(parent=PARENT, pageSize=2, pageToken=token).execute()
            page = [d["name"] for d in resp.get("datasets", [])]
            assert len(page) <= 2
            seen.extend(page)
            pages += 1
            token = resp.get("nextPageToken")
            if not token:
                break
        assert pages >= 3
        assert len(seen) == len(set(seen)), "a dataset was listed on two pages"
        assert set(mine) <= set(seen)

        # The client's own paging helper walks the same pages.
        via_next: list[str] = []
        req = datasets.list(parent=PARENT, pageSize=3)
        while req is not None:
            resp = req.execute()
            via_next.extend(d["name"] for d in resp.get("datasets", []))
            req = datasets.list_next(req, resp)
        assert via_next == seen

        everything = datasets.list(parent=PARENT).execute()
        assert "nextPageToken" not in everything
        assert [d["name"] for d in everything["datasets"]] == seen
    finally:
        for name in mine:
            datasets.delete(name=name).execute()


def test_dataset_list_rejects_bad_paging(datasets):
    _expect_error(datasets.list(parent=PARENT, pageSize=-1), 400, "INVALID_ARGUMENT")
    _expect_error(datasets.list(parent=PARENT, pageToken="not-a-token"), 400,
                  "INVALID_ARGUMENT")


def test_dataset_get_unknown_is_not_found(datasets):
    _expect_error(datasets.get(name=f"{PARENT}/datasets/{_id('missing')}"), 404, "NOT_FOUND")


def test_dataset_delete_removes_its_stores(server, datasets, stores):
    ds_id = _id()
    ds_name = f"{PARENT}/datasets/{ds_id}"
    datasets.create(parent=PARENT, datasetId=ds_id, body={}).execute()
    store = f"{ds_name}/dicomStores/st"
    stores.create(parent=ds_name, dicomStoreId="st", body={}).execute()
    inst = make_instance()
    r = stow_raw(f"{server.url}/v1/{store}/dicomWeb", [to_bytes(inst)])
    assert r.status_code == 200, r.text

    datasets.delete(name=ds_name).execute()
    _expect_error(stores.get(name=store), 404, "NOT_FOUND")
    _expect_error(stores.list(parent=ds_name), 404, "NOT_FOUND")

    # A dataset created again under the same ID starts empty: no store, no instance.
    datasets.create(parent=PARENT, datasetId=ds_id, body={}).execute()
    try:
        assert stores.list(parent=ds_name).execute().get("dicomStores", []) == []
        stores.create(parent=ds_name, dicomStoreId="st", body={}).execute()
        metrics = stores.getDICOMStoreMetrics(name=store).execute()
        assert metrics["instanceCount"] == "0"
        r = requests.get(f"{server.url}/v1/{store}/dicomWeb/studies/{inst.StudyInstanceUID}",
                         headers={"Accept": 'multipart/related; type="application/dicom"'})
        assert r.status_code == 404
    finally:
        datasets.delete(name=ds_name).execute()


@pytest.mark.parametrize("bad", ["a/b", "..", ".", "x" * 257, "a b", "a:b", "ü\u0301"])
def test_dataset_invalid_id_is_refused(datasets, bad):
    err = _expect_error(datasets.create(parent=PARENT, datasetId=bad, body={}),
                        400, "INVALID_ARGUMENT")
    assert "dataset ID" in err["message"]


def test_dataset_id_is_required(datasets):
    _expect_error(datasets.create(parent=PARENT, body={}), 400, "INVALID_ARGUMENT")


def test_dataset_longest_id_is_accepted(datasets):
    ds_id = "y" * 256
    name = f"{PARENT}/datasets/{ds_id}"
    created = datasets.create(parent=PARENT, datasetId=ds_id, body={}).execute()
    assert created["response"]["name"] == name
    try:
        assert datasets.get(name=name).execute()["name"] == name
    finally:
        datasets.delete(name=name).execute()


@pytest.mark.parametrize("ds_id", ["données-ü", "データ_1", "набор.2", "٣٤"])
def test_dataset_unicode_letters_and_digits_are_allowed(datasets, ds_id):
    name = f"{PARENT}/datasets/{ds_id}-{uuid.uuid4().hex[:6]}"
    created = datasets.create(parent=PARENT, datasetId=name.rsplit("/", 1)[1],
                              body={}).execute()
    try:
        assert created["response"]["name"] == name
        assert datasets.get(name=name).execute()["name"] == name
        listed = [d["name"] for d in datasets.list(parent=PARENT, pageSize=1000)
                  .execute()["datasets"]]
        assert name in listed
    finally:
        datasets.delete(name=name).execute()


def test_dataset_dot_segments_in_a_path_are_refused(datasets):
    # Through the client, ".." travels as a path segment of the resource name.
    _expect_error(datasets.get(name=f"{PARENT}/datasets/.."), 400, "INVALID_ARGUMENT")


@pytest.mark.parametrize("segment", ["%2e%2e", "%2E%2E", ".%2e", "a%2Fb", "a%2fb", "%2F"])
def test_dataset_encoded_traversal_in_raw_url_is_refused(server, segment):
    url = f"{server.url}/v1/{PARENT}/datasets/{segment}"
    for suffix, method in (("", "GET"), ("", "DELETE"), ("/dicomStores", "GET")):
        req = requests.Request(method, url + suffix).prepare()
        req.url = url + suffix  # keep the encoding exactly as written: requests would undo it
        r = requests.Session().send(req)
        assert r.status_code == 400, (method, suffix, r.status_code, r.text)
        assert r.json()["error"]["status"] == "INVALID_ARGUMENT"


# -- DICOM stores -----------------------------------------------------------------


def test_store_create_get_list_delete(stores, new_dataset):
    ids = sorted(_id("st") for _ in range(3))
    for i, store_id in enumerate(ids):
        created = stores.create(parent=new_dataset, dicomStoreId=store_id,
                                body={"labels": {"team": "imaging", "n": str(i)}}).execute()
        assert created == {"name": f"{new_dataset}/dicomStores/{store_id}",
                           "labels": {"team": "imaging", "n": str(i)}}
    got = stores.get(name=f"{new_dataset}/dicomStores/{ids[1]}").execute()
    assert got["labels"] == {"team": "imaging", "n": "1"}

    listed = stores.list(parent=new_dataset).execute()
    assert [s["name"].rsplit("/", 1)[1] for s in listed["dicomStores"]] == ids
    page1 = stores.list(parent=new_dataset, pageSize=2).execute()
    page2 = stores.list(parent=new_dataset, pageSize=2,
                        pageToken=page1["nextPageToken"]).execute()
    assert [s["name"] for s in page1["dicomStores"] + page2["dicomStores"]] == [
        s["name"] for s in listed["dicomStores"]]
    assert "nextPageToken" not in page2

    assert stores.delete(name=f"{new_dataset}/dicomStores/{ids[0]}").execute() == {}
    _expect_error(stores.get(name=f"{new_dataset}/dicomStores/{ids[0]}"), 404, "NOT_FOUND")
    _expect_error(stores.delete(name=f"{new_dataset}/dicomStores/{ids[0]}"), 404, "NOT_FOUND")
    remaining = stores.list(parent=new_dataset).execute()["dicomStores"]
    assert [s["name"].rsplit("/", 1)[1] for s in remaining] == ids[1:]


def test_store_without_labels_has_none(stores, new_dataset):
    created = stores.create(parent=new_dataset, dicomStoreId="plain", body={}).execute()
    assert created == {"name": f"{new_dataset}/dicomStores/plain"}


def test_store_create_twice_is_already_exists(stores, store):
    parent, _, store_id = store.rpartition("/dicomStores/")
    err = _expect_error(stores.create(parent=parent, dicomStoreId=store_id, body={}),
                        409, "ALREADY_EXISTS")
    assert store_id in err["message"]


def test_store_in_missing_dataset_is_not_found(stores):
    parent = f"{PARENT}/datasets/{_id('missing')}"
    _expect_error(stores.create(parent=parent, dicomStoreId="s", body={}), 404, "NOT_FOUND")
    _expect_error(stores.list(parent=parent), 404, "NOT_FOUND")


@pytest.mark.parametrize("bad", ["a/b", "..", "x" * 257, "sp ace"])
def test_store_invalid_id_is_refused(stores, dataset, bad):
    err = _expect_error(stores.create(parent=dataset, dicomStoreId=bad, body={}),
                        400, "INVALID_ARGUMENT")
    assert "DICOM store ID" in err["message"]


@pytest.mark.parametrize("labels", [["a"], {"k": 1}, {f"k{i}": "v" for i in range(65)}])
def test_store_invalid_labels_are_refused(stores, dataset, labels):
    store_id = _id("st")
    _expect_error(stores.create(parent=dataset, dicomStoreId=store_id,
                                body={"labels": labels}), 400, "INVALID_ARGUMENT")
    _expect_error(stores.get(name=f"{dataset}/dicomStores/{store_id}"), 404, "NOT_FOUND")


def test_store_patch_labels(stores, store):
    patched = stores.patch(name=store, updateMask="labels",
                           body={"labels": {"env": "test", "owner": "qa"}}).execute()
    assert patched == {"name": store, "labels": {"env": "test", "owner": "qa"}}
    assert stores.get(name=store).execute()["labels"] == {"env": "test", "owner": "qa"}

    # The mask replaces the whole map; an empty map clears it.
    stores.patch(name=store, updateMask="labels", body={"labels": {"env": "prod"}}).execute()
    assert stores.get(name=store).execute()["labels"] == {"env": "prod"}
    cleared = stores.patch(name=store, updateMask="labels", body={"labels": {}}).execute()
    assert "labels" not in cleared
    assert "labels" not in stores.get(name=store).execute()


def test_store_patch_needs_a_supported_mask(stores, store):
    _expect_error(stores.patch(name=store, body={"labels": {"a": "b"}}), 400,
                  "INVALID_ARGUMENT")
    _expect_error(stores.patch(name=store, updateMask="name",
                               body={"labels": {"a": "b"}}), 400, "INVALID_ARGUMENT")
    assert "labels" not in stores.get(name=store).execute()


def test_store_patch_unknown_is_not_found(stores, dataset):
    _expect_error(stores.patch(name=f"{dataset}/dicomStores/{_id('missing')}",
                               updateMask="labels", body={"labels": {}}), 404, "NOT_FOUND")


def test_store_metrics_count_what_was_stored(stores, store, dicomweb):
    empty = stores.getDICOMStoreMetrics(name=store).execute()
    assert empty["name"] == store
    assert (empty["studyCount"], empty["seriesCount"], empty["instanceCount"]) == ("0", "0", "0")
    assert empty["blobStorageSizeBytes"] == "0"

    study_a, study_b = make_instance().StudyInstanceUID, make_instance().StudyInstanceUID
    series_a1 = make_instance().SeriesInstanceUID
    instances = [
        make_instance(study_a, series_a1, instance_number=1),
        make_instance(study_a, series_a1, instance_number=2),
        make_instance(study_a, modality="MR"),
        make_instance(study_b, rows=16, columns=16),
    ]
    files = [to_bytes(ds) for ds in instances]
    r = stow_raw(dicomweb.base_url, files)
    assert r.status_code == 200, r.text
    assert len(r.json()["00081199"]["Value"]) == 4

    metrics = stores.getDICOMStoreMetrics(name=store).execute()
    assert metrics["studyCount"] == "2"
    assert metrics["seriesCount"] == "3"
    assert metrics["instanceCount"] == "4"
    assert int(metrics["blobStorageSizeBytes"]) == sum(len(f) for f in files)

    # Instances stored through dicomweb-client count the same way.
    extra = make_instance(study_b)
    assert len(dicomweb.store_instances([extra]).ReferencedSOPSequence) == 1
    metrics = stores.getDICOMStoreMetrics(name=store).execute()
    assert (metrics["studyCount"], metrics["seriesCount"], metrics["instanceCount"]) == (
        "2", "4", "5")

    # A refused duplicate changes nothing.
    dup = to_bytes(make_instance(study_a, series_a1, instances[0].SOPInstanceUID,
                                 patient_name="Other^Name"))
    r = stow_raw(dicomweb.base_url, [dup])
    assert r.status_code == 409
    assert stores.getDICOMStoreMetrics(name=store).execute() == metrics


def test_store_metrics_unknown_store_is_not_found(stores, dataset):
    _expect_error(stores.getDICOMStoreMetrics(name=f"{dataset}/dicomStores/{_id('missing')}"),
                  404, "NOT_FOUND")


def test_store_delete_removes_its_instances(server, stores, dataset, dicomweb):
    store_id = _id("st")
    name = f"{dataset}/dicomStores/{store_id}"
    stores.create(parent=dataset, dicomStoreId=store_id, body={}).execute()
    base = f"{server.url}/v1/{name}/dicomWeb"
    inst = make_instance()
    assert stow_raw(base, [to_bytes(inst)]).status_code == 200
    stores.delete(name=name).execute()

    # Same ID, new store: empty.
    stores.create(parent=dataset, dicomStoreId=store_id, body={}).execute()
    try:
        assert stores.getDICOMStoreMetrics(name=name).execute()["instanceCount"] == "0"
        r = requests.get(f"{base}/studies", headers={"Accept": "application/dicom+json"})
        assert r.status_code == 204 and r.content == b""  # nothing found: No Content
    finally:
        stores.delete(name=name).execute()


def test_dicomweb_on_a_missing_store_is_not_found(server, dataset):
    base = f"{server.url}/v1/{dataset}/dicomStores/{_id('missing')}/dicomWeb"
    r = stow_raw(base, [to_bytes(make_instance())])
    assert r.status_code == 404
    assert r.json()["error"]["status"] == "NOT_FOUND"
    r = requests.get(f"{base}/studies")
    assert r.status_code == 404


# -- operations -------------------------------------------------------------------


def _all_operations(datasets, parent: str, **kwargs) -> list[dict]:
    ops = datasets.operations()
    out: list[dict] = []
    req = ops.list(name=parent, pageSize=50, **kwargs)
    while req is not None:
        resp = req.execute()
        out.extend(resp.get("operations", []))
        req = ops.list_next(req, resp)
    return out


def test_study_delete_is_an_operation(server, healthcare, datasets, stores, store, dicomweb,
                                      dataset):
    study = make_instance().StudyInstanceUID
    series = make_instance().SeriesInstanceUID
    instances = [make_instance(study, series, instance_number=i) for i in range(3)]
    instances.append(make_instance(study, modality="MR"))
    dicomweb.store_instances(instances)
    keep = make_instance()
    dicomweb.store_instances([keep])

    # The raw DELETE answers with an Operation, as the API does.
    r = requests.delete(f"{server.url}/v1/{store}/dicomWeb/studies/{study}")
    assert r.status_code == 200, r.text
    op = r.json()
    assert op["name"].startswith(f"{dataset}/operations/")
    assert op["metadata"]["@type"].endswith("google.cloud.healthcare.v1.OperationMetadata")
    assert op["metadata"]["apiMethodName"].endswith("DeleteStudy")
    assert op["metadata"]["createTime"]

    done = wait_for_operation(healthcare, op["name"])
    assert done["done"] is True
    assert "error" not in done
    assert done["response"] == {}
    meta = done["metadata"]
    assert meta["apiMethodName"] == op["metadata"]["apiMethodName"]
    assert meta["createTime"] == op["metadata"]["createTime"]
    assert meta["endTime"] >= meta["createTime"]
    assert meta["counter"] == {"success": "4"}

    # Listed with the dataset's operations, filtered and not.
    listed = {o["name"]: o for o in _all_operations(datasets, dataset)}
    assert listed[op["name"]] == done
    done_only = {o["name"] for o in _all_operations(datasets, dataset, filter="done=true")}
    assert op["name"] in done_only
    pending = _all_operations(datasets, dataset, filter="done=false")
    assert op["name"] not in {o["name"] for o in pending}

    # The study is gone; the other study is not.
    metrics = stores.getDICOMStoreMetrics(name=store).execute()
    assert (metrics["studyCount"], metrics["instanceCount"]) == ("1", "1")
    assert dicomweb.search_for_studies(search_filters={"StudyInstanceUID": study}) == []
    assert len(dicomweb.search_for_studies()) == 1


def test_study_delete_through_the_discovery_client(healthcare, stores, store, dicomweb,
                                                   dataset):
    inst = make_instance()
    dicomweb.store_instances([inst])
    op = stores.studies().delete(parent=store,
                                 dicomWebPath=f"studies/{inst.StudyInstanceUID}").execute()
    assert op["name"].startswith(f"{dataset}/operations/")
    done = wait_for_operation(healthcare, op["name"])
    assert done["done"] is True and done["response"] == {}
    assert done["metadata"]["counter"] == {"success": "1"}
    assert stores.getDICOMStoreMetrics(name=store).execute()["instanceCount"] == "0"


def test_series_delete_is_an_operation(healthcare, server, store, dicomweb):
    study = make_instance().StudyInstanceUID
    gone, kept = make_instance(study), make_instance(study)
    dicomweb.store_instances([gone, kept])
    r = requests.delete(f"{server.url}/v1/{store}/dicomWeb/studies/{study}"
                        f"/series/{gone.SeriesInstanceUID}")
    assert r.status_code == 200
    done = wait_for_operation(healthcare, r.json()["name"])
    assert done["metadata"]["apiMethodName"].endswith("DeleteSeries")
    assert done["metadata"]["counter"] == {"success": "1"}
    remaining = dicomweb.search_for_series(study)
    assert [s["0020000E"]["Value"][0] for s in remaining] == [kept.SeriesInstanceUID]


def test_operation_get_unknown_is_not_found(datasets, dataset):
    _expect_error(datasets.operations().get(name=f"{dataset}/operations/123"), 404,
                  "NOT_FOUND")


def test_operation_list_rejects_unknown_filter(datasets, dataset):
    _expect_error(datasets.operations().list(name=dataset, filter="metadata.x=1"), 400,
                  "INVALID_ARGUMENT")


def test_operations_of_missing_dataset_are_not_found(datasets):
    _expect_error(datasets.operations().list(name=f"{PARENT}/datasets/{_id('missing')}"),
                  404, "NOT_FOUND")
