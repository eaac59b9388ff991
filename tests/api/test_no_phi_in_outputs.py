"""No patient value leaves the server through errors, logs or failure reasons.

Every instance here carries a unique marker in its identifying attributes and is
made to fail in a different way; the marker must not appear in any response body,
operation failure reason, or the server's log.
"""

from __future__ import annotations

import io
import uuid

import requests
from pydicom import dcmread

from dicom_deid.devstack import wait_for_operation
from tests.api.dicom_factory import make_instance, to_bytes
from tests.helpers import stow_raw


def _marked(marker: str):
    ds = make_instance(patient_name=f"{marker}^Family", patient_id=marker)
    ds.InstitutionName = marker
    return ds


def test_marker_never_leaves_the_server(server, healthcare, store, bucket):
    marker = f"PHI{uuid.uuid4().hex[:10].upper()}"
    base = f"{server.url}/v1/{store}/dicomWeb"
    outputs: list[str] = []

    good = to_bytes(_marked(marker))
    truncated = good[: len(good) // 2 + 1]
    no_study = _marked(marker)
    del no_study.StudyInstanceUID
    bad_pixels = _marked(marker)
    bad_pixels.PixelData = b"\x01\x02"  # far shorter than Rows x Columns
    not_dicom = f"{marker} is not a DICOM file".encode()

    r = stow_raw(base, [good, truncated, to_bytes(no_study), not_dicom, to_bytes(bad_pixels)])
    assert r.status_code == 202, r.text
    outputs.append(r.text)
    failed = r.json()["00081198"]["Value"]
    assert len(failed) == 3  # truncated, missing StudyInstanceUID, not DICOM

    again = stow_raw(base, [good])  # the same bytes again: stored already
    assert again.status_code == 200
    outputs.append(again.text)
    other = dcmread(io.BytesIO(good))  # other bytes under a stored UID: a conflict
    other.InstitutionName = f"{marker} Annex"
    buf = io.BytesIO()
    other.save_as(buf, enforce_file_format=True)
    conflict = stow_raw(base, [buf.getvalue()])
    assert conflict.status_code == 409
    outputs.append(conflict.text)

    # Pixel requests on an instance whose pixel data cannot be decoded.
    uids = (bad_pixels.StudyInstanceUID, bad_pixels.SeriesInstanceUID, bad_pixels.SOPInstanceUID)
    instance = f"{base}/studies/{uids[0]}/series/{uids[1]}/instances/{uids[2]}"
    octets = 'multipart/related; type="application/octet-stream"'
    implicit = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2'
    for url, accept in [(f"{instance}/rendered", "image/png"),
                        (f"{instance}/frames/1", octets), (instance, implicit)]:
        resp = requests.get(url, headers={"Accept": accept})
        if resp.status_code >= 400:
            outputs.append(resp.text)
    # QIDO errors echo nothing of the stored data either.
    outputs.append(requests.get(f"{base}/instances", params={"PatientComments": marker}).text)

    # Import: a non-DICOM object whose content carries the marker.
    bucket.blob("in/readme.dcm").upload_from_string(not_dicom)
    bucket.blob("in/truncated.dcm").upload_from_string(truncated)
    stores = healthcare.projects().locations().datasets().dicomStores()
    op = stores.import_(name=store, body={"gcsSource": {
        "uri": f"gs://{bucket.name}/in/*.dcm"}}).execute()
    op = wait_for_operation(healthcare, op["name"])
    assert op["metadata"]["counter"]["failure"] == "2"
    failures = requests.get(op["metadata"]["logsUrl"])
    assert len(failures.json()["failures"]) == 2
    outputs.append(failures.text)
    outputs.append(str(op))

    log = server.log_path.read_text(errors="replace")
    for text in [*outputs, log]:
        assert marker not in text
