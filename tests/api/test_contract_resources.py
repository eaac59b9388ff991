"""Google's contract for datasets and DICOM stores beyond create/get/list/delete:
``datasets.patch``, IAM policies on datasets and stores, and the store's notification
and streaming configs, through the discovery client Google's samples use.

IAM policies are kept and returned as IAM does (etags, versions, conditions), but not
enforced: the local server has no authentication (see the README).
"""

from __future__ import annotations

import json
import uuid

import pytest
from googleapiclient.errors import HttpError

from tests.helpers import PARENT, new_store, stores_api

VIEWER = {"role": "roles/viewer", "members": ["user:reader@example.com"]}
EDITOR = {"role": "roles/healthcare.dicomEditor",
          "members": ["serviceAccount:pipeline@example.iam.gserviceaccount.com",
                      "group:radiology@example.com"]}


def _error(request) -> dict:
    with pytest.raises(HttpError) as info:
        request.execute()
    body = json.loads(info.value.content)["error"]
    assert body["code"] == info.value.resp.status
    return body


def test_dataset_patch_time_zone(datasets, new_dataset) -> None:
    patched = datasets.patch(name=new_dataset, updateMask="timeZone",
                             body={"timeZone": "America/New_York"}).execute()
    assert patched == {"name": new_dataset, "timeZone": "America/New_York"}
    assert datasets.get(name=new_dataset).execute()["timeZone"] == "America/New_York"
    cleared = datasets.patch(name=new_dataset, updateMask="timeZone", body={}).execute()
    assert cleared == {"name": new_dataset}


@pytest.mark.parametrize(("mask", "body", "says"), [
    (None, {"timeZone": "UTC"}, "updateMask is required"),
    ("timeZone", {"timeZone": "Mars/Olympus_Mons"}, "IANA"),
    ("labels", {}, "updateMask field not supported for a dataset: labels"),
    ("name", {"name": "x"}, "updateMask field not supported for a dataset: name"),
    ("timeZone", {"colour": "blue"}, "dataset.colour: unknown field"),
])
def test_dataset_patch_refusals(datasets, new_dataset, mask, body, says) -> None:
    kwargs = {"updateMask": mask} if mask else {}
    err = _error(datasets.patch(name=new_dataset, body=body, **kwargs))
    assert err["status"] == "INVALID_ARGUMENT" and says in err["message"]


def test_dataset_patch_of_a_missing_dataset_is_404(datasets) -> None:
    err = _error(datasets.patch(name=f"{PARENT}/datasets/none-{uuid.uuid4().hex[:6]}",
                                updateMask="timeZone", body={"timeZone": "UTC"}))
    assert err["status"] == "NOT_FOUND"


def _iam_resources(healthcare, new_dataset):
    """(the API collection, the resource name) for a dataset and for a DICOM store."""
    datasets = healthcare.projects().locations().datasets()
    return [(datasets, new_dataset),
            (stores_api(healthcare), new_store(healthcare, new_dataset))]


def test_iam_policy_round_trip(healthcare, new_dataset) -> None:
    for api, name in _iam_resources(healthcare, new_dataset):
        empty = api.getIamPolicy(resource=name).execute()
        assert empty == {"etag": "ACAB"}  # IAM's answer for "no policy set"
        first = api.setIamPolicy(resource=name, body={"policy": {"bindings": [VIEWER]}}).execute()
        assert first["bindings"] == [VIEWER] and first["version"] == 1
        assert first["etag"] and first["etag"] != "ACAB"
        assert api.getIamPolicy(resource=name).execute() == first
        # Read-modify-write with the etag just read succeeds and changes the etag ...
        second = api.setIamPolicy(resource=name, body={"policy": {
            "bindings": [VIEWER, EDITOR], "etag": first["etag"]}}).execute()
        assert second["bindings"] == [VIEWER, EDITOR] and second["etag"] != first["etag"]
        # ... and a write with a stale etag is refused, as IAM refuses a lost update.
        stale = _error(api.setIamPolicy(resource=name, body={"policy": {
            "bindings": [VIEWER], "etag": first["etag"]}}))
        assert stale["code"] == 409 and stale["status"] == "ABORTED"
        assert api.getIamPolicy(resource=name).execute() == second


def test_iam_conditions_need_version_3(healthcare, new_dataset) -> None:
    datasets = healthcare.projects().locations().datasets()
    conditional = {**VIEWER, "condition": {"title": "until 2030",
                                           "expression": "request.time < "
                                                         "timestamp('2030-01-01T00:00:00Z')"}}
    err = _error(datasets.setIamPolicy(resource=new_dataset,
                                       body={"policy": {"bindings": [conditional]}}))
    assert "version must be 3" in err["message"]
    done = datasets.setIamPolicy(resource=new_dataset, body={
        "policy": {"bindings": [conditional], "version": 3}}).execute()
    assert done["version"] == 3
    assert "requestedPolicyVersion=3" in _error(
        datasets.getIamPolicy(resource=new_dataset))["message"]
    got = datasets.getIamPolicy(resource=new_dataset,
                                options_requestedPolicyVersion=3).execute()
    assert got["bindings"] == [conditional]


@pytest.mark.parametrize(("policy", "says"), [
    ({"bindings": [{"role": "viewer", "members": ["user:a@example.com"]}]}, "role"),
    ({"bindings": [{"role": "roles/viewer", "members": []}]}, "at least one principal"),
    ({"bindings": [{"role": "roles/viewer", "members": ["alice"]}]}, "not a principal"),
    ({"bindings": [], "version": 2}, "version must be 0, 1 or 3"),
    ({"bindings": [{"role": "roles/viewer", "members": ["user:a@example.com"],
                    "colour": "red"}]}, "unknown field"),
])
def test_iam_policy_refusals(healthcare, new_dataset, policy, says) -> None:
    datasets = healthcare.projects().locations().datasets()
    err = _error(datasets.setIamPolicy(resource=new_dataset, body={"policy": policy}))
    assert err["status"] == "INVALID_ARGUMENT" and says in err["message"]


def test_iam_on_missing_resources(healthcare) -> None:
    datasets = healthcare.projects().locations().datasets()
    missing = f"{PARENT}/datasets/none-{uuid.uuid4().hex[:6]}"
    assert _error(datasets.getIamPolicy(resource=missing))["status"] == "NOT_FOUND"
    assert _error(datasets.setIamPolicy(resource=missing, body={"policy": {
        "bindings": [VIEWER]}}))["status"] == "NOT_FOUND"
    # testIamPermissions answers an empty set for a missing resource, not NOT_FOUND.
    assert datasets.testIamPermissions(resource=missing, body={
        "permissions": ["healthcare.datasets.get"]}).execute() == {}


def test_test_iam_permissions_grants_everything_locally(healthcare, new_dataset) -> None:
    asked = ["healthcare.dicomStores.dicomWebRead", "healthcare.dicomStores.deidentify"]
    for api, name in _iam_resources(healthcare, new_dataset):
        got = api.testIamPermissions(resource=name, body={"permissions": asked}).execute()
        assert got == {"permissions": asked}
        err = _error(api.testIamPermissions(resource=name,
                                            body={"permissions": ["healthcare.*"]}))
        assert "without wildcards" in err["message"]


def test_a_recreated_resource_has_no_old_policy(healthcare, datasets) -> None:
    ds_id = f"c-{uuid.uuid4().hex[:10]}"
    name = f"{PARENT}/datasets/{ds_id}"
    datasets.create(parent=PARENT, datasetId=ds_id, body={}).execute()
    store = new_store(healthcare, name)
    for api, resource in ((datasets, name), (stores_api(healthcare), store)):
        api.setIamPolicy(resource=resource, body={"policy": {"bindings": [VIEWER]}}).execute()
    datasets.delete(name=name).execute()
    datasets.create(parent=PARENT, datasetId=ds_id, body={}).execute()
    try:
        stores_api(healthcare).create(parent=name, dicomStoreId=store.rsplit("/", 1)[1],
                                      body={}).execute()
        assert datasets.getIamPolicy(resource=name).execute() == {"etag": "ACAB"}
        assert stores_api(healthcare).getIamPolicy(resource=store).execute() == {
            "etag": "ACAB"}
    finally:
        datasets.delete(name=name).execute()


TOPIC = {"pubsubTopic": "projects/test-project/topics/dicom-changes"}
STREAM = [{"bigqueryDestination": {"tableUri": "bq://test-project.imaging.instances",
                                   "force": True}}]


def test_store_notification_and_stream_configs_are_kept(healthcare, new_dataset) -> None:
    """Stored and returned as Google returns them (no Pub/Sub message or BigQuery row
    is ever sent by the local server: the README says so)."""
    stores = stores_api(healthcare)
    store_id = f"n-{uuid.uuid4().hex[:8]}"
    name = f"{new_dataset}/dicomStores/{store_id}"
    created = stores.create(parent=new_dataset, dicomStoreId=store_id, body={
        "notificationConfig": TOPIC, "labels": {"team": "imaging"}}).execute()
    assert created == {"name": name, "labels": {"team": "imaging"},
                       "notificationConfig": TOPIC}
    patched = stores.patch(name=name, updateMask="streamConfigs,notificationConfigs",
                           body={"streamConfigs": STREAM,
                                 "notificationConfigs": [TOPIC]}).execute()
    assert patched == {**created, "streamConfigs": STREAM, "notificationConfigs": [TOPIC]}
    assert stores.get(name=name).execute() == patched
    listed = stores.list(parent=new_dataset).execute()["dicomStores"]
    assert patched in listed
    # A field in the mask but not in the body is cleared (FieldMask semantics); the
    # fields not in the mask stay.
    cleared = stores.patch(name=name, updateMask="notificationConfig", body={}).execute()
    assert "notificationConfig" not in cleared and cleared["streamConfigs"] == STREAM


@pytest.mark.parametrize(("mask", "body", "says"), [
    ("notificationConfig", {"notificationConfig": {"pubsubTopic": "dicom-changes"}},
     "projects/{project}/topics/{topic}"),
    ("streamConfigs", {"streamConfigs": [{"bigqueryDestination": {"tableUri": "imaging"}}]},
     "bq://{project}.{dataset}.{table}"),
    ("name", {"name": "x"}, "updateMask field not supported for a DICOM store: name"),
    ("labels", {"labels": {"a": 1}}, "dicomStore.labels.a: must be a string"),
])
def test_store_patch_refusals(healthcare, new_dataset, mask, body, says) -> None:
    store = new_store(healthcare, new_dataset)
    err = _error(stores_api(healthcare).patch(name=store, updateMask=mask, body=body))
    assert err["status"] == "INVALID_ARGUMENT" and says in err["message"]
