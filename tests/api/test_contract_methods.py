"""Every method of the installed ``healthcare v1`` discovery document: served, or 501.

The walk reads the discovery document that ships with google-api-python-client (the
one the pipeline's clients are built from), sends each method's HTTP verb to its path
with made-up IDs under a dataset that does not exist, and checks the answer: a
method the server serves answers as a served method does (here NOT_FOUND naming the
missing dataset, or INVALID_ARGUMENT for a bad body), never UNIMPLEMENTED; a method
it does not serve answers 501 UNIMPLEMENTED in Google's error shape, naming the
method. No method of the document answers the generic "no such resource or method".
"""

from __future__ import annotations

import json
import re
from importlib import resources

import pytest
import requests

from tests.helpers import PARENT

#: The methods the local server serves (everything else in the document must be 501).
SERVED = {f"healthcare.projects.locations.datasets.{m}" for m in (
    "create", "delete", "get", "list", "patch", "deidentify",
    "getIamPolicy", "setIamPolicy", "testIamPermissions",
    "operations.get", "operations.list", "operations.cancel",
    "dicomStores.create", "dicomStores.delete", "dicomStores.get", "dicomStores.list",
    "dicomStores.patch", "dicomStores.deidentify", "dicomStores.export",
    "dicomStores.import", "dicomStores.getDICOMStoreMetrics",
    "dicomStores.getIamPolicy", "dicomStores.setIamPolicy", "dicomStores.testIamPermissions",
    "dicomStores.searchForInstances", "dicomStores.searchForSeries",
    "dicomStores.searchForStudies", "dicomStores.storeInstances",
    "dicomStores.dicomWeb.studies.getStudyMetrics",
    "dicomStores.dicomWeb.studies.series.getSeriesMetrics",
    "dicomStores.studies.delete", "dicomStores.studies.retrieveMetadata",
    "dicomStores.studies.retrieveStudy", "dicomStores.studies.searchForInstances",
    "dicomStores.studies.searchForSeries", "dicomStores.studies.storeInstances",
    "dicomStores.studies.series.delete", "dicomStores.studies.series.retrieveMetadata",
    "dicomStores.studies.series.retrieveSeries",
    "dicomStores.studies.series.searchForInstances",
    "dicomStores.studies.series.instances.delete",
    "dicomStores.studies.series.instances.retrieveInstance",
    "dicomStores.studies.series.instances.retrieveMetadata",
    "dicomStores.studies.series.instances.retrieveRendered",
    "dicomStores.studies.series.instances.frames.retrieveFrames",
    "dicomStores.studies.series.instances.frames.retrieveRendered",
)}
#: The families the issue names: every DICOM, dataset and operation method.
FAMILIES = re.compile(r"healthcare\.projects\.locations\.datasets\.((dicomStores|operations)\.|"
                      r"[A-Za-z]+$)")


def _methods() -> list[dict]:
    documents = resources.files("googleapiclient.discovery_cache").joinpath("documents")
    doc = json.loads(documents.joinpath("healthcare.v1.json").read_text())
    out = []

    def walk(node: dict) -> None:
        out.extend(node.get("methods", {}).values())
        for child in node.get("resources", {}).values():
            walk(child)

    walk(doc)
    return sorted(out, key=lambda m: m["id"])


METHODS = _methods()


def _path(flat: str) -> str:
    """The method's path with made-up IDs: digits for UIDs, a word for other IDs, all
    under a dataset that does not exist."""
    path = flat.removeprefix("v1/")

    def fill(m: re.Match) -> str:
        name = m[1]
        if name in ("studiesId", "seriesId", "instancesId"):
            return "1.2.3.4"
        if name == "framesId":
            return "1"
        return {"projectsId": PARENT.split("/")[1], "locationsId": PARENT.split("/")[3],
                "datasetsId": "no-such-dataset"}.get(name, "x1")

    return re.sub(r"\{([^}]+)\}", fill, path)


def test_the_document_is_walked_whole() -> None:
    ids = {m["id"] for m in METHODS}
    assert len(ids) > 100
    assert ids >= SERVED, f"served but not in the discovery document: {SERVED - ids}"
    assert sum(bool(FAMILIES.match(i)) for i in ids) >= len(SERVED) + 3


@pytest.mark.parametrize("method", METHODS, ids=[m["id"].removeprefix(
    "healthcare.projects.locations.") for m in METHODS])
def test_method_is_served_or_unimplemented(server, method) -> None:
    url = f"{server.url}/v1/{_path(method['flatPath'])}"
    body = b"{}" if method["httpMethod"] in ("POST", "PATCH", "PUT") else None
    headers = {"Content-Type": "application/json"} if body else {}
    r = requests.request(method["httpMethod"], url, data=body, headers=headers, timeout=30)
    error = r.json().get("error") if r.headers.get("content-type", "").startswith(
        "application/json") else None
    if method["id"] in SERVED:
        assert r.status_code != 501, r.text
        # the dataset is missing, or the body bad; a list of a parent that exists, and
        # testIamPermissions (an empty set for a missing resource, as documented), 200
        assert r.status_code in (200, 400, 404), r.text
        if r.status_code != 200:
            assert error and error["message"] != "no such resource or method on this server"
        return
    assert r.status_code == 501, f"{method['id']}: {r.status_code} {r.text[:200]}"
    assert error == {"code": 501, "status": "UNIMPLEMENTED", "message": error["message"]}
    assert method["id"] in error["message"]


def test_what_no_method_has_is_404(server) -> None:
    for path in ("projects/p/locations/l/datasets/d/widgets", "nothing/here"):
        r = requests.get(f"{server.url}/v1/{path}", timeout=30)
        assert r.status_code == 404
        assert r.json()["error"]["status"] == "NOT_FOUND"
    r = requests.put(f"{server.url}/v1/{PARENT}/datasets/x1", data=b"{}", timeout=30)
    assert r.status_code == 405
