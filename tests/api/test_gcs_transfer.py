"""``dicomStores.import`` from and ``dicomStores.export`` to Cloud Storage.

Storage is the fake-gcs-server process of the session; objects are put there and
read back with the real google-cloud-storage client, the API is driven with the
discovery client, and stored instances are checked over DICOMweb.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from googleapiclient.errors import HttpError
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian

from dicom_deid.devstack import wait_for_operation
from tests.helpers import retrieve_raw, stow_raw

IMPORT_METHOD = "google.cloud.healthcare.v1.dicom.DicomService.ImportDicomData"
EXPORT_METHOD = "google.cloud.healthcare.v1.dicom.DicomService.ExportDicomData"
NOT_FOUND = 5  # google.rpc.Code

# Object name in the bucket -> pydicom test file (all with distinct SOPInstanceUIDs).
IMPORT_OBJECTS = {
    "dir/im1.dcm": "CT_small.dcm",
    "dir/im2.dcm": "MR_small.dcm",
    "dir/im10.dcm": "rtplan.dcm",
    "dir/sub/im3.dcm": "test-SR.dcm",
    "dir/sub/deep/im4.dcm": "examples_rgb_color.dcm",
    "other/im5.dcm": "waveform_ecg.dcm",
}
NON_DICOM = "dir/readme.txt"

# Instances for export: uncompressed explicit and implicit VR, RLE, JPEG 2000.
EXPORT_FILES = ["CT_small.dcm", "SC_rgb_jpeg_dcmd.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm"]


def stores(healthcare):
    return healthcare.projects().locations().datasets().dicomStores()


def operations(healthcare):
    return healthcare.projects().locations().datasets().operations()


def read_test_file(name: str) -> bytes:
    return Path(get_testdata_file(name)).read_bytes()


def sop_of(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)


def timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def check_finished(op: dict, method: str) -> dict:
    """Common shape of a finished operation; returns its metadata."""
    assert op["done"] is True
    meta = op["metadata"]
    assert meta["@type"] == "type.googleapis.com/google.cloud.healthcare.v1.OperationMetadata"
    assert meta["apiMethodName"] == method
    assert timestamp(meta["createTime"]) <= timestamp(meta["endTime"])
    for key, value in meta.get("counter", {}).items():
        assert isinstance(value, str) and value.isdigit(), f"counter.{key} must be an int64 string"
    return meta


def stored_sops(dicomweb) -> set[str]:
    return {r["00080018"]["Value"][0] for r in dicomweb.search_for_instances(limit=1000)}


def failures_at(meta: dict) -> list[dict]:
    r = requests.get(meta["logsUrl"])
    assert r.status_code == 200, r.text
    return r.json().get("failures", [])


@pytest.fixture
def import_bucket(bucket):
    """The bucket holding IMPORT_OBJECTS and one object that is not DICOM."""
    for name, source in IMPORT_OBJECTS.items():
        bucket.blob(name).upload_from_string(read_test_file(source),
                                             content_type="application/dicom")
    bucket.blob(NON_DICOM).upload_from_string(b"plain text, not a DICOM file\n",
                                              content_type="text/plain")
    return bucket


# -- import ---------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "expected", "failed"), [
    ("dir/*.dcm", ["dir/im1.dcm", "dir/im2.dcm", "dir/im10.dcm"], []),
    ("dir/**", ["dir/im1.dcm", "dir/im2.dcm", "dir/im10.dcm", "dir/sub/im3.dcm",
                "dir/sub/deep/im4.dcm"], [NON_DICOM]),
    ("dir/im?.dcm", ["dir/im1.dcm", "dir/im2.dcm"], []),
    ("**/im?.dcm", ["dir/im1.dcm", "dir/im2.dcm", "dir/sub/im3.dcm", "dir/sub/deep/im4.dcm",
                    "other/im5.dcm"], []),
    ("dir/sub/im3.dcm", ["dir/sub/im3.dcm"], []),
], ids=["star", "double-star", "question-mark", "double-star-prefix", "single-object"])
def test_import_wildcards(healthcare, dataset, store, dicomweb, server, import_bucket,
                          path, expected, failed):
    uri = f"gs://{import_bucket.name}/{path}"
    op = stores(healthcare).import_(name=store, body={"gcsSource": {"uri": uri}}).execute()
    assert op["name"].startswith(f"{dataset}/operations/")
    assert op["metadata"]["apiMethodName"] == IMPORT_METHOD

    done = wait_for_operation(healthcare, op["name"])
    meta = check_finished(done, IMPORT_METHOD)
    assert "error" not in done, done
    assert done["response"]["@type"] == (
        "type.googleapis.com/google.cloud.healthcare.v1.dicom.ImportDicomDataResponse")
    counter = meta["counter"]
    assert counter.get("success") == str(len(expected))
    assert counter.get("failure", "0") == str(len(failed))
    assert "pending" not in counter

    originals = {name: read_test_file(IMPORT_OBJECTS[name]) for name in expected}
    assert stored_sops(dicomweb) == {sop_of(d) for d in originals.values()}
    web = f"{server.url}/v1/{store}/dicomWeb"
    for data in originals.values():
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        got = retrieve_raw(web, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        assert got == [data], "an imported instance is not stored byte for byte"

    listed = failures_at(meta)
    assert [f["resource"] for f in listed] == [f"gs://{import_bucket.name}/{n}" for n in failed]
    for f in listed:
        assert "DICOM" in f["reason"]


def test_import_missing_bucket_fails_the_operation(healthcare, store, dicomweb):
    uri = "gs://no-such-bucket-for-import/dir/*.dcm"
    op = stores(healthcare).import_(name=store, body={"gcsSource": {"uri": uri}}).execute()
    done = wait_for_operation(healthcare, op["name"])
    check_finished(done, IMPORT_METHOD)
    assert done["error"]["code"] == NOT_FOUND, done
    assert "response" not in done
    assert stored_sops(dicomweb) == set()


@pytest.mark.parametrize("body", [
    {"gcsSource": {"uri": "s3://bucket/dir/*.dcm"}},
    {"gcsSource": {"uri": "gs://"}},
    {"gcsSource": {"uri": "gs://UPPER_case_bucket/x.dcm"}},
    {"gcsSource": {"uri": "bucket/dir/x.dcm"}},
    {"gcsSource": {}},
    {},
], ids=["s3", "no-bucket", "bad-bucket-name", "no-scheme", "no-uri", "no-source"])
def test_import_bad_uri_is_400(healthcare, dataset, store, body):
    before = operations(healthcare).list(name=dataset, pageSize=1000).execute()
    with pytest.raises(HttpError) as exc:
        stores(healthcare).import_(name=store, body=body).execute()
    assert exc.value.resp.status == 400
    assert "gcsSource" in exc.value.reason
    after = operations(healthcare).list(name=dataset, pageSize=1000).execute()
    assert len(after.get("operations", [])) == len(before.get("operations", [])), \
        "a refused import still started an operation"


# -- export ---------------------------------------------------------------------------


@dataclass
class Filled:
    """A store filled over STOW-RS: SOPInstanceUID -> (study/series/sop path, bytes)."""

    name: str
    instances: dict[str, tuple[str, bytes]]


@pytest.fixture
def export_store(server, store) -> Filled:
    files = [read_test_file(n) for n in EXPORT_FILES]
    r = stow_raw(f"{server.url}/v1/{store}/dicomWeb", files)
    assert r.status_code == 200, r.text
    out = {}
    for data in files:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        out[str(ds.SOPInstanceUID)] = (
            f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}", data)
    return Filled(store, out)


def export(healthcare, store: str, uri_prefix: str, mime: str | None = None) -> dict:
    dest = {"uriPrefix": uri_prefix}
    if mime is not None:
        dest["mimeType"] = mime
    op = stores(healthcare).export(name=store, body={"gcsDestination": dest}).execute()
    assert op["metadata"]["apiMethodName"] == EXPORT_METHOD
    return wait_for_operation(healthcare, op["name"])


def check_export_done(done: dict, count: int) -> None:
    meta = check_finished(done, EXPORT_METHOD)
    assert "error" not in done, done
    assert done["response"]["@type"] == (
        "type.googleapis.com/google.cloud.healthcare.v1.dicom.ExportDicomDataResponse")
    assert meta["counter"].get("success") == str(count)
    assert "failure" not in meta["counter"]
    assert failures_at(meta) == []


def exported(bucket, prefix: str) -> dict[str, bytes]:
    return {b.name: b.download_as_bytes() for b in bucket.list_blobs(prefix=f"{prefix}/")}


@pytest.mark.parametrize("mime", [None, "application/dicom; transfer-syntax=*"],
                         ids=["unspecified", "as-stored"])
def test_export_dicom_as_stored(healthcare, export_store, bucket, mime):
    done = export(healthcare, export_store.name, f"gs://{bucket.name}/exp", mime)
    check_export_done(done, len(export_store.instances))
    objects = exported(bucket, "exp")
    assert set(objects) == {f"exp/{path}.dcm" for path, _ in export_store.instances.values()}
    for path, data in export_store.instances.values():
        assert objects[f"exp/{path}.dcm"] == data, "exported object differs from the stored one"


def test_export_transcoded_to_explicit_little_endian(healthcare, export_store, bucket):
    store = export_store.name
    done = export(healthcare, store, f"gs://{bucket.name}/nested/explicit",
                  "application/dicom; transfer-syntax=1.2.840.10008.1.2.1")
    check_export_done(done, len(export_store.instances))
    objects = exported(bucket, "nested/explicit")
    assert set(objects) == {f"nested/explicit/{p}.dcm" for p, _ in export_store.instances.values()}
    compressed = 0
    for path, data in export_store.instances.values():
        original = pydicom.dcmread(io.BytesIO(data))
        got = pydicom.dcmread(io.BytesIO(objects[f"nested/explicit/{path}.dcm"]))
        assert got.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert got.SOPInstanceUID == original.SOPInstanceUID
        assert got.Rows == original.Rows and got.Columns == original.Columns
        np.testing.assert_array_equal(got.pixel_array, original.pixel_array)
        if original.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian:
            assert objects[f"nested/explicit/{path}.dcm"] == data
        compressed += original.file_meta.TransferSyntaxUID.is_compressed
    assert compressed == 2


def test_export_png(healthcare, export_store, bucket):
    store = export_store.name
    done = export(healthcare, store, f"gs://{bucket.name}/png", "image/png")
    check_export_done(done, len(export_store.instances))
    objects = exported(bucket, "png")
    assert set(objects) == {f"png/{p}.png" for p, _ in export_store.instances.values()}
    for path, data in export_store.instances.values():
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        img = Image.open(io.BytesIO(objects[f"png/{path}.png"]))
        assert img.format == "PNG"
        assert img.size == (ds.Columns, ds.Rows)
        assert img.mode == ("RGB" if ds.SamplesPerPixel == 3 else "L")


def test_export_missing_bucket_fails_the_operation(healthcare, export_store):
    store = export_store.name
    done = export(healthcare, store, "gs://no-such-bucket-for-export/out")
    check_finished(done, EXPORT_METHOD)
    assert done["error"]["code"] == NOT_FOUND, done
    assert "response" not in done
    assert "success" not in done["metadata"].get("counter", {})


@pytest.mark.parametrize("dest", [
    {"uriPrefix": "s3://bucket/out"},
    {"uriPrefix": "gs://"},
    {},
    {"uriPrefix": "gs://some-bucket/out", "mimeType": "text/plain"},
    {"uriPrefix": "gs://some-bucket/out",
     "mimeType": "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50"},
], ids=["s3", "no-bucket", "no-prefix", "bad-mime", "unsupported-syntax"])
def test_export_bad_request_is_400(healthcare, store, dest):
    with pytest.raises(HttpError) as exc:
        stores(healthcare).export(name=store, body={"gcsDestination": dest}).execute()
    assert exc.value.resp.status == 400


# -- operations -----------------------------------------------------------------------


def test_operations_listed_and_cancel_after_done_is_harmless(
        healthcare, dataset, export_store, import_bucket):
    store = export_store.name
    exp = export(healthcare, store, f"gs://{import_bucket.name}/ops")
    imp = stores(healthcare).import_(name=store, body={
        "gcsSource": {"uri": f"gs://{import_bucket.name}/dir/*.dcm"}}).execute()
    imp = wait_for_operation(healthcare, imp["name"])
    check_export_done(exp, len(export_store.instances))
    check_finished(imp, IMPORT_METHOD)

    ops = operations(healthcare)
    listed, request = [], ops.list(name=dataset, pageSize=2)
    while request is not None:
        page = request.execute()
        listed += page.get("operations", [])
        request = ops.list_next(request, page)
    by_name = {o["name"]: o for o in listed}
    assert len(by_name) == len(listed), "paging listed an operation twice"
    assert by_name[exp["name"]] == ops.get(name=exp["name"]).execute()
    assert by_name[imp["name"]]["metadata"]["apiMethodName"] == IMPORT_METHOD
    finished = ops.list(name=dataset, filter="done=true", pageSize=1000).execute()
    assert {exp["name"], imp["name"]} <= {o["name"] for o in finished["operations"]}

    for op in (exp, imp):
        assert ops.cancel(name=op["name"], body={}).execute() == {}
        after = ops.get(name=op["name"]).execute()
        assert after["done"] is True
        assert "error" not in after
        assert after["response"] == op["response"]
        assert after["metadata"]["counter"] == op["metadata"]["counter"]
        assert after["metadata"]["endTime"] == op["metadata"]["endTime"]

    with pytest.raises(HttpError) as exc:
        ops.cancel(name=f"{dataset}/operations/123456789", body={}).execute()
    assert exc.value.resp.status == 404
