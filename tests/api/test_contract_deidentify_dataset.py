"""``datasets.deidentify`` as Google documents it, with the keep list of Google's own
dataset de-identification sample: every DICOM store of the source dataset into a new
dataset, one long-running operation whose counters and failure log cover them all.
"""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pydicom
import pytest
import requests
from googleapiclient.errors import HttpError
from pydicom.data import get_testdata_file

from dicom_deid.corpus.markers import marked_instance
from dicom_deid.devstack import wait_for_operation
from tests.helpers import PARENT, stores_api, stow_raw

METHOD = "google.cloud.healthcare.v1.dataset.DatasetService.DeidentifyDataset"
SUMMARY = "type.googleapis.com/google.cloud.healthcare.v1.deidentify.DeidentifySummary"
#: The keepList of Google's Python sample ``deidentify_dataset.py`` (file meta keywords
#: included: the file meta is rebuilt whatever a list says).
SAMPLE_KEEP = ["Columns", "NumberOfFrames", "PixelRepresentation", "MediaStorageSOPClassUID",
               "MediaStorageSOPInstanceUID", "Rows", "SamplesPerPixel", "BitsAllocated",
               "HighBit", "PhotometricInterpretation", "BitsStored", "PatientID",
               "TransferSyntaxUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
               "PixelData"]
BODY_KEEP = {"SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
             "PatientID", "Columns", "Rows", "NumberOfFrames", "PixelRepresentation",
             "SamplesPerPixel", "BitsAllocated", "HighBit", "PhotometricInterpretation",
             "BitsStored", "PixelData"}


def _dataset_id() -> str:
    return f"dd-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def source(healthcare, server, datasets):
    """A source dataset of two DICOM stores: planted-PHI instances in one, a real
    secondary capture and CT in the other; deleted afterwards with its copies."""
    ds_id = _dataset_id()
    name = f"{PARENT}/datasets/{ds_id}"
    datasets.create(parent=PARENT, datasetId=ds_id, body={"timeZone": "Europe/Paris"}).execute()
    files = {"marked": [marked_instance(seed=s).to_bytes() for s in (11, 12, 13)],
             "real": [Path(get_testdata_file(f)).read_bytes()
                      for f in ("SC_rgb.dcm", "CT_small.dcm")]}
    for store_id, parts in files.items():
        stores_api(healthcare).create(parent=name, dicomStoreId=store_id, body={}).execute()
        r = stow_raw(f"{server.url}/v1/{name}/dicomStores/{store_id}/dicomWeb", parts)
        assert r.status_code == 200, r.text
    yield name, files
    for row in datasets.list(parent=PARENT).execute().get("datasets", []):
        if row["name"].startswith(name) or row["name"].endswith("-copy"):
            datasets.delete(name=row["name"]).execute()


def _deidentify(datasets, source: str, destination: str, config: dict) -> dict:
    return datasets.deidentify(sourceDataset=source, body={
        "destinationDataset": destination, "config": config}).execute()


def test_every_store_into_a_new_dataset_with_the_samples_keep_list(
        healthcare, datasets, server, source) -> None:
    name, files = source
    destination = f"{name}-copy"
    op = _deidentify(datasets, name, destination, {"dicom": {"keepList": {"tags": SAMPLE_KEEP}}})
    assert op["metadata"]["apiMethodName"] == METHOD
    done = wait_for_operation(healthcare, op["name"])
    assert "error" not in done, done
    assert done["response"] == {"@type": SUMMARY}
    assert done["metadata"]["counter"] == {"success": "5"}

    # The destination was created, with the source's time zone and a store per store.
    assert datasets.get(name=destination).execute() == {"name": destination,
                                                        "timeZone": "Europe/Paris"}
    listed = stores_api(healthcare).list(parent=destination).execute()["dicomStores"]
    assert sorted(s["name"] for s in listed) == [f"{destination}/dicomStores/marked",
                                                 f"{destination}/dicomStores/real"]
    retrieved = []
    for store_id, parts in files.items():
        web = f"{server.url}/v1/{destination}/dicomStores/{store_id}/dicomWeb"
        rows = requests.get(f"{web}/instances", timeout=60).json()
        assert len(rows) == len(parts)
        sources = {str(pydicom.dcmread(io.BytesIO(p)).PatientID) for p in parts}
        for row in rows:
            study, series, sop = (row[t]["Value"][0] for t in ("0020000D", "0020000E",
                                                                "00080018"))
            got = requests.get(f"{web}/studies/{study}/series/{series}/instances/{sop}",
                               headers={"Accept": "application/dicom; transfer-syntax=*"},
                               timeout=60)
            retrieved.append(got.content)
            ds = pydicom.dcmread(io.BytesIO(got.content))
            # Exactly the listed tags that the source has (and the SOP Class UID the
            # file meta repeats): nothing else, not StudyDescription, not the marks.
            assert {e.keyword for e in ds} <= BODY_KEEP
            assert {"StudyInstanceUID", "SOPClassUID", "PixelData"} <= {e.keyword for e in ds}
            assert str(ds.PatientID) in sources  # listed, so kept as it was
    unlisted = set()
    for parts in files.values():
        for data in parts:
            src = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            for keyword in ("PatientName", "StudyDescription", "AccessionNumber",
                            "InstitutionName", "StudyInstanceUID"):
                if src.get(keyword):
                    unlisted.add(str(src[keyword].value).encode())
    assert unlisted
    assert [v for v in unlisted if any(v in data for data in retrieved)] == []


def test_failures_name_the_store_and_say_why(healthcare, datasets, source) -> None:
    """A keep list without the UIDs a store indexes by: every instance fails, each with
    a reason at logsUrl that names its store and says what the keep list lacks."""
    name, files = source
    op = _deidentify(datasets, name, f"{name}-copy",
                     {"dicom": {"keepList": {"tags": ["PatientID", "PixelData"]}}})
    done = wait_for_operation(healthcare, op["name"])
    assert "error" not in done  # the operation ran; the instances failed
    assert done["metadata"]["counter"] == {"failure": "5"}
    logs = requests.get(done["metadata"]["logsUrl"], timeout=60).json()["failures"]
    assert len(logs) == 5
    assert {entry["resource"].split("/dicomWeb/")[0] for entry in logs} == {
        "dicomStores/marked", "dicomStores/real"}
    for entry in logs:
        assert "keepList does not list StudyInstanceUID and SeriesInstanceUID" in entry["reason"]


def test_refusals(datasets, source, dataset) -> None:
    name, _ = source

    def error(source_name: str, body: dict) -> tuple[int, str]:
        with pytest.raises(HttpError) as info:
            datasets.deidentify(sourceDataset=source_name, body=body).execute()
        return info.value.resp.status, info.value.content.decode()

    # The destination must not exist (the session's dataset does).
    assert error(name, {"destinationDataset": dataset, "config": {}})[0] == 409
    other_location = f"projects/test-project/locations/europe-west4/datasets/{_dataset_id()}"
    status, text = error(name, {"destinationDataset": other_location, "config": {}})
    assert status == 400 and "location" in text
    assert error(name, {"config": {}})[0] == 400
    assert error(f"{PARENT}/datasets/{_dataset_id()}",
                 {"destinationDataset": f"{PARENT}/datasets/{_dataset_id()}"})[0] == 404
    status, text = error(name, {"destinationDataset": f"{name}-copy",
                                "config": {"dicom": {"filterProfile": "NO_SUCH_PROFILE"}}})
    assert status == 400 and "config.dicom.filterProfile" in text
    with pytest.raises(HttpError) as info:
        datasets.get(name=f"{name}-copy").execute()
    assert info.value.resp.status == 404  # a refused request creates nothing
