"""The server's audit trail: one Cloud Audit Logs entry per API call, and no value in it.

Each test drives a server of its own (a ``dicom-deid serve`` process on its own data
directory), so the entries it counts are exactly the calls it made: through the
discovery client and dicomweb-client as the pipeline calls, and plain HTTP where an
error or a header is the point. The files are read from the server's disk and through
``GET /v1/auditLogs/entries``, the way the run report links to them.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from googleapiclient.errors import HttpError

from dicom_deid.corpus.markers import marked_instance
from dicom_deid.devstack import ServerProcess, free_port, healthcare_client
from tests.api.dicom_factory import make_instance, to_bytes
from tests.helpers import stow_raw

PROJECT, LOCATION = "audit-project", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
ACTIVITY = f"projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Factivity"
DATA_ACCESS = f"projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Fdata_access"
DATASETS = "google.cloud.healthcare.v1.dataset.DatasetService."
DICOM = "google.cloud.healthcare.v1.dicom.DicomService."
DICOMWEB = "google.cloud.healthcare.v1.dicomweb.DicomWebService."
GET_OPERATION = "google.longrunning.Operations.GetOperation"
LIST_LOG_ENTRIES = "google.logging.v2.LoggingServiceV2.ListLogEntries"
DEIDENTIFY = DICOM + "DeidentifyDicomStore"
BASIC = {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}}


def _server(root: Path, *args: str, **env: str) -> ServerProcess:
    return ServerProcess(root / "data", free_port(), root / "server.log", env=env,
                         args=list(args)).start()


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with two worker processes (both write the same file)."""
    server = _server(tmp_path_factory.mktemp("audited"), "--workers", "2")
    yield server
    server.stop()


def audit_files(data_dir: Path) -> list[Path]:
    """``cloudaudit.log.N`` ... ``.1``, then ``cloudaudit.log``: oldest first."""
    folder = data_dir / "audit"
    numbered = sorted((int(p.suffix[1:]), p) for p in folder.glob("cloudaudit.log.*")
                      if p.suffix[1:].isdigit())
    current = folder / "cloudaudit.log"
    return [p for _, p in reversed(numbered)] + ([current] if current.exists() else [])


def entries(server: ServerProcess) -> list[dict]:
    """Every entry on disk, oldest first; each file holds whole lines only."""
    out = []
    for path in audit_files(server.data_dir):
        data = path.read_bytes()
        assert data == b"" or data.endswith(b"\n"), f"{path.name} ends inside a line"
        out += [json.loads(line) for line in data.splitlines()]
    return out


def read_back(server: ServerProcess, **params: str) -> dict:
    r = requests.get(f"{server.url}/v1/auditLogs/entries", params=params, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _payload(entry: dict) -> tuple[str, str, dict]:
    p = entry["protoPayload"]
    return p["methodName"], p["resourceName"], p["status"]


NOT_FOUND = {"code": 5, "message": "NOT_FOUND"}
ALREADY_EXISTS = {"code": 6, "message": "ALREADY_EXISTS"}
INVALID = {"code": 3, "message": "INVALID_ARGUMENT"}


def test_each_call_has_one_entry_as_google_names_it(audited: ServerProcess) -> None:
    before = len(entries(audited))
    hc = healthcare_client(audited.url)
    datasets = hc.projects().locations().datasets()
    stores = datasets.dicomStores()
    dataset = f"{PARENT}/datasets/calls"
    src, dst = f"{dataset}/dicomStores/src", f"{dataset}/dicomStores/dst"
    web = f"{src}/dicomWeb"
    expected: list[tuple[str, str, dict]] = []

    datasets.create(parent=PARENT, datasetId="calls", body={}).execute()
    expected.append((DATASETS + "CreateDataset", dataset, {}))
    for store_id in ("src", "dst"):
        stores.create(parent=dataset, dicomStoreId=store_id, body={}).execute()
        expected.append((DICOM + "CreateDicomStore", f"{dataset}/dicomStores/{store_id}", {}))
    with pytest.raises(HttpError) as missing:
        stores.get(name=f"{dataset}/dicomStores/nowhere").execute()
    assert missing.value.resp.status == 404
    expected.append((DICOM + "GetDicomStore", f"{dataset}/dicomStores/nowhere", NOT_FOUND))
    with pytest.raises(HttpError) as again:
        stores.create(parent=dataset, dicomStoreId="src", body={}).execute()
    assert again.value.resp.status == 409
    expected.append((DICOM + "CreateDicomStore", src, ALREADY_EXISTS))

    client = DICOMwebClient(url=f"{audited.url}/v1/{web}")
    instance = make_instance()
    client.store_instances([instance])
    expected.append((DICOMWEB + "StoreInstances", f"{web}/studies", {}))
    assert len(client.search_for_instances()) == 1
    expected.append((DICOMWEB + "SearchForInstances", f"{web}/instances", {}))
    client.retrieve_instance(instance.StudyInstanceUID, instance.SeriesInstanceUID,
                             instance.SOPInstanceUID)
    expected.append((DICOMWEB + "RetrieveInstance",
                     f"{web}/studies/{{studyUid}}/series/{{seriesUid}}/instances/{{instanceUid}}",
                     {}))
    r = requests.get(f"{audited.url}/v1/{web}/studies/1.2.3/series/4.5/metadata", timeout=30)
    assert r.status_code == 404
    expected.append((DICOMWEB + "RetrieveSeriesMetadata",
                     f"{web}/studies/{{studyUid}}/series/{{seriesUid}}/metadata", NOT_FOUND))

    op = stores.deidentify(sourceStore=src, body={"destinationStore": dst,
                                                  "config": BASIC}).execute()
    expected.append((DEIDENTIFY, src, {}))
    operations = datasets.operations()
    polls = 0
    while True:
        polls += 1
        done = operations.get(name=op["name"]).execute()
        expected.append((GET_OPERATION, op["name"], {}))
        if done.get("done"):
            break
        time.sleep(0.1)
    assert "error" not in done, done

    # No Authorization header is written, and a User-Agent is cut at 256 characters.
    token = f"ya29.{secrets.token_urlsafe(24)}"
    r = requests.get(f"{audited.url}/v1/{dataset}", timeout=30, headers={
        "Authorization": f"Bearer {token}", "User-Agent": "agent/" + "x" * 400})
    assert r.status_code == 200
    expected.append((DATASETS + "GetDataset", dataset, {}))
    r = requests.get(f"{audited.url}/v1/{PARENT}/datasets/calls/fhirStores/f", timeout=30)
    assert r.status_code == 501
    expected.append(("healthcare.projects.locations.datasets.fhirStores.get", dataset,
                     {"code": 12, "message": "UNIMPLEMENTED"}))

    new = entries(audited)[before:]
    assert [_payload(e) for e in new] == expected
    assert len({e["insertId"] for e in new}) == len(new)
    for e, (method, _, status) in zip(new, expected, strict=True):
        admin = method in (DATASETS + "CreateDataset", DICOM + "CreateDicomStore", DEIDENTIFY)
        assert e["logName"] == (ACTIVITY if admin else DATA_ACCESS)
        assert e["severity"] == ("ERROR" if status else "NOTICE" if admin else "INFO")
        p = e["protoPayload"]
        assert p["@type"] == "type.googleapis.com/google.cloud.audit.AuditLog"
        assert p["serviceName"] == "healthcare.googleapis.com"
        assert p["authenticationInfo"] == {"principalEmail": "anonymous"}
        assert p["requestMetadata"]["callerIp"] == "127.0.0.1"
        assert set(p) == {"@type", "serviceName", "methodName", "resourceName", "status",
                          "authenticationInfo", "requestMetadata"}  # never a request body
        assert e["timestamp"].endswith("Z") and len(e["timestamp"]) == 27
        assert e["timestamp"] <= e["receiveTimestamp"]
    by_method = {e["protoPayload"]["methodName"]: e for e in new}
    assert by_method[DICOM + "GetDicomStore"]["resource"] == {
        "type": "healthcare_dicom_store", "labels": {
            "project_id": PROJECT, "location": LOCATION, "dataset_id": "calls",
            "dicom_store_id": "nowhere"}}
    assert by_method[DATASETS + "CreateDataset"]["resource"] == {
        "type": "healthcare_dataset", "labels": {
            "project_id": PROJECT, "location": LOCATION, "dataset_id": "calls"}}
    agent = new[-2]["protoPayload"]["requestMetadata"]["callerSuppliedUserAgent"]
    assert agent == ("agent/" + "x" * 400)[:256]
    assert not any(token.encode() in p.read_bytes() for p in audit_files(audited.data_dir))

    # The start of the operation and every poll of it share its operation.id.
    start = by_method[DEIDENTIFY]
    assert start["operation"] == {"id": op["name"], "producer": "healthcare.googleapis.com",
                                  "first": True}
    gets = [e for e in new if e["protoPayload"]["methodName"] == GET_OPERATION]
    assert len(gets) == polls
    assert all(e["operation"] == {"id": op["name"], "producer": "healthcare.googleapis.com"}
               for e in gets)
    assert "first" in by_method[DATASETS + "CreateDataset"]["operation"]  # an LRO too
    assert all("operation" not in e for e in new
               if e["protoPayload"]["methodName"].startswith(DICOMWEB))

    # The endpoint answers exactly that operation's entries, in either form of the query.
    mine = [start["insertId"]] + [e["insertId"] for e in gets]
    by_filter = read_back(audited, filter=f'operation.id="{op["name"]}"')
    assert [e["insertId"] for e in by_filter["entries"]] == mine
    assert by_filter["entries"][0] == start and "truncated" not in by_filter
    by_param = read_back(audited, operation=op["name"])
    assert [e["insertId"] for e in by_param["entries"]] == mine
    refused = requests.get(f"{audited.url}/v1/auditLogs/entries",
                           params={"filter": 'severity="ERROR"'}, timeout=30)
    assert refused.status_code == 400
    assert refused.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "severity" not in refused.json()["error"]["message"]  # a filter is not echoed
    reads = entries(audited)[before + len(expected):]
    assert [_payload(e)[0] for e in reads] == [LIST_LOG_ENTRIES] * 3
    assert [e["protoPayload"]["serviceName"] for e in reads] == ["logging.googleapis.com"] * 3
    assert [e["protoPayload"]["status"] for e in reads] == [{}, {}, INVALID]
    assert all("operation" not in e for e in reads)  # a read of the trail is not the LRO's


def test_no_marker_uid_or_secret_in_the_audit_files(audited: ServerProcess) -> None:
    hc = healthcare_client(audited.url)
    datasets = hc.projects().locations().datasets()
    datasets.create(parent=PARENT, datasetId="phi", body={}).execute()
    dataset = f"{PARENT}/datasets/phi"
    for store_id in ("src", "dst"):
        datasets.dicomStores().create(parent=dataset, dicomStoreId=store_id,
                                      body={}).execute()
    web = f"{audited.url}/v1/{dataset}/dicomStores/src/dicomWeb"
    marked = [marked_instance(seed=s) for s in (41, 42)]
    for number, m in enumerate(marked, start=1):
        m.dataset.InstanceNumber = number
    marker = f"PHI{uuid.uuid4().hex[:10].upper()}"
    named = make_instance(patient_name=f"{marker}^Family", patient_id=marker)
    needles = {p.marker for m in marked for p in m.plants if p.searchable} | {marker}
    uids = set()
    for ds in [m.dataset for m in marked] + [named]:
        uids |= {ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID}

    assert stow_raw(web, [m.to_bytes() for m in marked]).status_code == 200
    assert stow_raw(web, [to_bytes(named)], study=named.StudyInstanceUID).status_code == 200
    client = DICOMwebClient(url=web)
    assert client.search_for_instances(search_filters={"PatientName": f"{marker}*"})
    assert client.search_for_studies(search_filters={"PatientID": marker})
    first = marked[0].dataset
    study, series, sop = first.StudyInstanceUID, first.SeriesInstanceUID, first.SOPInstanceUID
    client.search_for_series(study)
    client.retrieve_study(study)
    client.retrieve_series(study, series)
    client.retrieve_instance_metadata(study, series, sop)
    instance = f"{web}/studies/{study}/series/{series}/instances/{sop}"
    requests.get(f"{instance}/rendered", headers={"Accept": "image/png"}, timeout=60)
    requests.get(f"{instance}/frames/1", timeout=60,
                 headers={"Accept": 'multipart/related; type="application/octet-stream"'})
    bad = requests.get(f"{web}/studies/{marker}/series", timeout=30)  # not a UID: 400
    assert bad.status_code == 400
    gone = requests.get(f"{web}/studies/{study}9/series/{series}", timeout=30)
    assert gone.status_code == 404
    deleted = requests.delete(
        f"{web}/studies/{named.StudyInstanceUID}/series/{named.SeriesInstanceUID}"
        f"/instances/{named.SOPInstanceUID}", timeout=30)
    assert deleted.status_code == 200
    # A de-identification config's secret key: request bodies are never written.
    key = base64.b64encode(os.urandom(32)).decode()
    config = {**BASIC, "text": {"additionalTransformations": [
        {"infoTypes": ["DATE"], "dateShiftConfig": {"cryptoKey": key}}]}}
    op = datasets.dicomStores().deidentify(
        sourceStore=f"{dataset}/dicomStores/src",
        body={"destinationStore": f"{dataset}/dicomStores/dst", "config": config}).execute()
    read_back(audited, operation=op["name"])

    files = audit_files(audited.data_dir)
    content = b"".join(p.read_bytes() for p in files)
    assert b"dicomWeb/studies/{studyUid}/series/{seriesUid}/instances" in content
    found = sorted(n for n in needles | uids | {key} if n.encode() in content)
    assert found == []
    assert b"?" not in content  # no query string, in any entry


def test_entries_survive_a_restart_and_faults_are_entries(tmp_path: Path) -> None:
    server = _server(tmp_path, "--workers", "1")
    try:
        datasets = healthcare_client(server.url).projects().locations().datasets()
        datasets.create(parent=PARENT, datasetId="kept", body={}).execute()
        datasets.get(name=f"{PARENT}/datasets/kept").execute()
    finally:
        server.stop()
    before = entries(server)
    assert [_payload(e)[0] for e in before] == [DATASETS + "CreateDataset",
                                               DATASETS + "GetDataset"]

    server.env = {"DICOM_DEID_SERVER_FAULTS": "503/2"}  # every 2nd request answers 503
    server.start()
    try:
        codes = [requests.get(f"{server.url}/v1/{PARENT}/datasets/kept", timeout=30)
                 .status_code for _ in range(4)]
        assert codes == [200, 503, 200, 503]
        listed = read_back(server)["entries"]  # the 5th request: not a fault
    finally:
        server.stop()
    assert listed[:2] == before  # appended: the first run's entries are still there
    after = listed[2:]
    assert [_payload(e) for e in after] == [
        (DATASETS + "GetDataset", f"{PARENT}/datasets/kept", status)
        for status in ({}, {"code": 14, "message": "UNAVAILABLE"}) * 2]
    assert [e["severity"] for e in after] == ["INFO", "ERROR"] * 2
    assert len(entries(server)) == 7  # and the read itself


def _hammer(server: ServerProcess, calls: int) -> None:
    """A dataset, then ``calls`` requests from 8 threads at once, so both workers write
    concurrently (one in three is a 404)."""
    healthcare_client(server.url).projects().locations().datasets().create(
        parent=PARENT, datasetId="spin", body={}).execute()
    names = [f"{PARENT}/datasets/spin" if i % 3 else f"{PARENT}/datasets/none-{i}"
             for i in range(calls)]
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(
            lambda name: requests.get(f"{server.url}/v1/{name}", timeout=60).status_code,
            names))
    assert sorted(set(codes)) == [200, 404]


def test_rotation_by_size_never_splits_a_line(tmp_path: Path) -> None:
    cap = 4096
    server = _server(tmp_path, "--workers", "2", DICOM_DEID_AUDIT_MAX_BYTES=str(cap),
                     DICOM_DEID_AUDIT_BACKUPS="1000")
    try:
        _hammer(server, 300)
        listed = read_back(server)
    finally:
        server.stop()
    files = audit_files(server.data_dir)
    found = entries(server)  # every line of every file parses as a whole entry
    assert len(found) == 302  # the dataset, 300 gets and the read of the trail
    assert len({e["insertId"] for e in found}) == 302
    assert len(files) > 10
    longest = max(len(line) for p in files for line in p.read_bytes().splitlines(True))
    for path in files[:-1]:
        # Rotated at the cap: past it by the line that reached it, and at most by one
        # more line per other worker (written before the rotation took the lock).
        assert cap <= path.stat().st_size < cap + 2 * longest
    assert [e["insertId"] for e in listed["entries"]] == [e["insertId"] for e in found[:-1]]


def test_rotation_keeps_only_the_configured_backups(tmp_path: Path) -> None:
    server = _server(tmp_path, "--workers", "2", DICOM_DEID_AUDIT_MAX_BYTES="2048",
                     DICOM_DEID_AUDIT_BACKUPS="2")
    try:
        _hammer(server, 60)
        last = requests.get(f"{server.url}/v1/{PARENT}/datasets/the-last-one", timeout=30)
        assert last.status_code == 404
    finally:
        server.stop()
    names = {p.name for p in (server.data_dir / "audit").iterdir()} - {"cloudaudit.log.lock"}
    # the current file exists unless the last line rotated it away
    assert names - {"cloudaudit.log"} == {"cloudaudit.log.1", "cloudaudit.log.2"}
    kept = entries(server)
    assert 0 < len(kept) < 62
    assert kept[-1]["protoPayload"]["resourceName"] == f"{PARENT}/datasets/the-last-one"


def test_an_unwritable_audit_log_never_fails_a_request(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "audit").write_text("a file where the directory would be\n")
    server = _server(tmp_path, "--workers", "1")
    try:
        datasets = healthcare_client(server.url).projects().locations().datasets()
        datasets.create(parent=PARENT, datasetId="quiet", body={}).execute()
        for _ in range(3):
            datasets.get(name=f"{PARENT}/datasets/quiet").execute()
        r = requests.get(f"{server.url}/v1/auditLogs/entries", timeout=30)
        assert r.status_code == 503 and r.json()["error"]["status"] == "UNAVAILABLE"
    finally:
        server.stop()
    warnings = [line for line in server.log_path.read_text().splitlines()
                if "audit log entry not written" in line]
    assert len(warnings) == 1, warnings  # once, naming the errno only
    assert "(EEXIST)" in warnings[0] and str(tmp_path) not in warnings[0]
