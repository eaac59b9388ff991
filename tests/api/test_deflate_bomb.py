"""Deflate bombs: Deflated Explicit VR Little Endian instances that inflate far past
their size (issue 16, item 2).

A ~40 KB upload that inflates to 40 MiB is refused by a server started with
``--max-inflated-mb 4``: at STOW (a per-instance failure, 0xA700), at import from
Cloud Storage, and, when it was stored before (under a larger limit), on every read
and in de-identification. An ordinary deflated file goes through all of them. The
default limit keeps the server's peak memory flat against a ~1 MB upload that
inflates to 1 GiB (it took 2.1 GB to store and 4.2 GB to retrieve before).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
from googleapiclient.discovery import Resource
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from dicom_deid.corpus.quirks import body, part10
from dicom_deid.devstack import ServerProcess, free_port, healthcare_client, wait_for_operation
from dicom_deid.engine import dataset_bytes
from dicom_deid.engine.inflate import LIMIT_ENV, InflateLimitExceeded, inflated_size
from dicom_deid.engine.instance import deidentify_bytes
from dicom_deid.engine.plan import build_plan
from dicom_deid.engine.reading import InstanceTooLarge, read
from dicom_deid.gcs import client as gcs_client
from tests.helpers import PARENT, new_store, stores_api, stow_raw

LIMIT_MB = 4
BOMB_MIB = 40
REFUSED = f"the deflated dataset inflates beyond the limit of {LIMIT_MB} MiB"
OUT_OF_RESOURCES = 0xA700
BASIC = {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}}
DICOM_ACCEPT = 'multipart/related; type="application/dicom"'
ORDINARY = Path(get_testdata_file("image_dfl.dcm")).read_bytes()


@dataclass(frozen=True)
class Bomb:
    data: bytes
    study: str
    series: str
    sop: str

    def url(self, base: str) -> str:
        return f"{base}/studies/{self.study}/series/{self.series}/instances/{self.sop}"


def deflate_bomb(mib: int) -> Bomb:
    """A valid Part 10 secondary capture whose deflated body holds ``mib`` frames of
    1024 x 1024 zero pixels: ~1 KB per MiB inflated.

    The deflate stream is a head, then one 1 MiB block of zeros repeated: each block
    ends with a full flush, which resets the compressor, so every copy decodes alone
    and a 1 GiB bomb is built in milliseconds instead of seconds.
    """
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = (
        generate_uid() for _ in range(3))
    ds.Modality = "OT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = mib
    ds.Rows = ds.Columns = 1024
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    pixel_header = b"\xe0\x7f\x10\x00OB\0\0" + struct.pack("<L", mib << 20)
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    head = squeeze.compress(body(ds) + pixel_header) + squeeze.flush(zlib.Z_FULL_FLUSH)
    block = squeeze.compress(bytes(1 << 20)) + squeeze.flush(zlib.Z_FULL_FLUSH)
    deflated = head + block * mib + squeeze.flush()
    return Bomb(part10(ds, deflated, DeflatedExplicitVRLittleEndian),
                ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)


def _ordinary_url(base: str) -> str:
    ds = dcmread(io.BytesIO(ORDINARY), stop_before_pixels=True)
    return (f"{base}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}")


def _failures(op: dict) -> list[dict]:
    return requests.get(op["metadata"]["logsUrl"], timeout=30).json().get("failures", [])


def _deidentify(hc: Resource, source: str, dest: str) -> dict:
    op = stores_api(hc).deidentify(sourceStore=source, body={
        "destinationStore": dest, "config": BASIC}).execute()
    return wait_for_operation(hc, op["name"])


def _refused_on_read(r: requests.Response) -> None:
    assert r.status_code == 400, r.text[:300]
    assert r.json() == {"error": {"code": 400, "message": REFUSED,
                                  "status": "FAILED_PRECONDITION"}}


# -- a server with a small limit, over a store that holds a bomb from before ------------


@dataclass
class Setting:
    server: ServerProcess
    healthcare: Resource
    dataset: str
    old: str  # a store holding a bomb (stored under a larger limit) and ORDINARY
    bomb: Bomb

    def web(self, store: str) -> str:
        return f"{self.server.url}/v1/{store}/dicomWeb"


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory, gcs_emulator: object
            ) -> Iterator[Setting]:
    """A bomb stored by a server with a 64 MiB limit, then the same data directory
    served with a 4 MiB one (started after the Cloud Storage emulator, whose address
    it inherits)."""
    root = tmp_path_factory.mktemp("deflate")
    loose = ServerProcess(root / "data", free_port(), root / "loose.log",
                          args=["--max-inflated-mb", "64", "--workers", "1"]).start()
    try:
        hc = healthcare_client(loose.url)
        hc.projects().locations().datasets().create(
            parent=PARENT, datasetId="bombs", body={}).execute()
        dataset = f"{PARENT}/datasets/bombs"
        old = new_store(hc, dataset, "old")
        bomb = deflate_bomb(BOMB_MIB)
        r = stow_raw(f"{loose.url}/v1/{old}/dicomWeb", [bomb.data, ORDINARY])
        assert r.status_code == 200, r.text[:300]
    finally:
        loose.stop()
    strict = ServerProcess(root / "data", free_port(), root / "strict.log",
                           args=["--max-inflated-mb", str(LIMIT_MB), "--workers", "1"]).start()
    try:
        yield Setting(strict, healthcare_client(strict.url), dataset, old, bomb)
    finally:
        strict.stop()


def test_stow_refuses_a_bomb_per_instance_and_stores_an_ordinary_deflated_file(
        setting: Setting) -> None:
    store = new_store(setting.healthcare, setting.dataset)
    web = setting.web(store)
    bomb = deflate_bomb(BOMB_MIB)
    assert len(bomb.data) < 64 * 1024  # the request body limit never sees it
    r = stow_raw(web, [bomb.data, ORDINARY])
    assert r.status_code == 202, r.text[:300]
    [failed] = r.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [OUT_OF_RESOURCES]
    assert failed["00000902"]["Value"] == [REFUSED]
    [stored] = r.json()["00081199"]["Value"]
    assert stored["00081155"]["Value"] == [dcmread(io.BytesIO(ORDINARY)).SOPInstanceUID]
    # The single-part form (Google's samples): the one instance fails, 409.
    r = requests.post(f"{web}/studies", data=deflate_bomb(BOMB_MIB).data, timeout=60,
                      headers={"Content-Type": "application/dicom"})
    assert r.status_code == 409, r.text[:300]
    assert r.json()["00081198"]["Value"][0]["00081197"]["Value"] == [OUT_OF_RESOURCES]
    listed = requests.get(f"{web}/instances", timeout=30).json()
    assert [i["00080018"]["Value"] for i in listed] == [stored["00081155"]["Value"]]


def test_import_from_cloud_storage_refuses_a_bomb(setting: Setting) -> None:
    bucket = gcs_client("local").create_bucket(f"bombs-{generate_uid()[-12:]}")
    bucket.blob("in/bomb.dcm").upload_from_string(deflate_bomb(BOMB_MIB).data)
    bucket.blob("in/ordinary.dcm").upload_from_string(ORDINARY)
    store = new_store(setting.healthcare, setting.dataset)
    op = stores_api(setting.healthcare).import_(name=store, body={
        "gcsSource": {"uri": f"gs://{bucket.name}/in/*"}}).execute()
    op = wait_for_operation(setting.healthcare, op["name"])
    counter = op["metadata"]["counter"]
    assert (int(counter["success"]), int(counter["failure"])) == (1, 1)
    assert [(f["resource"], f["reason"]) for f in _failures(op)] == [
        (f"gs://{bucket.name}/in/bomb.dcm", REFUSED)]


def test_a_bomb_stored_before_is_refused_on_every_read(setting: Setting) -> None:
    """Metadata, retrieve (transcoded to Explicit VR LE by default, or as one part),
    frames and rendered: 400 naming the limit; the ordinary file beside it reads."""
    web = setting.web(setting.old)
    url = setting.bomb.url(web)
    _refused_on_read(requests.get(f"{url}/metadata", timeout=30))
    _refused_on_read(requests.get(f"{web}/studies/{setting.bomb.study}/metadata", timeout=30))
    _refused_on_read(requests.get(url, headers={"Accept": DICOM_ACCEPT}, timeout=30))
    _refused_on_read(requests.get(url, headers={"Accept": "application/dicom"}, timeout=30))
    _refused_on_read(requests.get(f"{url}/frames/1", timeout=30))
    _refused_on_read(requests.get(f"{url}/rendered", timeout=30))
    # As stored (transfer-syntax=*): the deflated bytes are sent back, never inflated.
    r = requests.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"},
                     timeout=30)
    assert r.status_code == 200 and r.content == setting.bomb.data

    ordinary = _ordinary_url(web)
    r = requests.get(f"{ordinary}/metadata", timeout=30)
    assert r.status_code == 200 and r.json()[0]["00280010"]["Value"] == [512]
    r = requests.get(ordinary, headers={"Accept": "application/dicom"}, timeout=30)
    assert r.status_code == 200, r.text[:300]
    got, original = dcmread(io.BytesIO(r.content)), dcmread(io.BytesIO(ORDINARY))
    assert got.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(got.pixel_array, original.pixel_array)
    assert requests.get(f"{ordinary}/frames/1", timeout=30).status_code == 200
    r = requests.get(f"{ordinary}/rendered", headers={"Accept": "image/png"}, timeout=30)
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")


def test_deidentify_fails_a_stored_bomb_alone(setting: Setting) -> None:
    dest = new_store(setting.healthcare, setting.dataset, "dest")
    op = _deidentify(setting.healthcare, setting.old, dest)
    assert "error" not in op
    counter = op["metadata"]["counter"]
    assert (int(counter["success"]), int(counter["failure"])) == (1, 1)
    bomb = setting.bomb
    assert [(f["resource"], f["reason"]) for f in _failures(op)] == [
        (f"studies/{bomb.study}/series/{bomb.series}/instances/{bomb.sop}", REFUSED)]
    listed = requests.get(f"{setting.web(dest)}/instances", timeout=30).json()
    assert len(listed) == 1  # the ordinary deflated file, de-identified


# -- the default limit, and memory ------------------------------------------------------


def _peak_rss_mib(pid: int) -> int:
    """VmHWM: the process's peak resident set since it started (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmHWM in /proc")


def test_default_limit_refuses_a_1_gib_bomb_with_flat_memory(tmp_path: Path) -> None:
    """~1 MB that inflates to 1 GiB, under the default limit (512 MiB): refused, and the
    server's peak RSS grows by a few MiB (it took 2.1 GB before the limit)."""
    server = ServerProcess(tmp_path / "data", free_port(), tmp_path / "server.log",
                           args=["--workers", "1"]).start()
    try:
        hc = healthcare_client(server.url)
        hc.projects().locations().datasets().create(
            parent=PARENT, datasetId="d", body={}).execute()
        store = new_store(hc, f"{PARENT}/datasets/d")
        bomb = deflate_bomb(1024)
        assert len(bomb.data) < 2 * 1024 * 1024
        before = _peak_rss_mib(server.proc.pid)
        r = requests.post(f"{server.url}/v1/{store}/dicomWeb/studies", data=bomb.data,
                          headers={"Content-Type": "application/dicom"}, timeout=120)
        grown = _peak_rss_mib(server.proc.pid) - before
    finally:
        server.stop()
    assert r.status_code == 409, r.text[:300]
    assert r.json()["00081198"]["Value"][0]["00000902"]["Value"] == [
        "the deflated dataset inflates beyond the limit of 512 MiB"]
    assert grown < 64, f"peak RSS grew by {grown} MiB"


# -- the engine, in this process --------------------------------------------------------


def test_every_engine_and_pydicom_read_is_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    """pydicom's own inflate (dcmread), the engine's reader and its repair, and
    de-identification: all refuse past the limit; the ordinary file still goes through."""
    monkeypatch.setenv(LIMIT_ENV, str(LIMIT_MB))
    data = deflate_bomb(BOMB_MIB).data
    with pytest.raises(InflateLimitExceeded, match=REFUSED):
        dcmread(io.BytesIO(data))
    with pytest.raises(InflateLimitExceeded, match=REFUSED):
        dataset_bytes.repair(data)
    with pytest.raises(InstanceTooLarge, match=REFUSED):
        read(io.BytesIO(data))
    plan = build_plan(BASIC, b"k" * 32)
    with pytest.raises(InstanceTooLarge, match=REFUSED):
        deidentify_bytes(data, plan)
    out, outcome = deidentify_bytes(ORDINARY, plan)
    assert outcome.transfer_syntax == DeflatedExplicitVRLittleEndian
    assert np.array_equal(dcmread(io.BytesIO(out)).pixel_array,
                          dcmread(io.BytesIO(ORDINARY)).pixel_array)


def test_inflated_size_stops_at_the_limit_and_knows_a_cut_stream() -> None:
    data = deflate_bomb(BOMB_MIB).data
    deflated = data[dataset_bytes.body_offset(data):]
    with pytest.raises(InflateLimitExceeded):
        inflated_size(deflated, 1 << 20)
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    whole = squeeze.compress(b"abc" * 1000) + squeeze.flush()
    assert inflated_size(whole + b"\0", 3000) == 3000  # a writer's padding byte
    with pytest.raises(zlib.error):
        inflated_size(whole[:-3], 1 << 20)
