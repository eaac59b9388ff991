"""Nothing the server prints quotes a DICOM value, and no read floods its log.

pydicom warns and logs about invalid values by quoting them (``Invalid value for VR UI:
'<value>'``, ``Unknown encoding '<value>'``), on every read the server makes. Here every
VR pydicom validates holds an invalid value carrying a unique marker, one instance
names the marker as its Specific Character Set, and the instances are stored, read
every way (metadata, QIDO, retrieve with and without transcoding, rendered, frames),
de-identified (in the operation's process pool), exported and imported back. The
session's server (a ``dicom-deid serve`` process with forked workers) writes its stdout
and stderr to one log: the marker must not be in it.

A sequence nested 10,000 levels deep (defined lengths, so the reader takes it) made
pydicom log one line per level it unwound on each metadata read or search: at most one
line per request now, whatever the server does with such an instance.
"""

from __future__ import annotations

import struct
import uuid
import warnings

import pytest
import requests
from pydicom import config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from dicom_deid.devstack import wait_for_operation
from tests.api.dicom_factory import make_instance, to_bytes
from tests.helpers import new_store, stores_api, stow_raw

BASIC = {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}}
OCTETS = 'multipart/related; type="application/octet-stream"'
IMPLICIT = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2'

#: One element per VR pydicom validates, each invalid for its VR and quoting ``{m}``.
INVALID = {
    "FrameOfReferenceUID": "1.2.{m}",  # UI: letters
    "StudyDate": "{m}",  # DA
    "AcquisitionDateTime": "{m}",  # DT
    "StudyTime": "{m}",  # TM
    "SeriesNumber": "{m}",  # IS
    "SliceThickness": "{m}",  # DS
    "PatientAge": "{m}",  # AS
    "BodyPartExamined": "{m}",  # CS: lower case
    "RetrieveAETitle": "{m}" + "a" * 20,  # AE: over 16
    "InstitutionName": "{m}" + "x" * 100,  # LO: over 64
    "StationName": "{m}" + "y" * 30,  # SH: over 16
    "ReferringPhysicianName": "{m}" + "z" * 70,  # PN: a component over 64
    "PatientComments": "{m}" + "s" * 10300,  # LT: over 10240
    "InstitutionAddress": "{m}" + "t" * 1100,  # ST: over 1024
    "RetrieveURL": "  {m}",  # UR: leading spaces
}


def _raw(ds: Dataset, keyword: str, text: str) -> None:
    """Set an element's bytes as given: pydicom refuses most of these values if set."""
    tag = Tag(tag_for_keyword(keyword))
    value = text.encode()
    value += b" " * (len(value) % 2)
    ds[tag] = RawDataElement(tag, dictionary_VR(tag), len(value), value, 0, False, True)


def _invalid_everywhere(marker: str) -> Dataset:
    ds = make_instance()
    for keyword, text in INVALID.items():
        _raw(ds, keyword, text.format(m=marker))
    item = Dataset()
    _raw(item, "CodeValue", marker + "w" * 20)  # SH in an item
    _raw(item, "CodingSchemeDesignator", marker)
    ds.ProcedureCodeSequence = [item]
    return ds


def _unknown_charset(marker: str) -> Dataset:
    ds = make_instance(patient_name="Doe^Jane")
    _raw(ds, "SpecificCharacterSet", marker)
    return ds


def _bytes(ds: Dataset) -> bytes:
    with warnings.catch_warnings(), config.disable_value_validation():
        warnings.simplefilter("ignore")
        return to_bytes(ds)


def _instance_url(base: str, ds: Dataset) -> str:
    return (f"{base}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}")


def _read_every_way(base: str, instances: list[Dataset]) -> None:
    for ds in instances:
        url = _instance_url(base, ds)
        study = url.split("/series/")[0]
        for path, accept in [("/metadata", None), ("", None), ("", IMPLICIT),
                             ("/rendered", "image/png"), ("/rendered", "image/jpeg"),
                             ("/frames/1", OCTETS), ("/frames/1/rendered", "image/png")]:
            requests.get(url + path, headers={"Accept": accept} if accept else {}, timeout=60)
        requests.get(f"{study}/metadata", timeout=60)
        requests.get(f"{study}/series", params={"includefield": "all"}, timeout=60)
    for level in ("studies", "series", "instances"):
        requests.get(f"{base}/{level}", params={"includefield": "all"}, timeout=60)


def test_no_value_reaches_the_server_output(server, healthcare, dataset, store, bucket):
    marker = f"qv{uuid.uuid4().hex[:12]}"
    instances = [_invalid_everywhere(marker), _unknown_charset(marker)]
    parts = [_bytes(ds) for ds in instances]
    base = f"{server.url}/v1/{store}/dicomWeb"
    r = stow_raw(base, parts)
    assert r.status_code == 200, r.text  # both stored: each is read on the ways below
    _read_every_way(base, instances)

    stores = stores_api(healthcare)
    dest = new_store(healthcare, dataset, "deid")
    op = stores.deidentify(sourceStore=store, body={"destinationStore": dest,
                                                    "config": BASIC}).execute()
    wait_for_operation(healthcare, op["name"])
    for level in ("studies", "series", "instances"):
        requests.get(f"{server.url}/v1/{dest}/dicomWeb/{level}",
                     params={"includefield": "all"}, timeout=60)
    op = stores.export(name=store, body={"gcsDestination": {
        "uriPrefix": f"gs://{bucket.name}/out"}}).execute()
    wait_for_operation(healthcare, op["name"])
    for i, data in enumerate(parts):
        bucket.blob(f"in/{i}.dcm").upload_from_string(data)
    back = new_store(healthcare, dataset, "back")
    for uri in (f"gs://{bucket.name}/out/**", f"gs://{bucket.name}/in/*.dcm"):
        op = stores.import_(name=back, body={"gcsSource": {"uri": uri}}).execute()
        wait_for_operation(healthcare, op["name"])
    _read_every_way(f"{server.url}/v1/{back}/dicomWeb", instances)

    log = server.log_path.read_text(errors="replace")
    quoted = [line for line in log.splitlines() if marker in line]
    assert quoted == [], f"{len(quoted)} line(s) of the server's output quote a value:\n" + (
        "\n".join(quoted[:5]))


def _nested(depth: int) -> bytes:
    """Content Sequence items nested ``depth`` levels, every length defined."""
    inner = b""
    for _ in range(depth):
        item = struct.pack("<HHI", 0xFFFE, 0xE000, len(inner)) + inner
        inner = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, len(item)) + item
    return inner


def _deeply_nested(depth: int) -> tuple[Dataset, bytes]:
    ds = make_instance()
    pixels = ds.PixelData
    del ds.PixelData  # written after the sequence: elements go in tag order
    tail = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, len(pixels)) + pixels
    return ds, to_bytes(ds) + _nested(depth) + tail


@pytest.mark.parametrize("depth", [10_000])
def test_a_deeply_nested_sequence_logs_at_most_a_line_per_request(server, store, depth):
    ds, data = _deeply_nested(depth)
    base = f"{server.url}/v1/{store}/dicomWeb"

    def lines() -> int:
        return len(server.log_path.read_text(errors="replace").splitlines())

    before = lines()
    r = stow_raw(base, [data])
    assert r.status_code in (200, 409), r.text  # stored, or refused: either way quietly
    logged = {"stow": lines() - before}
    url = _instance_url(base, ds)
    for name, path, accept in [("metadata", f"{url}/metadata", None),
                               ("retrieve", url, None),
                               ("transcode", url, IMPLICIT),
                               ("rendered", f"{url}/rendered", "image/png"),
                               ("search", f"{base}/instances", None)]:
        before = lines()
        requests.get(path, params={"includefield": "all"} if name == "search" else None,
                     headers={"Accept": accept} if accept else {}, timeout=60)
        logged[name] = lines() - before
    assert max(logged.values()) <= 1, logged
