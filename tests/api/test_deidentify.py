"""``dicomStores.deidentify`` on the local server, driven by the discovery client.

Source instances go in over STOW-RS (dicomweb-client), the operation is polled like
any client would, the destination is read back over DICOMweb, and every count
reconciles: destination instances + failures = source instances.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import requests
from googleapiclient.errors import HttpError
from pydicom import dcmread
from pydicom.data import get_testdata_file

from dicom_deid.corpus.burned_instances import PHI_VALUES, burned_instance
from dicom_deid.corpus.markers import marked_instance
from dicom_deid.devstack import wait_for_operation
from tests.helpers import new_store, retrieve_raw, stores_api, stow_raw

METHOD = "google.cloud.healthcare.v1.dicom.DicomService.DeidentifyDicomStore"
BASIC = {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}}
FILES = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "examples_rgb_color.dcm",
         "waveform_ecg.dcm")


@pytest.fixture
def source(server, store: str):  # noqa: ANN201
    """A store holding pydicom samples and one marker-planted instance."""
    parts = [Path(get_testdata_file(name)).read_bytes() for name in FILES]
    marked = marked_instance(seed=7)
    parts.append(marked.to_bytes())
    r = stow_raw(f"{server.url}/v1/{store}/dicomWeb", parts)
    assert r.status_code == 200, r.text
    return store, marked


def deidentify(healthcare, source: str, body: dict) -> dict:
    op = stores_api(healthcare).deidentify(sourceStore=source, body=body).execute()
    return wait_for_operation(healthcare, op["name"])


def instances(server, store: str) -> list[dict]:
    r = requests.get(f"{server.url}/v1/{store}/dicomWeb/instances")
    assert r.status_code in (200, 204)
    return r.json() if r.status_code == 200 else []


def test_deidentify_store_counts_reconcile_and_no_marker_left(
        healthcare, server, dataset: str, source) -> None:
    src, marked = source
    dest = new_store(healthcare, dataset)
    op = deidentify(healthcare, src, {"destinationStore": dest, "config": BASIC})
    assert "error" not in op, op
    meta = op["metadata"]
    assert meta["apiMethodName"] == METHOD
    counter = meta["counter"]
    n = len(FILES) + 1
    assert int(counter.get("success", 0)) + int(counter.get("failure", 0)) == n
    out = instances(server, dest)
    assert len(out) == int(counter["success"]) == n
    src_uids = {i["00080018"]["Value"][0] for i in instances(server, src)}
    for item in out:
        study = item["0020000D"]["Value"][0]
        series = item["0020000E"]["Value"][0]
        sop = item["00080018"]["Value"][0]
        assert sop not in src_uids and sop.startswith("2.25.")
        [data] = retrieve_raw(f"{server.url}/v1/{dest}/dicomWeb", study, series, sop)
        ds = dcmread(io.BytesIO(data))
        assert ds.PatientIdentityRemoved == "YES"
        leftovers = [p.marker for p in marked.plants if p.searchable
                     and p.marker.encode() in data]
        assert leftovers == []


def test_same_store_twice_gives_same_uids_and_a_rerun_is_idempotent(
        healthcare, server, dataset: str, source) -> None:
    src, _ = source
    first, second = new_store(healthcare, dataset), new_store(healthcare, dataset)
    done = deidentify(healthcare, src, {"destinationStore": first, "config": BASIC})
    deidentify(healthcare, src, {"destinationStore": second, "config": BASIC})
    uids = [sorted(i["00080018"]["Value"][0] for i in instances(server, s))
            for s in (first, second)]
    assert uids[0] == uids[1]
    # The same config and key give the same bytes: running again into the same store
    # stores nothing twice and fails nothing (a stored byte-identical instance is a
    # success, as on Google); the counters say what the first run said.
    again = deidentify(healthcare, src, {"destinationStore": first, "config": BASIC})
    assert again["metadata"]["counter"] == done["metadata"]["counter"]
    assert sorted(i["00080018"]["Value"][0] for i in instances(server, first)) == uids[0]
    # Another config gives other bytes under the same UIDs: those fail, each alone.
    other = deidentify(healthcare, src, {"destinationStore": first, "config": {
        "dicom": {"filterProfile": "KEEP_ALL_PROFILE"}}})
    assert int(other["metadata"]["counter"]["failure"]) == len(FILES) + 1
    failures = requests.get(other["metadata"]["logsUrl"]).json()
    reasons = {f["reason"] for f in failures["failures"]}
    assert reasons == {"an instance with this SOPInstanceUID is already stored"}


def test_filter_config_and_gcs_config(healthcare, server, dataset: str, source, bucket) -> None:
    src, _ = source
    ct = dcmread(get_testdata_file("CT_small.dcm"))
    bucket.blob("filter.txt").upload_from_string(f"/studies/{ct.StudyInstanceUID}\n")
    bucket.blob("config.json").upload_from_string(json.dumps(BASIC))
    dest = new_store(healthcare, dataset)
    op = deidentify(healthcare, src, {
        "destinationStore": dest, "gcsConfigUri": f"gs://{bucket.name}/config.json",
        "filterConfig": {"resourcePathsGcsUri": f"gs://{bucket.name}/filter.txt"}})
    assert int(op["metadata"]["counter"]["success"]) == 1
    assert len(instances(server, dest)) == 1


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"config": {"dicom": {"filterProfile": "NOPE"}}}, 400, "config.dicom.filterProfile"),
    ({"config": {"dicom": {"unknownField": 1}}}, 400, "config.dicom.unknownField"),
    ({"config": BASIC, "gcsConfigUri": "gs://b/c.json"}, 400, "only one of"),
])
def test_bad_requests_name_the_field(healthcare, dataset: str, source, body: dict,
                                     status: int, words: str) -> None:
    src, _ = source
    dest = new_store(healthcare, dataset)
    with pytest.raises(HttpError) as err:
        stores_api(healthcare).deidentify(sourceStore=src,
                                       body={"destinationStore": dest, **body}).execute()
    assert err.value.resp.status == status
    assert words in err.value.content.decode()


def test_missing_destination_is_not_found(healthcare, dataset: str, source) -> None:
    src, _ = source
    with pytest.raises(HttpError) as err:
        stores_api(healthcare).deidentify(sourceStore=src, body={
            "destinationStore": f"{dataset}/dicomStores/does-not-exist", "config": BASIC}
        ).execute()
    assert err.value.resp.status == 404


def test_server_log_has_no_marker(server, healthcare, dataset: str, source) -> None:
    src, marked = source
    dest = new_store(healthcare, dataset)
    deidentify(healthcare, src, {"destinationStore": dest, "config": {
        "dicom": {"filterProfile": "DEIDENTIFY_TAG_CONTENTS"}}})
    log = server.log_path.read_bytes()
    assert [p.marker for p in marked.plants if p.searchable and p.marker.encode() in log] == []


def test_burned_in_text_is_painted_and_a_bad_instance_fails_alone(
        healthcare, server, dataset: str, store: str) -> None:
    """REDACT_ALL_TEXT through the server: text boxes black in what comes back, the
    undecodable instance counted as a failure with a reason, the rest stored."""
    cases = [burned_instance(31, photometric="RGB"),
             burned_instance(32, syntax="jpeg-baseline", width=480, height=360)]
    parts = []
    for case in cases:
        buf = io.BytesIO()
        case.dataset.save_as(buf, enforce_file_format=True)
        parts.append(buf.getvalue())
    broken = burned_instance(33, width=320, height=240).dataset
    broken.PixelData = broken.PixelData[: len(broken.PixelData) // 2]
    buf = io.BytesIO()
    broken.save_as(buf, enforce_file_format=True)
    parts.append(buf.getvalue())
    r = stow_raw(f"{server.url}/v1/{store}/dicomWeb", parts)
    assert r.status_code == 200, r.text
    dest = new_store(healthcare, dataset)
    config = {**BASIC, "image": {"textRedactionMode": "REDACT_ALL_TEXT"}}
    op = deidentify(healthcare, store, {"destinationStore": dest, "config": config})
    counter = op["metadata"]["counter"]
    assert (int(counter["success"]), int(counter["failure"])) == (2, 1)
    failures = requests.get(op["metadata"]["logsUrl"]).json()["failures"]
    assert len(failures) == 1 and failures[0]["reason"].startswith(
        "pixel decode failed at (7FE0,0010) PixelData:")
    by_size = {(c.dataset.Rows, c.dataset.Columns): c for c in cases}
    for item in instances(server, dest):
        [data] = retrieve_raw(f"{server.url}/v1/{dest}/dicomWeb",
                              item["0020000D"]["Value"][0], item["0020000E"]["Value"][0],
                              item["00080018"]["Value"][0])
        ds = dcmread(io.BytesIO(data))
        assert ds.BurnedInAnnotation == "NO"
        assert all(v.encode() not in data for v in PHI_VALUES.values())
        frame = ds.pixel_array
        case = by_size.pop((ds.Rows, ds.Columns))
        black = frame.min()  # RGB 0; MONOCHROME2 the image's own minimum
        painted = [bool((frame[r.box[1]:r.box[3], r.box[0]:r.box[2]] == black).all())
                   for r in case.regions]
        assert sum(painted) >= len(painted) - 1, painted
    assert by_size == {}
