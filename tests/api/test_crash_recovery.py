"""Crash safety: SIGKILL the server mid-upload and mid-operation, restart, check the store.

The server here is a process of its own on its own data directory, not the session
one, because the test kills it. What an acknowledged STOW promises is checked from
the outside only: after a restart every acknowledged instance comes back byte for
byte, the index, QIDO and the files on disk agree, nothing is left in ``tmp/``, and
an instance whose upload was cut off can be sent again.
"""

from __future__ import annotations

import io
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from dicom_deid.devstack import ServerProcess, free_port, healthcare_client, wait_for_operation
from tests.helpers import PARENT, stow_raw

THREADS = 3
PER_REQUEST = 10
CYCLES = 3

_rng = np.random.default_rng(20240611)


def make_instance(study: str, series: str, number: int) -> tuple[str, bytes]:
    """A small 64x64 16-bit MR image with fresh UIDs, as Part 10 bytes."""
    sop = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.PatientID = "CRASH-TEST"
    ds.PatientName = "Crash^Test"
    ds.Modality = "MR"
    ds.InstanceNumber = number
    ds.Rows = ds.Columns = 64
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = _rng.integers(0, 4096, (64, 64), dtype=np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return sop, buf.getvalue()


@dataclass
class Batch:
    """One STOW request: one new study/series with PER_REQUEST instances."""

    study: str
    series: str
    instances: dict[str, bytes]

    @classmethod
    def new(cls) -> Batch:
        study, series = generate_uid(), generate_uid()
        items = dict(make_instance(study, series, n + 1) for n in range(PER_REQUEST))
        return cls(study, series, items)


@dataclass
class Ledger:
    """What the clients sent and what the server acknowledged, across all cycles."""

    batches: dict[str, Batch] = field(default_factory=dict)  # by series UID
    acked: set[str] = field(default_factory=set)
    unacked: list[Batch] = field(default_factory=list)  # in flight at kill time
    bad_status: list[tuple[int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def sent(self) -> dict[str, bytes]:
        return {sop: data for b in self.batches.values() for sop, data in b.instances.items()}


def referenced_sops(body: dict) -> set[str]:
    """SOPInstanceUIDs in a STOW response's ReferencedSOPSequence (0008,1199)."""
    return {item["00081155"]["Value"][0] for item in body.get("00081199", {}).get("Value", [])}


def failed_sops(body: dict) -> dict[str, int]:
    """SOPInstanceUID -> FailureReason from a STOW response's FailedSOPSequence."""
    return {item["00081155"]["Value"][0]: item["00081197"]["Value"][0]
            for item in body.get("00081198", {}).get("Value", [])}


def uploader(web: str, ledger: Ledger, stop: threading.Event) -> None:
    """Send STOW requests until told to stop or the server goes away."""
    while not stop.is_set():
        batch = Batch.new()
        with ledger.lock:
            ledger.batches[batch.series] = batch
        try:
            r = stow_raw(web, list(batch.instances.values()))
        except requests.RequestException:
            with ledger.lock:
                ledger.unacked.append(batch)
            return
        with ledger.lock:
            if r.status_code in (200, 202):
                acked = referenced_sops(r.json())
                ledger.acked |= acked
                if acked != set(batch.instances):
                    ledger.unacked.append(batch)
            else:
                ledger.bad_status.append((r.status_code, r.text[:200]))
                ledger.unacked.append(batch)


def burst_then_kill(server: ServerProcess, web: str, ledger: Ledger) -> float:
    """Upload from THREADS clients; SIGKILL the server after ~1-2 s, mid-burst."""
    stop = threading.Event()
    before = len(ledger.acked)
    threads = [threading.Thread(target=uploader, args=(web, ledger, stop), daemon=True)
               for _ in range(THREADS)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    kill_at = t0 + random.uniform(1.0, 1.8)
    while time.monotonic() < kill_at or len(ledger.acked) == before:
        assert time.monotonic() - t0 < 20, "no STOW request was acknowledged within 20 s"
        time.sleep(0.02)
    server.kill()
    stop.set()
    for t in threads:
        t.join(30)
        assert not t.is_alive(), "an upload thread hung after the server was killed"
    return time.monotonic() - t0


def files_under(path: Path) -> list[Path]:
    return [Path(d) / f for d, _, fs in os.walk(path) for f in fs]


def qido_all_sops(web: DICOMwebClient, page: int = 500) -> list[str]:
    """Every instance in the store, paging QIDO-RS with limit/offset."""
    sops: list[str] = []
    while True:
        rows = web.search_for_instances(limit=page, offset=len(sops))
        sops += [r["00080018"]["Value"][0] for r in rows]
        if len(rows) < page:
            return sops


def series_parts(web: str, study: str, series: str) -> dict[str, bytes]:
    """WADO-RS retrieve of a series as stored (transfer-syntax=*), keyed by SOPInstanceUID."""
    r = requests.get(f"{web}/studies/{study}/series/{series}", headers={
        "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
    assert r.status_code == 200, r.text[:300]
    boundary = r.headers["content-type"].split("boundary=")[1].split(";")[0].strip('"')
    out = {}
    for chunk in r.content.split(f"--{boundary}".encode())[1:-1]:
        _head, _, data = chunk.partition(b"\r\n\r\n")
        data = data[:-2]
        sop = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID
        out[str(sop)] = data
    return out


def metrics(healthcare, store: str) -> dict:
    return healthcare.projects().locations().datasets().dicomStores().getDICOMStoreMetrics(
        name=store).execute()


def check_consistent(healthcare, web_client: DICOMwebClient, data_dir: Path,
                     store: str) -> list[str]:
    """Index, QIDO and disk agree and no temp file survived; returns the stored SOP UIDs."""
    leftovers = files_under(data_dir / "tmp")
    assert leftovers == [], f"temp files survived the restart: {leftovers[:5]}"
    count = int(metrics(healthcare, store)["instanceCount"])
    sops = qido_all_sops(web_client)
    assert len(sops) == len(set(sops)), "QIDO paging returned an instance twice"
    assert len(sops) == count, "getDICOMStoreMetrics and QIDO disagree on the instance count"
    on_disk = files_under(data_dir / "objects")
    assert len(on_disk) == count, (
        f"{len(on_disk)} files under objects/ but {count} instances indexed: "
        "unreferenced or missing instance files"
    )
    return sops


@pytest.fixture
def crash_server(tmp_path: Path, gcs_emulator):
    proc = ServerProcess(tmp_path / "data", free_port(), tmp_path / "server.log",
                         env={"STORAGE_EMULATOR_HOST": gcs_emulator.host}).start()
    yield proc
    proc.stop()


def test_sigkill_mid_upload_and_mid_operation(crash_server: ServerProcess, bucket) -> None:
    server = crash_server
    data_dir = server.data_dir
    healthcare = healthcare_client(server.url)
    datasets = healthcare.projects().locations().datasets()
    datasets.create(parent=PARENT, datasetId="crash", body={}).execute()
    dataset = f"{PARENT}/datasets/crash"
    datasets.dicomStores().create(parent=dataset, dicomStoreId="burst", body={}).execute()
    store = f"{dataset}/dicomStores/burst"
    web = f"{server.url}/v1/{store}/dicomWeb"
    web_client = DICOMwebClient(url=web)
    ledger = Ledger()
    verified: set[str] = set()

    for cycle in range(CYCLES):
        ledger.unacked.clear()
        burst_then_kill(server, web, ledger)
        assert ledger.bad_status == [], f"cycle {cycle}: STOW failed: {ledger.bad_status[:3]}"
        assert ledger.unacked, f"cycle {cycle}: no upload was cut off by the kill"
        server.start()

        stored = set(check_consistent(healthcare, web_client, data_dir, store))
        sent = ledger.sent()
        missing = ledger.acked - stored
        assert not missing, f"cycle {cycle}: {len(missing)} acknowledged instance(s) lost"
        assert stored <= set(sent), "the store holds an instance no client sent"
        assert int(metrics(healthcare, store)["instanceCount"]) >= len(ledger.acked)

        # Every acknowledged instance not yet checked comes back byte for byte.
        for batch in ledger.batches.values():
            todo = set(batch.instances) & (ledger.acked - verified)
            if not todo:
                continue
            got = series_parts(web, batch.study, batch.series)
            for sop in todo:
                assert got.get(sop) == batch.instances[sop], \
                    f"cycle {cycle}: acknowledged instance {sop} changed or missing"
            verified |= todo

        # Uploads cut off by the kill can be sent again: each is stored now, or was
        # committed before the server died and is the same bytes (a success, with one
        # copy kept); never a failure, never a server error.
        for batch in ledger.unacked:
            r = stow_raw(web, list(batch.instances.values()))
            assert r.status_code == 200, (r.status_code, r.text[:300])
            body = r.json()
            assert referenced_sops(body) == set(batch.instances)
            assert failed_sops(body) == {}
            ledger.acked |= set(batch.instances)
        ledger.unacked.clear()
        assert int(metrics(healthcare, store)["instanceCount"]) == len(ledger.acked)

    # Sending an acknowledged upload again is a success that stores nothing twice.
    batch = next(iter(ledger.batches.values()))
    r = stow_raw(web, list(batch.instances.values()))
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert referenced_sops(r.json()) == set(batch.instances)
    assert int(metrics(healthcare, store)["instanceCount"]) == len(ledger.acked)

    # An operation running at kill time is reported done with ABORTED after restart.
    total = len(ledger.acked)
    ops = datasets.operations()
    op = datasets.dicomStores().export(name=store, body={"gcsDestination": {
        "uriPrefix": f"gs://{bucket.name}/crash", "mimeType": "image/png"}}).execute()
    deadline = time.monotonic() + 10
    while not any(bucket.list_blobs(prefix="crash/", max_results=1)):
        assert time.monotonic() < deadline, "the export wrote nothing within 10 s"
        time.sleep(0.05)
    assert ops.get(name=op["name"]).execute().get("done") is not True, (
        f"export of {total} instances finished before the kill; the store is too small"
    )
    server.kill()
    server.start()
    after = wait_for_operation(healthcare, op["name"], timeout=10)
    assert after["done"] is True
    assert after["error"]["code"] == 10, after  # google.rpc.Code.ABORTED
    assert "response" not in after
    assert after["metadata"]["apiMethodName"].endswith("ExportDicomData")
    assert after["metadata"]["endTime"] >= after["metadata"]["createTime"]
    assert int(after["metadata"]["counter"].get("success", "0")) < total
    listed = ops.list(name=dataset, filter="done=false").execute().get("operations", [])
    assert op["name"] not in [o["name"] for o in listed]
    # The store itself is unharmed by the interrupted export.
    stored = check_consistent(healthcare, web_client, data_dir, store)
    assert set(stored) == ledger.acked
    sample = random.sample(sorted(ledger.batches), 5)
    for series in sample:
        batch = ledger.batches[series]
        assert series_parts(web, batch.study, batch.series) == batch.instances
