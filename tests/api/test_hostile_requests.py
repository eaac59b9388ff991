"""Hostile request bodies and parameters, sent to every route of the server's table
(issue 16, items 4 and 7).

Each kind of malformed input goes to every route family that takes it: JSON bodies to
every route that reads one (found from ``app.ROUTES`` and the handlers' source, so a
new route is covered the day it is added), query parameters to every GET route, and
the DICOMweb-specific ones (QIDO integers, multipart boundaries, frames of an odd
instance) to theirs. The answer must be a 4xx in Google's error shape, never a 500;
the server must answer afterwards; and nothing may be stored: the dataset under test
looks exactly as it did before, and listing it stays small and fast.
"""

from __future__ import annotations

import inspect
import json
import re
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import googleapiclient
import pytest
import requests

from dicom_deid.devstack import ServerProcess, free_port, wait_for_operation
from dicom_deid.server.app import ROUTES, Api
from tests.api.dicom_factory import make_instance, to_bytes

PROJECT, LOCATION = f"hostile-{uuid.uuid4().hex[:8]}", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
DATASET = f"{PARENT}/datasets/victim"
#: Put in hostile values: it must never reach the server's log.
MARKER = f"PHI-MARKER-{uuid.uuid4().hex[:8]}"
MB = 1024 * 1024
_DISCOVERY = json.loads((Path(googleapiclient.__file__).parent / "discovery_cache"
                         / "documents" / "healthcare.v1.json").read_text())


@dataclass
class World:
    """The dataset under attack: a source store with one instance, a destination store,
    and a store holding an instance whose transfer syntax UID is not one DICOM defines."""

    url: str
    study: str
    series: str
    sop: str
    odd: tuple[str, str, str] | None  # the odd instance's UIDs, if the server stored it

    def v1(self, path: str) -> str:
        return f"{self.url}/v1/{path}"


def _odd_instance() -> tuple[bytes, tuple[str, str, str]]:
    ds = make_instance()
    data = bytearray(to_bytes(ds))
    at = data.find(b"1.2.840.10008.1.2.1\x00")
    data[at : at + 20] = b"1.2.3.4.5.6.7.8.9.0\x00"  # same length: the meta group stays valid
    return bytes(data), (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)


def _stow(url: str, data: bytes) -> requests.Response:
    return requests.post(f"{url}/dicomWeb/studies", data=data, timeout=60,
                         headers={"Content-Type": "application/dicom"})


@pytest.fixture(scope="module")
def world(server) -> World:
    url = server.url
    requests.post(f"{url}/v1/{PARENT}/datasets?datasetId=victim", json={},
                  timeout=30).raise_for_status()
    for store in ("src", "dst", "odd"):
        requests.post(f"{url}/v1/{DATASET}/dicomStores?dicomStoreId={store}", json={},
                      timeout=30).raise_for_status()
    ds = make_instance()
    _stow(f"{url}/v1/{DATASET}/dicomStores/src", to_bytes(ds)).raise_for_status()
    data, odd = _odd_instance()
    stored = _stow(f"{url}/v1/{DATASET}/dicomStores/odd", data)
    assert stored.status_code < 500, stored.text
    return World(url, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID,
                 odd if stored.status_code == 200 else None)


def _snapshot(world: World) -> dict:
    """Everything a hostile request could have changed in the dataset under test."""
    def get(path: str) -> object:
        r = requests.get(world.v1(path), timeout=30)
        return r.status_code, r.text

    stores = [f"{DATASET}/dicomStores/{s}" for s in ("src", "dst", "odd")]
    return {
        "datasets": get(f"{PARENT}/datasets"),
        "stores": get(f"{DATASET}/dicomStores"),
        "operations": get(f"{DATASET}/operations"),
        "policies": [get(f"{name}:getIamPolicy") for name in [DATASET, *stores]],
        "metrics": [get(f"{name}:getDICOMStoreMetrics") for name in stores],
    }


@pytest.fixture
def unchanged(world: World) -> Iterator[World]:
    """The test's hostile requests must leave the dataset as it was, and the server
    answering."""
    before = _snapshot(world)
    yield world
    assert requests.get(f"{world.url}/healthz", timeout=10).status_code == 200
    assert _snapshot(world) == before


def _refused(r: requests.Response, *codes: int) -> dict:
    """A 4xx (one of ``codes`` if given) in Google's error shape, with a short message."""
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    if codes:
        assert r.status_code in codes, (r.status_code, r.text[:300])
    err = r.json()["error"]
    assert err["code"] == r.status_code
    assert isinstance(err["status"], str) and err["status"]
    assert isinstance(err["message"], str) and 0 < len(err["message"]) <= 1000
    assert MARKER not in err["message"]
    return err


# -- the route table ----------------------------------------------------------------

_GROUP = "([^/:]+)"


def _path(pattern: re.Pattern, world: World) -> str:
    """A concrete path for a route pattern: each group filled from the name before it."""
    values = {"projects": PROJECT, "locations": LOCATION, "datasets": "victim",
              "dicomStores": "src", "studies": world.study, "series": world.series,
              "instances": world.sop, "frames": "1", "operations": "1"}
    pieces = pattern.pattern.split(_GROUP)
    out = []
    for piece in pieces[:-1]:
        out += [piece, values[piece.rstrip("/").rsplit("/", 1)[-1]]]
    return "".join([*out, pieces[-1]])


def _reads_json(name: str) -> bool:
    return bool(re.search(r"\b_body\(r", inspect.getsource(getattr(Api, name))))


BODY_ROUTES = [(m, p, n) for m, p, n in ROUTES if _reads_json(n)]
GET_ROUTES = [(m, p, n) for m, p, n in ROUTES if m == "GET"]
#: The request schema of each route that reads a JSON body (the discovery document's).
REQUEST_SCHEMA = {
    "create_dataset": "Dataset", "patch_dataset": "Dataset",
    "deidentify_dataset": "DeidentifyDatasetRequest",
    "set_dataset_policy": "SetIamPolicyRequest", "set_store_policy": "SetIamPolicyRequest",
    "test_dataset_permissions": "TestIamPermissionsRequest",
    "test_store_permissions": "TestIamPermissionsRequest",
    "create_store": "DicomStore", "patch_store": "DicomStore",
    "import_": "ImportDicomDataRequest", "export": "ExportDicomDataRequest",
    "deidentify": "DeidentifyDicomStoreRequest",
}
#: Query parameters a body route needs to get as far as reading its body; the IDs are
#: new ones, so a request that stored anything would show in the snapshot.
_QUERY = {"create_dataset": {"datasetId": "intruder"},
          "create_store": {"dicomStoreId": "intruder"},
          "patch_dataset": {"updateMask": "timeZone"},
          "patch_store": {"updateMask": "labels,notificationConfig,notificationConfigs,"
                                        "streamConfigs"}}


def test_every_body_route_is_known() -> None:
    """A new route that reads JSON must be added here, so it gets the hostile bodies."""
    assert {n for _, _, n in BODY_ROUTES} == set(REQUEST_SCHEMA)


def _send(world: World, route: tuple, body: bytes) -> requests.Response:
    method, pattern, name = route
    return requests.request(method, world.v1(_path(pattern, world)), data=body,
                            params=_QUERY.get(name), timeout=60,
                            headers={"Content-Type": "application/json"})


# -- JSON bodies ----------------------------------------------------------------------

HOSTILE_BODIES = {
    "nested 100,000 deep": b"[" * 100_000,
    "valid JSON 50,000 deep": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "valid JSON 150 deep": b'{"a":' + b"[" * 150 + b"]" * 150 + b"}",
    "NaN": b'{"x": NaN}',
    "Infinity": b'{"x": -Infinity}',
    "a float past double": b'{"x": 1e999}',
    "an integer past 64 bits": b'{"x": %d}' % 2**70,
    "an integer of 5,000 digits": b'{"x": ' + b"7" * 5000 + b"}",
    "an array": b"[]",
    "a string": b'"' + MARKER.encode() + b'"',
    "a number": b"1",
    "null": b"null",
    "truncated": b'{"a": ',
    "invalid UTF-8": b'{"x": "\xff\xfe"}',
    "UTF-16": '{"x": 1}'.encode("utf-16"),
    "an unpaired surrogate": b'{"x": "\\ud800"}',
    "an unpaired surrogate as a key": b'{"\\udfff": 1}',
}


@pytest.mark.parametrize("route", BODY_ROUTES, ids=[n for _, _, n in BODY_ROUTES])
def test_malformed_json_bodies_are_400(unchanged, route) -> None:
    for label, body in HOSTILE_BODIES.items():
        r = _send(unchanged, route, body)
        assert r.status_code == 400, (label, r.status_code, r.text[:300])
        _refused(r)


def _wrong_values(schema: str, path: str = "", depth: int = 0) -> Iterator[tuple[str, dict]]:
    """For each field of ``schema`` (and of the objects it holds, one level down), a body
    with a value of the wrong JSON type there."""
    for field, spec in _DISCOVERY["schemas"][schema].get("properties", {}).items():
        kind = spec.get("type", "object")
        wrong = {"string": {"o": MARKER}, "boolean": MARKER, "integer": {"o": 1},
                 "number": MARKER, "array": MARKER, "object": [MARKER]}[kind]
        yield f"{path}{field}", {field: wrong}
        if "$ref" in spec and depth < 1:
            for inner, body in _wrong_values(spec["$ref"], f"{path}{field}.", depth + 1):
                yield inner, {field: body}


@pytest.mark.parametrize("route", BODY_ROUTES, ids=[n for _, _, n in BODY_ROUTES])
def test_fields_of_the_wrong_type_are_400(unchanged, route) -> None:
    """501 is allowed: the server's deliberate answer for a part of the API it does not
    serve (export to BigQuery), which it gives before looking at the field's type."""
    crashed = {}
    for where, body in _wrong_values(REQUEST_SCHEMA[route[2]]):
        r = _send(unchanged, route, json.dumps(body).encode())
        if r.status_code < 500:
            _refused(r)
        elif r.status_code != 501:
            crashed[where] = r.status_code
    assert not crashed, crashed


def _raw(world: World, head: str, body: Iterator[bytes]) -> tuple[int, bytes]:
    """Send ``head`` and then ``body``'s chunks on one socket, stopping as soon as the
    server answers; an answer that waits for the whole body times out (30 s)."""
    port = int(world.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode())
        for chunk in body:
            if _answered(sock):
                break
            sock.sendall(chunk)
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            assert data, "the server closed the connection without answering"
            answer += data
    head_bytes, _, rest = answer.partition(b"\r\n\r\n")
    return int(head_bytes.split()[1]), rest


def _answered(sock: socket.socket) -> bool:
    sock.settimeout(0)
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False
    finally:
        sock.settimeout(30)


def _request_head(world: World, route: tuple, extra: str) -> str:
    method, pattern, name = route
    query = "&".join(f"{k}={v}" for k, v in _QUERY.get(name, {}).items())
    target = f"/v1/{_path(pattern, world)}" + (f"?{query}" if query else "")
    return (f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\n{extra}\r\n")


@pytest.mark.parametrize("route", BODY_ROUTES, ids=[n for _, _, n in BODY_ROUTES])
def test_a_json_body_over_10_mb_is_413_before_it_is_read(unchanged, route) -> None:
    """Google's limit for every DICOM method but STOW is 10 MB. A body declared larger
    is refused before any of it is read; a chunked one once 10 MB have arrived."""
    declared = _request_head(unchanged, route, f"Content-Length: {400 * MB}\r\n")
    status, _ = _raw(unchanged, declared, iter([b"{" + b" " * 1023]))
    assert status == 413
    chunk = b" " * MB
    chunked = _request_head(unchanged, route, "Transfer-Encoding: chunked\r\n")
    status, _ = _raw(unchanged, chunked,
                     (b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(64)))
    assert status == 413


def test_a_large_time_zone_is_413_and_not_stored(unchanged) -> None:
    """The audit's case: a huge datasets.create body was read whole and its timeZone
    stored."""
    body = json.dumps({"timeZone": MARKER * (11 * MB // len(MARKER))}).encode()
    r = requests.post(unchanged.v1(f"{PARENT}/datasets"), params={"datasetId": "intruder"},
                      data=body, headers={"Content-Type": "application/json"}, timeout=60)
    _refused(r, 413)


def test_json_bodies_honour_a_lower_max_body_mb(tmp_path) -> None:
    """``--max-body-mb`` below 10 MB lowers the JSON limit too (it used to apply to
    STOW only: a 400 MB datasets.create body was read whole under --max-body-mb 64)."""
    server = ServerProcess(tmp_path / "data", free_port(), tmp_path / "server.log",
                           args=["--max-body-mb", "1", "--workers", "1"]).start()
    try:
        body = json.dumps({"timeZone": "x" * (2 * MB)})
        r = requests.post(f"{server.url}/v1/{PARENT}/datasets", data=body, timeout=60,
                          params={"datasetId": "intruder"},
                          headers={"Content-Type": "application/json"})
        _refused(r, 413)
        assert str(MB) in r.json()["error"]["message"]
        listed = requests.get(f"{server.url}/v1/{PARENT}/datasets", timeout=30).json()
        assert listed == {"datasets": []}
    finally:
        server.stop()


@pytest.mark.parametrize(("path", "mask", "body", "says"), [
    ("dicomStores/src", "labels", {"labels": {"team": "\ud800"}}, "surrogate"),
    ("dicomStores/src", "labels", {"labels": {"Team": "x"}}, "label key"),
    ("dicomStores/src", "labels", {"labels": {"9lives": "x"}}, "label key"),
    ("dicomStores/src", "labels", {"labels": {"t" * 64: "x"}}, "label key"),
    ("dicomStores/src", "labels", {"labels": {"é" * 63 + "ü": "x"}}, "label key"),
    ("dicomStores/src", "labels", {"labels": {"team": MARKER}}, "label value"),
    ("dicomStores/src", "labels", {"labels": {"team": "v" * 64}}, "label value"),
    ("dicomStores/src", "labels", {"labels": {"team": "a b"}}, "label value"),
    ("dicomStores/src", "notificationConfig",
     {"notificationConfig": {"pubsubTopic": "projects/p/topics/" + "t" * 256}}, "topics"),
    ("dicomStores/src", "notificationConfigs",
     {"notificationConfigs": [{"pubsubTopic": "projects/p/topics/tt"}]}, "topics"),
    ("dicomStores/src", "notificationConfigs",
     {"notificationConfigs": [{"pubsubTopic": "projects/p/topics/ttt"}] * 101}, "at most"),
    ("dicomStores/src", "streamConfigs",
     {"streamConfigs": [{"bigqueryDestination": {"tableUri": "bq://p.d." + "t" * 2000}}]},
     "2000"),
    ("dicomStores/src", "streamConfigs",
     {"streamConfigs": [{"bigqueryDestination": {"tableUri": "bq://p.d.t"}}] * 2},
     "repeats"),
    ("", "timeZone", {"timeZone": {"zone": "UTC"}}, "timeZone"),
    ("", "timeZone", {"timeZone": "UTC" + "\0" * 10}, "timeZone"),
    ("", "timeZone", {"timeZone": MARKER * 10}, "timeZone"),
])
def test_stored_strings_have_google_limits(unchanged, path, mask, body, says) -> None:
    """Every free-form string the server keeps from a body is checked against the
    limits Google documents, and refused without being quoted back."""
    name = f"{DATASET}/{path}" if path else DATASET
    r = requests.patch(unchanged.v1(name), params={"updateMask": mask},
                       data=json.dumps(body), timeout=30,
                       headers={"Content-Type": "application/json"})
    assert says in _refused(r, 400)["message"]


def test_labels_within_the_limits_are_kept(world) -> None:
    store = world.v1(f"{DATASET}/dicomStores/dst")
    labels = {"team": "imaging", "ключ": "значение-1", "ラベル": "", "k" * 63: "v_" * 31}
    r = requests.patch(store, params={"updateMask": "labels"}, json={"labels": labels},
                       timeout=30)
    assert r.status_code == 200, r.text
    assert requests.get(store, timeout=30).json()["labels"] == labels
    requests.patch(store, params={"updateMask": "labels"}, json={}, timeout=30)


@pytest.mark.parametrize(("resource", "body", "says"), [
    (DATASET, {"policy": {"bindings": [
        {"role": "roles/viewer", "members": [f"user:u{i}@example.com" for i in range(1501)]}]}},
     "1500 principals"),
    (DATASET, {"policy": {"bindings": [
        {"role": "roles/viewer", "members": [f"group:g{i}@example.com" for i in range(251)]}]}},
     "250 groups"),
    (DATASET, {"policy": {"bindings": [
        {"role": "roles/viewer", "members": ["user:a@example.com"],
         "condition": {"title": "t", "expression": "true", "description": "d" * 70_000}}],
        "version": 3}}, "larger than"),
    (DATASET, {"policy": {"auditConfigs": [{"service": "s" * 70_000}]},
               "updateMask": "auditConfigs"}, "larger than"),
    (DATASET, {"policy": {}, "updateMask": MARKER * 10}, "updateMask"),
])
def test_iam_policies_have_google_limits(unchanged, resource, body, says) -> None:
    r = requests.post(unchanged.v1(f"{resource}:setIamPolicy"), json=body, timeout=30)
    assert says in _refused(r, 400)["message"]


def test_test_iam_permissions_is_bounded(unchanged) -> None:
    for asked in (["a.b.c"] * 1001, ["a.b." + "c" * 300]):
        r = requests.post(unchanged.v1(f"{DATASET}:testIamPermissions"),
                          json={"permissions": asked}, timeout=30)
        _refused(r, 400)


# -- query parameters -------------------------------------------------------------------

BIG = str(2**70)
HOSTILE_PARAMS = [
    {"pageSize": BIG}, {"pageToken": BIG}, {"pageSize": "1_0"}, {"pageSize": "١٠"},
    {"pageToken": "-1"}, {"options.requestedPolicyVersion": BIG},
    {"updateMask": MARKER * 100}, {"filter": MARKER * 100},
    {"limit": BIG}, {"offset": BIG}, {"offset": "-1"}, {"limit": "9" * 5000},
    {"SeriesNumber": BIG}, {"InstanceNumber": str(-(2**31) - 1)}, {"Rows": "65536"},
    {"includefield": ",".join(["00100010"] * 5000)}, {MARKER * 100: "x"},
]


@pytest.mark.parametrize("route", GET_ROUTES, ids=[n for _, _, n in GET_ROUTES])
def test_hostile_query_parameters_are_never_500(unchanged, route) -> None:
    """Every GET route, with each hostile parameter: what the route reads is refused
    with a 400, what it does not read is ignored; never a 500."""
    method, pattern, name = route
    for params in HOSTILE_PARAMS:
        r = requests.get(unchanged.v1(_path(pattern, unchanged)), params=params, timeout=60,
                         headers={"Accept": "*/*"})
        assert r.status_code < 500, (params.keys(), r.status_code, r.text[:300])
        if r.status_code >= 400:
            _refused(r)


SEARCH_ROUTES = [r for r in GET_ROUTES if r[2].startswith("search")]


@pytest.mark.parametrize(("params", "says"), [
    ({"SeriesNumber": BIG}, "SeriesNumber"),
    ({"SeriesNumber": str(2**31)}, "SeriesNumber"),
    ({"InstanceNumber": str(-(2**31) - 1)}, "InstanceNumber"),
    ({"Rows": "65536"}, "Rows"), ({"Columns": "-1"}, "Columns"),
    ({"NumberOfFrames": "1e3"}, "NumberOfFrames"), ({"Rows": "1_0"}, "Rows"),
    ({"offset": BIG}, "offset"), ({"offset": "1000001"}, "offset"),
    ({"limit": BIG}, "limit"), ({"limit": "-1"}, "limit"),
    ({"StudyInstanceUID": ",".join(["1.2"] * 1001)}, "at most 1000 UIDs"),
    ({"Modality": ["CT"] * 65}, "at most 64 matching keys"),
    ({MARKER * 10: "x"}, "unknown query attribute"),
])
@pytest.mark.parametrize("route", SEARCH_ROUTES, ids=[n for _, _, n in SEARCH_ROUTES])
def test_qido_numbers_and_lists_out_of_range_are_400(unchanged, route, params, says) -> None:
    r = requests.get(unchanged.v1(_path(route[1], unchanged)), params=params, timeout=60)
    assert says in _refused(r, 400)["message"]


@pytest.mark.parametrize("route", SEARCH_ROUTES, ids=[n for _, _, n in SEARCH_ROUTES])
def test_qido_numbers_in_range_still_match(world, route) -> None:
    for params in ({"SeriesNumber": "1"}, {"SeriesNumber": str(2**31 - 1)},
                   {"Rows": "65535"}, {"limit": str(2**63 - 1)}, {"offset": "1000000"}):
        r = requests.get(world.v1(_path(route[1], world)), params=params, timeout=60)
        assert r.status_code in (200, 204), (params, r.text[:300])


# -- DICOMweb bodies and stored instances -------------------------------------------------

STOW_ROUTES = [r for r in ROUTES if r[2].startswith("stow")]


@pytest.mark.parametrize("boundary", ["b" * 5000, "b" * 71, "", "b ", 'b"c', "b\u00e9"])
@pytest.mark.parametrize("route", STOW_ROUTES, ids=[n for _, _, n in STOW_ROUTES])
def test_multipart_boundaries_rfc_2046_refuses_are_400(unchanged, route, boundary) -> None:
    body = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\nx\r\n--{boundary}--\r\n"
    r = requests.post(unchanged.v1(_path(route[1], unchanged)), data=body.encode(),
                      timeout=60, headers={"Content-Type": 'multipart/related; '
                                           f'type="application/dicom"; boundary="{boundary}"'})
    _refused(r, 400)


def test_frames_of_an_unknown_transfer_syntax_are_refused(unchanged) -> None:
    if unchanged.odd is None:
        pytest.skip("the server refuses such instances at STOW: nothing to read frames of")
    study, series, sop = unchanged.odd
    base = f"{DATASET}/dicomStores/odd/dicomWeb/studies/{study}/series/{series}/instances/{sop}"
    for suffix in ("/frames/1", "/frames/1/rendered", "/rendered"):
        _refused(requests.get(unchanged.v1(base + suffix), timeout=60))


@pytest.mark.parametrize("pattern", ["a{4294967296}", "(" * 4000 + ")" * 4000,
                                     "(?P<x>a)(?P=x)" + MARKER * 10])
@pytest.mark.parametrize("route", ["deidentify", "deidentify_dataset"])
def test_custom_regexes_are_never_500(healthcare, world, route, pattern) -> None:
    """Python's ``re`` raised OverflowError and RecursionError for the first two (outside
    the ``re.error`` handler). Under RE2, Google's regex engine, the first is literal
    text and the second a valid pattern: then the operation must run to its end."""
    image = {"customRegexes": [{"pattern": pattern}]}
    target = f"out-{uuid.uuid4().hex[:8]}"
    if route == "deidentify":
        requests.post(world.v1(f"{DATASET}/dicomStores?dicomStoreId={target}"), json={},
                      timeout=30).raise_for_status()
        path = f"{DATASET}/dicomStores/src:deidentify"
        body = {"destinationStore": f"{DATASET}/dicomStores/{target}",
                "config": {"image": image}}
        leftover = f"{DATASET}/dicomStores/{target}"
    else:
        path = f"{DATASET}:deidentify"
        body = {"destinationDataset": f"{PARENT}/datasets/{target}",
                "config": {"image": image}}
        leftover = f"{PARENT}/datasets/{target}"
    try:
        r = requests.post(world.v1(path), json=body, timeout=60)
        if r.status_code != 200:
            _refused(r, 400)
            return
        op = wait_for_operation(healthcare, r.json()["name"], timeout=120)
        assert op.get("done"), op
    finally:
        requests.delete(world.v1(leftover), timeout=60)


# -- afterwards -------------------------------------------------------------------------------


def test_after_all_that_listing_datasets_is_small_and_fast(world, server) -> None:
    """Nothing of the hostile requests was kept: the list is the one dataset, answered
    at once; and no hostile value reached the server's log."""
    started = time.monotonic()
    r = requests.get(world.v1(f"{PARENT}/datasets"), timeout=30)
    elapsed = time.monotonic() - started
    assert r.status_code == 200
    assert r.json() == {"datasets": [{"name": DATASET}]}
    assert len(r.content) < 1024 and elapsed < 1.0, (len(r.content), elapsed)
    assert MARKER not in Path(server.log_path).read_text(errors="replace")
