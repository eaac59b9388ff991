"""Every file pydicom ships for its own tests, uploaded to one store.

Each file is either stored and then comes back byte for byte, or refused with a
per-instance reason. The corpus has odd files on purpose (no preamble, no meta,
truncated, big endian, deflated, DICOMDIRs, non-DICOM text) and several files share a
SOP Instance UID, so later copies are conflicts that must not replace the first.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from dataclasses import dataclass

import pytest
import requests
from PIL import Image
from pydicom import dcmread

from dicom_deid.corpus import realworld
from dicom_deid.engine.dataset_bytes import body_offset
from tests.helpers import retrieve_raw, stow_raw

FAILED_SOP_SEQ = "00081198"
REFERENCED_SOP_SEQ = "00081199"
DUPLICATE = 0x0111


def same_instance(sent: bytes, got: list[bytes]) -> bool:
    """What came back is what was sent: byte for byte, or, for a dataset sent without a
    Part 10 meta (or one without a Transfer Syntax UID), the same dataset bytes after
    the meta the store added."""
    if got == [sent]:
        return True
    if len(got) != 1 or got[0][128:132] != b"DICM":
        return False
    meta = dcmread(io.BytesIO(got[0]), stop_before_pixels=True).file_meta
    return (has_transfer_syntax(sent) is False and "TransferSyntaxUID" in meta
            and got[0][body_offset(got[0]):] == sent[body_offset(sent):])


def has_transfer_syntax(data: bytes) -> bool:
    try:
        meta = dcmread(io.BytesIO(data), force=True, stop_before_pixels=True).file_meta
    except Exception:
        return False
    return data[128:132] == b"DICM" and bool(meta.get("TransferSyntaxUID"))


@dataclass
class Stored:
    name: str
    data: bytes
    study: str
    series: str
    sop: str


def _corpus() -> list[str]:
    # The files in pydicom's wheel (not pydicom-data's: the real-world corpus test has them).
    return sorted(str(f.path) for f in realworld.files(sources=("pydicom",)))


def _uids_from_url(url: str) -> tuple[str, str, str]:
    tail = url.split("/studies/", 1)[1].split("/")
    assert tail[1] == "series" and tail[3] == "instances", url
    return tail[0], tail[2], tail[4]


@pytest.mark.filterwarnings("ignore::UserWarning")  # the corpus is odd on purpose
def test_every_pydicom_file_is_stored_exactly_or_refused_with_a_reason(server, healthcare,
                                                                      store):
    base = f"{server.url}/v1/{store}/dicomWeb"
    files = _corpus()
    assert len(files) > 150, "pydicom's test corpus is missing"

    stored: dict[str, Stored] = {}  # by SOP Instance UID, first upload wins
    refused: Counter = Counter()
    conflicts: list[tuple[str, str]] = []  # (file, first file with that SOP UID)
    identical: list[tuple[str, str]] = []  # (file, first file with the same bytes)
    problems: list[str] = []

    for path in files:
        name = os.path.relpath(path, os.path.dirname(os.path.dirname(path)))
        with open(path, "rb") as f:
            data = f.read()
        r = stow_raw(base, [data])
        if r.status_code >= 500:
            problems.append(f"{name}: HTTP {r.status_code} {r.text[:200]}")
            continue
        try:
            body = r.json()
        except ValueError:
            problems.append(f"{name}: HTTP {r.status_code}, body is not JSON")
            continue

        if r.status_code == 200:
            items = body.get(REFERENCED_SOP_SEQ, {}).get("Value", [])
            if len(items) != 1 or FAILED_SOP_SEQ in body:
                problems.append(f"{name}: 200 with {len(items)} stored items: {body}")
                continue
            study, series, sop = _uids_from_url(items[0]["00081190"]["Value"][0])
            if items[0]["00081155"]["Value"][0] != sop:
                problems.append(f"{name}: RetrieveURL does not name the stored SOP UID")
            if sop in stored:
                # The same bytes again are stored already (a success, one copy kept);
                # other bytes under a stored UID must have been a conflict.
                if data != stored[sop].data:
                    problems.append(f"{name}: stored although {stored[sop].name} has its "
                                    "UID and other bytes")
                else:
                    identical.append((name, stored[sop].name))
                continue
            stored[sop] = Stored(name, data, study, series, sop)
            got = retrieve_raw(base, study, series, sop)
            if not same_instance(data, got):
                problems.append(f"{name}: stored but retrieved {len(got)} part(s) that "
                                f"differ from the {len(data)} bytes sent")
            continue

        failed = body.get(FAILED_SOP_SEQ, {}).get("Value", [])
        if r.status_code != 409 or len(failed) != 1 or REFERENCED_SOP_SEQ in body:
            problems.append(f"{name}: HTTP {r.status_code} with {len(failed)} failure "
                            f"item(s): {body}")
            continue
        item = failed[0]
        code = item.get("00081197", {}).get("Value", [None])[0]
        reason = item.get("00000902", {}).get("Value", [""])[0]
        if not isinstance(code, int) or not reason.strip():
            problems.append(f"{name}: refusal without a FailureReason and reason: {item}")
            continue
        refused[(f"0x{code:04X}", reason)] += 1
        if code == DUPLICATE:
            sop = item.get("00081155", {}).get("Value", [None])[0]
            first = stored.get(sop)
            if first is None:
                problems.append(f"{name}: duplicate of a SOP UID nothing stored has ({sop})")
                continue
            conflicts.append((name, first.name))
            # The conflict replaced nothing: the first copy is still what was sent.
            if not same_instance(first.data, retrieve_raw(base, first.study, first.series, sop)):
                problems.append(f"{name}: after its conflict, {first.name} no longer "
                                "comes back byte for byte")

    summary = (f"{len(files)} files: {len(stored)} stored, {sum(refused.values())} refused: "
               + "; ".join(f"{n} x {code} {reason!r}" for (code, reason), n
                           in sorted(refused.items(), key=lambda kv: -kv[1]))
               + f"; conflicts: {conflicts}; byte-identical copies: {identical}")
    print(summary)
    assert not problems, "\n".join(problems) + "\n" + summary
    assert len(stored) + len(identical) + sum(refused.values()) == len(files), summary
    assert stored, summary
    assert conflicts, "pydicom's corpus has files sharing SOP UIDs: " + summary

    # After everything: every stored file is still exactly what was first sent, its
    # metadata can be read, and the store counts what was stored, nothing else.
    for s in stored.values():
        assert same_instance(s.data, retrieve_raw(base, s.study, s.series, s.sop)), (
            s.name, summary)
        r = requests.get(f"{base}/studies/{s.study}/series/{s.series}/instances/{s.sop}"
                         "/metadata", headers={"Accept": "application/dicom+json"})
        assert r.status_code == 200, (s.name, r.status_code, r.text[:200], summary)
        assert r.json()[0]["00080018"]["Value"] == [s.sop], (s.name, summary)

    # Pixel views of odd files may be refused (4xx), never a server error; a rendering
    # that is given has the image's size.
    views: Counter = Counter()
    for s in stored.values():
        ds = dcmread(io.BytesIO(s.data), stop_before_pixels=True, force=True)
        inst = f"{base}/studies/{s.study}/series/{s.series}/instances/{s.sop}"
        for view, accept in (("rendered", "image/png"), ("frames/1", 'multipart/related; '
                                                                  'type="*/*"')):
            r = requests.get(f"{inst}/{view}", headers={"Accept": accept})
            views[(view, r.status_code)] += 1
            assert r.status_code in (200, 404, 406), (s.name, view, r.status_code, r.text[:200])
            if view == "rendered" and r.status_code == 200:
                img = Image.open(io.BytesIO(r.content))
                assert img.size == (ds.Columns, ds.Rows), (s.name, img.size)
    print(dict(views))

    metrics = healthcare.projects().locations().datasets().dicomStores().getDICOMStoreMetrics(
        name=store).execute()
    assert int(metrics["instanceCount"]) == len(stored), (metrics, summary)
    sizes = sum(len(retrieve_raw(base, s.study, s.series, s.sop)[0]) for s in stored.values())
    assert int(metrics["blobStorageSizeBytes"]) == sizes, (metrics, summary)
    assert int(metrics["studyCount"]) == len({s.study for s in stored.values()}), summary
    assert int(metrics["seriesCount"]) == len({(s.study, s.series) for s in stored.values()})

    r = requests.get(f"{base}/instances", params={"limit": 5000},
                     headers={"Accept": "application/dicom+json"})
    assert r.status_code == 200
    assert {i["00080018"]["Value"][0] for i in r.json()} == set(stored), summary
