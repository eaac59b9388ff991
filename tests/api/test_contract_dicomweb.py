"""Google's DICOMweb contract, sent the way Google's own samples send it.

Google's Python samples for the Healthcare API call DICOMweb through an authorized
``requests`` session (``google.auth.transport.requests.AuthorizedSession``) with
single-part bodies and Accept headers that are Google extensions to PS3.18: a raw
Part 10 file as the whole STOW body, ``Accept: application/dicom; transfer-syntax=*``
for one instance, ``Accept: image/png`` for a rendered frame. The requests here are
written by this project from what the samples send, the conformance statement and the
discovery document, and go through the same client class, with anonymous credentials
(the local server has no authentication).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from google.auth.credentials import AnonymousCredentials
from google.auth.transport.requests import AuthorizedSession
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicom_deid.devstack import wait_for_operation
from tests.helpers import stores_api

#: Real files of different encodings (pydicom's test files): Explicit VR LE, Implicit
#: VR LE, RLE Lossless, JPEG 2000 Lossless, JPEG Baseline, and a multi-frame one.
FILES = {"explicit": "CT_small.dcm", "implicit": "MR_small.dcm", "rle": "MR_small_RLE.dcm",
         "j2k": "US1_J2KR.dcm", "jpeg": "SC_rgb_jpeg_dcmd.dcm", "frames": "emri_small.dcm"}


def _file(kind: str) -> bytes:
    return Path(get_testdata_file(FILES[kind])).read_bytes()


def _uids(data: bytes) -> tuple[str, str, str]:
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


@pytest.fixture(scope="module")
def session() -> AuthorizedSession:
    """The session class Google's samples use, as a user points it at this server."""
    return AuthorizedSession(AnonymousCredentials())


@pytest.fixture
def web(server, store) -> str:
    return f"{server.url}/v1/{store}/dicomWeb"


def _store_one(session: AuthorizedSession, web: str, data: bytes, study: str | None = None):
    url = f"{web}/studies" + (f"/{study}" if study else "")
    return session.post(url, data=data, headers={"Content-Type": "application/dicom"},
                        timeout=60)


@pytest.mark.parametrize("kind", sorted(FILES))
def test_single_part_stow_stores_the_file(session, web, kind) -> None:
    """``Content-Type: application/dicom`` with the Part 10 file as the body: stored,
    byte for byte, and answered with the same DICOM JSON as a multipart STOW."""
    data = _file(kind)
    study, series, sop = _uids(data)
    r = _store_one(session, web, data)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/dicom+json")
    body = r.json()
    assert body["00081190"]["Value"] == [f"{web}/studies/{study}"]
    (item,) = body["00081199"]["Value"]
    assert item["00081155"]["Value"] == [sop]
    assert item["00081190"]["Value"] == [f"{web}/studies/{study}/series/{series}/instances/{sop}"]
    got = session.get(f"{web}/studies/{study}/series/{series}/instances/{sop}",
                      headers={"Accept": "application/dicom; transfer-syntax=*"}, timeout=60)
    assert got.status_code == 200
    assert got.content == data


def test_single_part_stow_into_a_study_checks_the_study(session, web) -> None:
    data = _file("explicit")
    study, _, sop = _uids(data)
    other = _store_one(session, web, data, study="1.2.3.4")
    assert other.status_code == 409
    (failed,) = other.json()["00081198"]["Value"]
    assert failed["00081155"]["Value"] == [sop]
    assert _store_one(session, web, data, study=study).status_code == 200


def test_storing_the_same_file_again_succeeds_other_bytes_conflict(session, web) -> None:
    """Google's own sample test stores one file into one store at the start of every
    test: the same bytes again are a success (one copy kept). Other bytes under a stored
    SOP Instance UID are a conflict, and the stored instance is never replaced."""
    data = _file("explicit")
    study, series, sop = _uids(data)
    for _ in range(3):
        r = _store_one(session, web, data)
        assert r.status_code == 200, r.text
        assert r.json()["00081199"]["Value"][0]["00081155"]["Value"] == [sop]
    assert len(session.get(f"{web}/instances", timeout=60).json()) == 1
    changed = pydicom.dcmread(io.BytesIO(data))
    changed.PatientName = "Someone^Else"
    buf = io.BytesIO()
    changed.save_as(buf, enforce_file_format=True)
    conflict = _store_one(session, web, buf.getvalue())
    assert conflict.status_code == 409
    (failed,) = conflict.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0x0111] and failed["00081155"]["Value"] == [sop]
    got = session.get(f"{web}/studies/{study}/series/{series}/instances/{sop}",
                      headers={"Accept": "application/dicom; transfer-syntax=*"}, timeout=60)
    assert got.content == data


def test_single_part_stow_refuses_what_is_not_one_instance(session, web) -> None:
    empty = _store_one(session, web, b"")
    assert empty.status_code == 400
    assert "empty" in empty.json()["error"]["message"]
    junk = _store_one(session, web, b"not DICOM at all" * 10)
    assert junk.status_code == 409
    (failed,) = junk.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xC000]
    wrong = session.post(f"{web}/studies", data=_file("explicit"),
                         headers={"Content-Type": "application/octet-stream"}, timeout=60)
    assert wrong.status_code == 415
    assert "application/dicom" in wrong.json()["error"]["message"]


def test_single_part_retrieve_sends_one_part10_file(session, web) -> None:
    """RetrieveInstance's single-part Accept (a Google extension): the body is the
    file itself, not a multipart body that a client would save as a corrupt .dcm."""
    for kind in ("explicit", "implicit", "j2k"):
        data = _file(kind)
        assert _store_one(session, web, data).status_code == 200
        study, series, sop = _uids(data)
        url = f"{web}/studies/{study}/series/{series}/instances/{sop}"
        stored = pydicom.dcmread(io.BytesIO(data))

        as_stored = session.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"},
                                timeout=60)
        assert as_stored.status_code == 200
        assert as_stored.headers["content-type"] == (
            f"application/dicom; transfer-syntax={stored.file_meta.TransferSyntaxUID}")
        assert as_stored.content == data

        default = session.get(url, headers={"Accept": "application/dicom"}, timeout=60)
        assert default.status_code == 200
        ds = pydicom.dcmread(io.BytesIO(default.content))
        assert str(ds.SOPInstanceUID) == sop
        expected = (ExplicitVRLittleEndian if stored.file_meta.TransferSyntaxUID
                    == ImplicitVRLittleEndian else stored.file_meta.TransferSyntaxUID)
        assert ds.file_meta.TransferSyntaxUID == expected
        assert default.headers["content-type"] == f"application/dicom; transfer-syntax={expected}"
        np.testing.assert_array_equal(ds.pixel_array, stored.pixel_array)

        explicit = session.get(url, headers={
            "Accept": f"application/dicom; transfer-syntax={ExplicitVRLittleEndian}"},
            timeout=60)
        assert explicit.status_code == 200
        ds = pydicom.dcmread(io.BytesIO(explicit.content))
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        np.testing.assert_array_equal(ds.pixel_array, stored.pixel_array)


def test_accept_items_are_taken_by_preference(session, web) -> None:
    """RFC 9110 ``q`` values: the most preferred item the server can send, never one
    the client refused with ``q=0``."""
    data = _file("explicit")
    assert _store_one(session, web, data).status_code == 200
    url = "{}/studies/{}/series/{}/instances/{}".format(web, *_uids(data))
    single = "application/dicom; transfer-syntax=*"
    multi = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    cases = {f"{single}; q=0.2, {multi}": "multipart/related",
             f"{multi}; q=0.5, {single}": "application/dicom",
             f"{single}; q=0, {multi}; q=0.1": "multipart/related"}
    for accept, kind in cases.items():
        r = session.get(url, headers={"Accept": accept}, timeout=60)
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind), accept
    refused = session.get(url, headers={"Accept": f"{single}; q=0"}, timeout=60)
    assert refused.status_code == 406
    png = session.get(f"{url}/rendered", headers={"Accept": "image/jpeg; q=0.1, image/png"},
                      timeout=60)
    assert png.headers["content-type"] == "image/png"


def test_single_part_accept_is_for_one_instance_only(session, web) -> None:
    data = _file("explicit")
    assert _store_one(session, web, data).status_code == 200
    study, series, _ = _uids(data)
    for url in (f"{web}/studies/{study}", f"{web}/studies/{study}/series/{series}"):
        r = session.get(url, headers={"Accept": "application/dicom"}, timeout=60)
        assert r.status_code == 406
        assert "multipart/related" in r.json()["error"]["message"]
    # The sample's retrieve of a study sends no Accept at all: multipart, as stored.
    r = session.get(f"{web}/studies/{study}", timeout=60)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith('multipart/related; type="application/dicom"')


def test_empty_search_is_204_no_content(session, web, server, store) -> None:
    """A QIDO search that matches nothing: 204 with no body (PS3.18 and Google's own
    sample test, which expects ``<Response [204]>``), at every level."""
    for path in ("studies", "series", "instances"):
        r = session.get(f"{web}/{path}", timeout=60)
        assert r.status_code == 204 and r.content == b""
    assert _store_one(session, web, _file("explicit")).status_code == 200
    study, series, _ = _uids(_file("explicit"))
    assert session.get(f"{web}/studies", params={"PatientName": "Sally Zhang"},
                       timeout=60).status_code == 204
    found = session.get(f"{web}/studies", timeout=60)
    assert found.status_code == 200 and len(found.json()) == 1
    past_the_end = session.get(f"{web}/instances", params={"offset": "5"}, timeout=60)
    assert past_the_end.status_code == 204
    # dicomweb-client reads 204 as "no results".
    client = DICOMwebClient(url=web)
    assert client.search_for_studies(search_filters={"PatientName": "Sally Zhang"}) == []
    assert len(client.search_for_series(study)) == 1


def test_rendered_png_and_delete_study(session, web, healthcare) -> None:
    data = _file("frames")
    assert _store_one(session, web, data).status_code == 200
    study, series, sop = _uids(data)
    url = f"{web}/studies/{study}/series/{series}/instances/{sop}"
    png = session.get(f"{url}/rendered", headers={"Accept": "image/png"}, timeout=60)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    assert Image.open(io.BytesIO(png.content)).size == (ds.Columns, ds.Rows)
    frame = session.get(f"{url}/frames/2/rendered", headers={"Accept": "image/png"}, timeout=60)
    assert frame.status_code == 200 and frame.content != png.content

    deleted = session.delete(f"{web}/studies/{study}",
                             headers={"Content-Type": "application/dicom+json; charset=utf-8"},
                             timeout=60)
    assert deleted.status_code == 200
    done = wait_for_operation(healthcare, deleted.json()["name"])
    assert "error" not in done
    assert session.get(url, headers={"Accept": "application/dicom"}, timeout=60).status_code == 404


def test_export_names_follow_the_discovery_document(healthcare, session, web, store,
                                                    bucket) -> None:
    """``.../{instance_id}[/{frame_number}].{extension}``, ``.jpg`` for image/jpeg."""
    single, frames = _file("explicit"), _file("frames")
    for data in (single, frames):
        assert _store_one(session, web, data).status_code == 200
    op = stores_api(healthcare).export(name=store, body={"gcsDestination": {
        "uriPrefix": f"gs://{bucket.name}/jpg", "mimeType": "image/jpeg"}}).execute()
    done = wait_for_operation(healthcare, op["name"])
    assert "error" not in done and done["metadata"]["counter"]["success"] == "2"
    names = {b.name for b in bucket.list_blobs(prefix="jpg/")}
    n_frames = int(pydicom.dcmread(io.BytesIO(frames), stop_before_pixels=True).NumberOfFrames)
    expected = {"jpg/{}/{}/{}.jpg".format(*_uids(single))}
    expected |= {"jpg/{}/{}/{}/".format(*_uids(frames)) + f"{n}.jpg"
                 for n in range(1, n_frames + 1)}
    assert names == expected
    blob = bucket.blob(sorted(expected)[0])
    assert Image.open(io.BytesIO(blob.download_as_bytes())).format == "JPEG"
