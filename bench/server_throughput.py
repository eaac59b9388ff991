#!/usr/bin/env python
"""Throughput and memory of ``dicom-deid serve`` over DICOMweb, against the disk and a peer.

Reproduce with ``make bench`` (it runs ``.venv/bin/python bench/server_throughput.py``).
``--install-peers`` lets the script apt-get install Orthanc and its DICOMweb plugin to
compare against (otherwise the comparison is skipped with the reason printed);
``--profile`` adds a py-spy pass over the server, separate from the timed runs because
sampling slows the server down, and reports where its time goes.

What is measured, and why this way:

* The corpus (synthetic CT, 512x512x16 bit, about 0.5 MB an instance) and every STOW
  body are built in memory before any clock starts, so the figures are the server's
  and the HTTP stack's, not the generator's.
* STOW-RS: multipart/related bodies of ``--batch`` instances, sent by ``--threads``
  client threads (one ``requests.Session`` each), into a fresh store each repetition;
  then once with dicomweb-client's ``store_instances`` (which encodes the datasets
  itself, as its real callers pay).
* WADO-RS: every instance one request at a time, then every series in one request,
  with ``Accept: multipart/related; type="application/dicom"; transfer-syntax=*``,
  warm (just written, in the page cache) and cold (after dropping the page cache, when
  the kernel lets us). Two clients: ``requests`` (what a Python caller gets) and, when
  present, ``curl`` (C, one keep-alive connection per thread), whose own CPU cost is
  small enough that the figure is the server's. On two cores a Python client competes
  with the server for CPU, so the curl figure is the one held against the disk.
* The disk: a file written with fsync on the same file system as the data directory
  and read back sequentially in the same run; retrieval is stated as a share of that.
  The store's own instance files are also read straight from disk (cold), which shows
  what the one-file-per-instance layout itself allows.
* Memory: the server's RSS sampled every 50 ms (peak) and read after every 250
  stored instances, to show whether it grows with the store.
* Each timed phase runs ``--repeat`` times; the table shows the median run.

MB are 10**6 bytes. Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import mmap
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pydicom
import requests

from dicom_deid.corpus import CTInstance, ct_corpus
from dicom_deid.testing import ServerProcess, free_port, wait_http

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "make bench  (runs .venv/bin/python bench/server_throughput.py)"
ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
PROJECT, LOCATION, DATASET = "bench", "local", "bench"
MB = 1e6
MIB = 1024 * 1024
CHECKPOINT = 250
GOAL_STOW = 200.0
GOAL_DISK_SHARE = 0.5
ORTHANC_PLUGIN_DIR = Path("/usr/share/orthanc/plugins")


# -- measuring ------------------------------------------------------------------------


class RssSampler:
    """Samples a process's RSS (with its children's) every ``interval`` seconds.

    A thread rather than a before/after reading, because a STOW spike that is freed
    again by the end of a request is exactly what a before/after reading misses.
    ``peak`` is per phase (reset by :func:`timed`); ``peak_all`` is over the run.
    """

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.peak_all = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)

    def rss(self) -> int:
        try:
            total = self.proc.memory_info().rss
            for child in self.proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss
        except psutil.Error:
            return 0
        self.peak = max(self.peak, total)
        self.peak_all = max(self.peak_all, total)
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.rss()

    def start(self) -> RssSampler:
        self.rss()
        self._thread.start()
        return self

    def reset_peak(self) -> None:
        self.peak = 0
        self.rss()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Phase:
    """One timed run: what moved, how long it took, and who burnt the CPU meanwhile."""

    name: str
    instances: int
    payload_bytes: int
    seconds: float
    requests: int
    server_cpu_s: float
    client_cpu_s: float
    peak_rss: int
    extra: dict = field(default_factory=dict)

    @property
    def instances_per_s(self) -> float:
        return self.instances / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.payload_bytes / MB / self.seconds

    def as_dict(self) -> dict:
        return {
            "name": self.name, "instances": self.instances,
            "payload_bytes": self.payload_bytes, "seconds": round(self.seconds, 3),
            "requests": self.requests, "instances_per_s": round(self.instances_per_s, 1),
            "mb_per_s": round(self.mb_per_s, 1),
            "server_cpu_share": round(self.server_cpu_s / self.seconds, 2),
            "client_cpu_share": round(self.client_cpu_s / self.seconds, 2),
            "server_cpu_ms_per_instance": round(1000 * self.server_cpu_s / self.instances, 2),
            "peak_rss_mib": round(self.peak_rss / MIB, 1), **self.extra,
        }


def _cpu(proc: psutil.Process, live_children: bool = False) -> float:
    """CPU seconds of ``proc`` and its exited children; with ``live_children``, of the
    running ones too (the server's worker processes)."""
    t = proc.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    if live_children:
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                c = child.cpu_times()
                total += c.user + c.system
    return total


@dataclass
class Target:
    """A DICOMweb service under test: its base URL, its process, its memory record."""

    name: str
    base: str
    proc: psutil.Process
    rss: RssSampler
    marks: list[tuple[int, float]] = field(default_factory=list)
    stored: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def count_stored(self, n: int) -> None:
        """Add ``n`` stored instances; read RSS at every multiple of CHECKPOINT passed."""
        with self._lock:
            before, self.stored = self.stored, self.stored + n
            for mark in range(before // CHECKPOINT + 1, self.stored // CHECKPOINT + 1):
                self.marks.append((mark * CHECKPOINT, round(self.rss.rss() / MIB, 1)))


@contextlib.contextmanager
def timed(target: Target) -> Iterator[dict]:
    """Wall time plus server and client CPU seconds (waited-for children included)."""
    me = psutil.Process()
    out: dict = {}
    target.rss.reset_peak()
    server0, client0, t0 = _cpu(target.proc, True), _cpu(me), time.perf_counter()
    yield out
    out["seconds"] = time.perf_counter() - t0
    out["server_cpu_s"] = _cpu(target.proc, True) - server0
    out["client_cpu_s"] = _cpu(me) - client0
    out["peak_rss"] = target.rss.peak


def run_threads(n: int, work: Callable[[int], None]) -> None:
    """Run ``work(i)`` in ``n`` threads and re-raise the first failure."""
    errors: list[BaseException] = []

    def wrapped(i: int) -> None:
        try:
            work(i)
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


class WorkQueue:
    """Hands out indexes 0..n-1 to competing threads, in order."""

    def __init__(self, n: int) -> None:
        self._next, self._n, self._lock = 0, n, threading.Lock()

    def take(self) -> int | None:
        with self._lock:
            if self._next >= self._n:
                return None
            self._next += 1
            return self._next - 1


# -- page cache and disk -----------------------------------------------------------------


def drop_caches() -> bool:
    """Flush and drop the page cache; False where the kernel does not let us."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        return False
    return True


def _read_all(path: Path, block: int = 8 * MIB) -> int:
    with open(path, "rb", buffering=0) as f:
        view = memoryview(bytearray(block))
        total = 0
        while n := f.readinto(view):
            total += n
    return total


def _read_direct(path: Path, block: int = 8 * MIB) -> int:
    """Read with O_DIRECT (no page cache): the disk's own rate even without drop_caches."""
    buf = mmap.mmap(-1, block)  # page-aligned, as O_DIRECT needs
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        total = 0
        while n := os.preadv(fd, [buf], total):
            total += n
    finally:
        os.close(fd)
        buf.close()
    return total


def measure_disk(directory: Path, size: int) -> dict:
    """Sequential write (with fsync) and read rates of the file system under ``directory``.

    The data are random, so that neither the file system nor the virtual disk under it
    can shortcut zeros. Two cold reads: buffered after dropping the page cache (what a
    server reading files gets from the kernel, read-ahead included) and O_DIRECT (needs
    no privilege to drop caches). The higher one is the reference, so the goal is never
    flattered by a slow reading of the disk.
    """
    path = directory / "disk-probe.bin"
    block = os.urandom(8 * MIB)
    out: dict = {"file_bytes": size, "path": str(directory)}
    t0 = time.perf_counter()
    with open(path, "wb", buffering=0) as f:
        written = 0
        while written < size:
            written += f.write(block)
        os.fsync(f.fileno())
    out["write_fsync_mb_per_s"] = round(size / MB / (time.perf_counter() - t0), 1)
    try:
        out["drop_caches"] = drop_caches()
        if out["drop_caches"]:
            t0 = time.perf_counter()
            n = _read_all(path)
            out["read_cold_mb_per_s"] = round(n / MB / (time.perf_counter() - t0), 1)
        try:
            t0 = time.perf_counter()
            n = _read_direct(path)
            out["read_direct_mb_per_s"] = round(n / MB / (time.perf_counter() - t0), 1)
        except OSError as exc:
            out["read_direct_error"] = f"{type(exc).__name__}: {exc.strerror}"
        _read_all(path)
        t0 = time.perf_counter()
        n = _read_all(path)
        out["read_warm_mb_per_s"] = round(n / MB / (time.perf_counter() - t0), 1)
    finally:
        path.unlink(missing_ok=True)
    # The reference is the higher of the two cold figures: the stricter goal.
    key = max(("read_cold_mb_per_s", "read_direct_mb_per_s"), key=lambda k: out.get(k) or 0)
    out["reference"], out["reference_mb_per_s"] = key, out.get(key)
    return out


def read_files(target: Target, files: list[Path], threads: int) -> Phase:
    """The instance files read straight from disk, cold: the storage layout's own ceiling."""
    drop_caches()
    queue = WorkQueue(len(files))
    got = [0] * threads

    def work(i: int) -> None:
        while (k := queue.take()) is not None:
            got[i] += _read_all(files[k], 4 * MIB)

    with timed(target) as t:
        run_threads(threads, work)
    return Phase(f"instance files read directly (cold, {threads} threads)", len(files),
                 sum(got), t["seconds"], 0, t["server_cpu_s"], t["client_cpu_s"],
                 t["peak_rss"])


# -- DICOMweb over HTTP -------------------------------------------------------------------


def multipart(parts: list[bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    chunks: list[bytes] = []
    for data in parts:
        chunks += [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(), data,
                   b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    kind = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return b"".join(chunks), kind


def split_multipart(body: bytes, content_type: str) -> list[bytes]:
    boundary = content_type.split("boundary=")[1].split(";")[0].strip().strip('"')
    out = []
    for chunk in body.split(f"--{boundary}".encode())[1:-1]:
        _head, _, data = chunk.partition(b"\r\n\r\n")
        out.append(data[:-2])
    return out


def _check_stow(r: requests.Response, n: int) -> None:
    if r.status_code != 200:
        raise RuntimeError(f"STOW answered {r.status_code}: {r.text[:300]}")
    body = r.json()
    failed = body.get("00081198", {}).get("Value", [])
    stored = body.get("00081199", {}).get("Value", [])
    if failed or len(stored) != n:
        raise RuntimeError(f"STOW stored {len(stored)} of {n}, {len(failed)} failed")


def stow_requests(target: Target, corpus: list[CTInstance], batch: int, threads: int) -> Phase:
    batches = [corpus[i:i + batch] for i in range(0, len(corpus), batch)]
    bodies = [multipart([inst.data for inst in b]) for b in batches]
    queue = WorkQueue(len(bodies))

    def work(_i: int) -> None:
        with requests.Session() as s:
            while (k := queue.take()) is not None:
                body, kind = bodies[k]
                r = s.post(f"{target.base}/studies", data=body,
                           headers={"Content-Type": kind, "Accept": "application/dicom+json"})
                _check_stow(r, len(batches[k]))
                target.count_stored(len(batches[k]))

    with timed(target) as t:
        run_threads(threads, work)
    return Phase(f"STOW-RS, requests ({threads} threads x {batch}/request)", len(corpus),
                 sum(len(i.data) for i in corpus), t["seconds"], len(bodies),
                 t["server_cpu_s"], t["client_cpu_s"], t["peak_rss"])


def stow_dicomweb_client(target: Target, base: str, corpus: list[CTInstance], batch: int,
                         threads: int) -> Phase:
    from dicomweb_client.api import DICOMwebClient

    datasets = [pydicom.dcmread(io.BytesIO(inst.data)) for inst in corpus]
    batches = [datasets[i:i + batch] for i in range(0, len(datasets), batch)]
    queue = WorkQueue(len(batches))

    def work(_i: int) -> None:
        client = DICOMwebClient(url=base)
        while (k := queue.take()) is not None:
            result = client.store_instances(datasets=batches[k])
            failed = result.get("00081198", {}).get("Value", []) if result else []
            if failed:
                raise RuntimeError(f"dicomweb-client STOW: {len(failed)} failed")
            target.count_stored(len(batches[k]))

    with timed(target) as t:
        run_threads(threads, work)
    return Phase(f"STOW-RS, dicomweb-client ({threads} threads x {batch}/request)",
                 len(corpus), sum(len(i.data) for i in corpus), t["seconds"], len(batches),
                 t["server_cpu_s"], t["client_cpu_s"], t["peak_rss"])


def _get(session: requests.Session, url: str) -> int:
    with session.get(url, headers={"Accept": ACCEPT}, stream=True) as r:
        if r.status_code != 200:
            raise RuntimeError(f"GET {url} answered {r.status_code}: {r.text[:300]}")
        return sum(len(c) for c in r.iter_content(chunk_size=MIB))


def retrieve_requests(target: Target, name: str, urls: list[str], instances: int,
                      payload: int, threads: int) -> Phase:
    queue = WorkQueue(len(urls))
    received = [0] * threads

    def work(i: int) -> None:
        with requests.Session() as s:
            while (k := queue.take()) is not None:
                received[i] += _get(s, urls[k])

    with timed(target) as t:
        run_threads(threads, work)
    return Phase(name, instances, payload, t["seconds"], len(urls), t["server_cpu_s"],
                 t["client_cpu_s"], t["peak_rss"], {"body_bytes": sum(received)})


def retrieve_curl(target: Target, name: str, urls: list[str], instances: int, payload: int,
                  threads: int, scratch: Path) -> Phase:
    """``threads`` curl processes, each fetching its share of ``urls`` over one connection."""
    curl = shutil.which("curl")
    assert curl is not None
    cmds = []
    for k in range(threads):
        cfg = scratch / f"curl-{k}.cfg"
        cfg.write_text("".join(f'url = "{u}"\noutput = "/dev/null"\n' for u in urls[k::threads]))
        cmds.append([curl, "--silent", "--show-error", "--header", f"Accept: {ACCEPT}",
                     "--write-out", "%{http_code} %{size_download}\\n", "--config", str(cfg)])
    with timed(target) as t:
        procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for c in cmds]
        outs = [p.communicate(timeout=600) for p in procs]
    lines = [ln.split() for out, _err in outs for ln in out.decode().splitlines()]
    if len(lines) != len(urls) or any(code != "200" for code, _ in lines):
        raise RuntimeError(f"curl: {len(lines)} answers for {len(urls)} URLs, codes "
                           f"{Counter(code for code, _ in lines)}")
    return Phase(name, instances, payload, t["seconds"], len(urls), t["server_cpu_s"],
                 t["client_cpu_s"], t["peak_rss"],
                 {"body_bytes": sum(int(size) for _, size in lines)})


def instance_url(base: str, inst: CTInstance) -> str:
    return f"{base}/studies/{inst.study_uid}/series/{inst.series_uid}/instances/{inst.sop_uid}"


def series_groups(corpus: list[CTInstance]) -> dict[tuple[str, str], list[CTInstance]]:
    groups: dict[tuple[str, str], list[CTInstance]] = {}
    for inst in corpus:
        groups.setdefault((inst.study_uid, inst.series_uid), []).append(inst)
    return groups


def verify_roundtrip(base: str, corpus: list[CTInstance]) -> None:
    """Untimed check that what comes back is byte for byte what went in."""
    inst = corpus[len(corpus) // 2]
    r = requests.get(instance_url(base, inst), headers={"Accept": ACCEPT})
    r.raise_for_status()
    if split_multipart(r.content, r.headers["content-type"]) != [inst.data]:
        raise RuntimeError("retrieved instance differs from the uploaded bytes")
    (study, series), members = next(iter(series_groups(corpus).items()))
    r = requests.get(f"{base}/studies/{study}/series/{series}", headers={"Accept": ACCEPT})
    r.raise_for_status()
    got = sorted(split_multipart(r.content, r.headers["content-type"]))
    if got != sorted(m.data for m in members):
        raise RuntimeError("retrieved series differs from the uploaded bytes")


def retrieval_phases(target: Target, corpus: list[CTInstance], threads: int, cold: bool,
                     scratch: Path) -> dict[str, Phase]:
    """Instance-by-instance and series-by-series retrieval: clients x warm/cold."""
    payload = sum(len(i.data) for i in corpus)
    urls = {
        "instance": [instance_url(target.base, i) for i in corpus],
        "series": [f"{target.base}/studies/{st}/series/{se}" for st, se in series_groups(corpus)],
    }
    clients = ["requests"] + (["curl"] if shutil.which("curl") else [])
    out: dict[str, Phase] = {}
    for temp in ("warm", "cold") if cold else ("warm",):
        for client in clients:
            for level, level_urls in urls.items():
                if temp == "cold":
                    drop_caches()
                name = f"WADO-RS {level}, {temp}, {client} ({threads} threads)"
                if client == "curl":
                    p = retrieve_curl(target, name, level_urls, len(corpus), payload, threads,
                                      scratch)
                else:
                    p = retrieve_requests(target, name, level_urls, len(corpus), payload,
                                          threads)
                out[f"wado_{level}_{temp}_{client}"] = p
    return out


# -- the servers --------------------------------------------------------------------------


def healthcare(url: str) -> object:
    import google.auth.credentials
    from googleapiclient.discovery import build

    return build("healthcare", "v1", static_discovery=True, cache_discovery=False,
                 client_options={"api_endpoint": url},
                 credentials=google.auth.credentials.AnonymousCredentials())


def create_store(url: str, store_id: str) -> str:
    """Dataset (once) and store through the Google discovery client, as users do."""
    from googleapiclient.errors import HttpError

    datasets = healthcare(url).projects().locations().datasets()
    parent = f"projects/{PROJECT}/locations/{LOCATION}"
    dataset = f"{parent}/datasets/{DATASET}"
    try:
        datasets.create(parent=parent, datasetId=DATASET, body={}).execute()
    except HttpError as exc:
        if exc.resp.status != 409:
            raise
    datasets.dicomStores().create(parent=dataset, dicomStoreId=store_id, body={}).execute()
    return f"{dataset}/dicomStores/{store_id}"


def store_instance_count(url: str, store: str) -> int:
    stores = healthcare(url).projects().locations().datasets().dicomStores()
    return int(stores.getDICOMStoreMetrics(name=store).execute()["instanceCount"])


def our_files(data_dir: Path, store: str) -> list[Path]:
    """The store's instance files in upload order, from the index (opened read-only)."""
    db = sqlite3.connect(f"file:{data_dir / 'index.sqlite3'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT i.path FROM instances i JOIN stores s ON i.store = s.pk "
                          "WHERE s.name = ? ORDER BY i.pk", (store,)).fetchall()
    finally:
        db.close()
    return [data_dir / "objects" / r[0] for r in rows]


def orthanc_paths() -> tuple[str | None, Path | None]:
    exe = shutil.which("Orthanc") or (
        "/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
    plugins = sorted(ORTHANC_PLUGIN_DIR.glob("libOrthancDicomWeb.so*"))
    return exe, plugins[0] if plugins else None


def install_orthanc() -> str | None:
    """apt-get install Orthanc + DICOMweb; None on success, else the reason.

    A policy-rc.d that refuses service starts is put in place for the install (and
    removed after, if it was not there before) so that the package does not start a
    system-wide Orthanc listening on all interfaces.
    """
    if os.geteuid() != 0:
        return "--install-peers needs root for apt-get"
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        if ours:
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", "orthanc", "orthanc-dicomweb"],
                       check=True, env=env, timeout=600, stdout=subprocess.DEVNULL)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"apt-get install orthanc orthanc-dicomweb failed ({type(exc).__name__})"
    finally:
        if ours:
            policy.unlink(missing_ok=True)
    return None


@dataclass
class Orthanc:
    """Orthanc with its DICOMweb plugin, on loopback, with a throw-away config and storage.

    Its defaults are kept except where the bench needs otherwise: no authentication,
    no remote access, no DICOM (DIMSE) listener, no storage compression (ours stores
    files as received). Orthanc fsyncs each stored file by default (SyncStorageArea),
    as ours does, so the durability of the two is comparable. Its default in-process
    cache of recently used files (MaximumStorageCacheSize, 128 MB) is kept: it holds
    a quarter of the corpus at most, so 'cold' is mostly cold for it too.
    """

    root: Path
    exe: str
    plugin: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Orthanc:
        (self.root / "storage").mkdir(parents=True)
        (self.root / "index").mkdir()
        config = {
            "Name": "bench-peer",
            "StorageDirectory": str(self.root / "storage"),
            "IndexDirectory": str(self.root / "index"),
            "StorageCompression": False,
            "HttpPort": self.port,
            "HttpCompressionEnabled": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": False,
            "DicomPort": free_port(),
            "Plugins": [str(self.plugin)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
        }
        cfg = self.root / "orthanc.json"
        cfg.write_text(json.dumps(config, indent=2))
        log = open(self.root / "orthanc.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen([self.exe, str(cfg)], stdout=log, stderr=subprocess.STDOUT)
        wait_http(f"{self.url}/system", self.proc)
        return self

    def version(self) -> str:
        try:
            return requests.get(f"{self.url}/system", timeout=5).json().get("Version", "?")
        except (requests.RequestException, ValueError):
            return "?"

    def wipe(self) -> None:
        """Delete every study, so the next STOW run starts from an empty store."""
        with requests.Session() as s:
            for study in s.get(f"{self.url}/studies", timeout=60).json():
                s.delete(f"{self.url}/studies/{study}", timeout=60).raise_for_status()

    def files(self) -> list[Path]:
        return sorted(p for p in (self.root / "storage").rglob("*") if p.is_file())

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# -- one workload, run against either server ----------------------------------------------


@dataclass
class Workload:
    """How to run the timed phases against one server, ``repeat`` times over.

    ``next_base(rep)`` gives an empty store for repetition ``rep`` (ours: a new store;
    Orthanc: the one store, wiped); ``files()`` lists the instance files on disk.
    """

    target: Target
    next_base: Callable[[int], str]
    files: Callable[[], list[Path]]
    dicomweb_client_base: str | None = None


def run_workload(w: Workload, corpus: list[CTInstance], args: argparse.Namespace, cold: bool,
                 scratch: Path) -> dict[str, list[Phase]]:
    runs: dict[str, list[Phase]] = {}
    for rep in range(args.repeat):
        w.target.base = w.next_base(rep)
        phases = {"stow_requests": stow_requests(w.target, corpus, args.batch, args.threads)}
        verify_roundtrip(w.target.base, corpus)
        phases.update(retrieval_phases(w.target, corpus, args.threads, cold, scratch))
        if cold:
            files = w.files()
            phases["files_direct_cold"] = read_files(w.target, files, args.threads)
            phases["files_direct_cold_8"] = read_files(w.target, files, 8)
        for key, p in phases.items():
            runs.setdefault(key, []).append(p)
        print(f"  run {rep + 1}/{args.repeat}: STOW {phases['stow_requests'].instances_per_s:.0f}"
              " inst/s; " + ", ".join(f"{k} {p.mb_per_s:.0f} MB/s" for k, p in phases.items()
                                      if k.startswith("wado")), flush=True)
    if w.dicomweb_client_base:
        p = stow_dicomweb_client(w.target, w.dicomweb_client_base, corpus, args.batch,
                                 args.threads)
        runs["stow_dicomweb_client"] = [p]
        print(f"  {p.name}: {p.instances_per_s:.0f} inst/s", flush=True)
    return runs


def summarize_runs(runs: dict[str, list[Phase]]) -> dict:
    """The median run of each phase (by throughput), with every run's figure beside it."""
    out = {}
    for key, phases in runs.items():
        ranked = sorted(phases, key=lambda p: p.instances_per_s)
        median = ranked[(len(ranked) - 1) // 2]
        out[key] = {**median.as_dict(), "runs_instances_per_s": [
            round(p.instances_per_s, 1) for p in phases], "runs_mb_per_s": [
            round(p.mb_per_s, 1) for p in phases]}
        if len(phases) > 1:
            out[key]["spread"] = round(
                statistics.pstdev(p.instances_per_s for p in phases) / median.instances_per_s, 3)
    return out


def memory_summary(target: Target) -> dict:
    marks = target.marks or [(target.stored, round(target.rss.rss() / MIB, 1))]
    first, last = marks[0][1], marks[-1][1]
    growth = last - first
    return {"checkpoints": marks, "peak_mib": round(target.rss.peak_all / MIB, 1),
            "growth_mib": round(growth, 1), "span_instances": marks[-1][0] - marks[0][0],
            "flat": growth <= max(16.0, 0.10 * first) if len(marks) > 1 else None}


def run_ours(work: Path, corpus: list[CTInstance], args: argparse.Namespace, cold: bool,
             res: dict) -> None:
    data_dir = work / "ours"
    server = ServerProcess(data_dir, free_port(), work / "server.log").start()
    try:
        rss = RssSampler(server.proc.pid).start()
        target = Target("dicom-deid", "", psutil.Process(server.proc.pid), rss)
        stores: list[str] = []

        def next_base(rep: int) -> str:
            stores.append(create_store(server.url, f"throughput-{rep + 1}"))
            return f"{server.url}/v1/{stores[-1]}/dicomWeb"

        dwc = create_store(server.url, "throughput-dicomweb-client")
        w = Workload(target, next_base, lambda: our_files(data_dir, stores[-1]),
                     f"{server.url}/v1/{dwc}/dicomWeb")
        print("ours: dicom-deid serve", flush=True)
        runs = run_workload(w, corpus, args, cold, work)
        for store in stores + [dwc]:
            count = store_instance_count(server.url, store)
            if count != len(corpus):
                raise RuntimeError(f"{store} holds {count} instances, not {len(corpus)}")
        res["ours"] = summarize_runs(runs)
        res["memory"] = memory_summary(target)
        if args.profile:
            res["profile"] = profile_pass(server, target, corpus, args, work)
        rss.stop()
    finally:
        server.stop()


def run_peer(work: Path, corpus: list[CTInstance], args: argparse.Namespace,
             cold: bool) -> dict:
    if args.no_peer:
        return {"skipped": "--no-peer"}
    exe, plugin = orthanc_paths()
    if (exe is None or plugin is None) and args.install_peers:
        print("installing orthanc + orthanc-dicomweb (apt-get) ...", flush=True)
        reason = install_orthanc()
        if reason:
            print(f"peer skipped: {reason}", flush=True)
            return {"skipped": reason}
        exe, plugin = orthanc_paths()
    if exe is None or plugin is None:
        reason = ("Orthanc with its DICOMweb plugin is not installed (Debian packages orthanc, "
                  "orthanc-dicomweb); pass --install-peers to let the bench apt-get them")
        print(f"peer skipped: {reason}", flush=True)
        return {"skipped": reason}
    orthanc = Orthanc(work / "orthanc", exe, plugin).start()
    try:
        rss = RssSampler(orthanc.proc.pid).start()
        target = Target("orthanc", f"{orthanc.url}/dicom-web",
                        psutil.Process(orthanc.proc.pid), rss)

        def next_base(rep: int) -> str:
            if rep:
                orthanc.wipe()
            return f"{orthanc.url}/dicom-web"

        name = f"Orthanc {orthanc.version()} + DICOMweb plugin ({plugin.resolve().name})"
        print(f"peer: {name}", flush=True)
        runs = run_workload(Workload(target, next_base, orthanc.files), corpus, args, cold,
                            work)
        out = {"name": name, "phases": summarize_runs(runs), "memory": memory_summary(target)}
        rss.stop()
        return out
    finally:
        orthanc.stop()


# -- profiling ------------------------------------------------------------------------------

# Where a sample's time goes: the first category any of whose patterns occurs in one of
# the sample's frames (checked in this order, so specific work wins over the callers).
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("STOW: fsync + rename of instance files (BlobStore.commit)", ("BlobStore.commit",)),
    ("STOW: fsync of directories (BlobStore.sync_dirs)", ("BlobStore.sync_dirs",)),
    ("STOW: DICOM parse + validate (ingest.inspect)", ("ingest.py:inspect",)),
    ("SQLite (catalog, store lookup)", ("Catalog.", "store_pk", "dicomweb.py:_instances")),
    ("STOW: temp files created/written on the event loop (RelatedParser callbacks)",
     ("RelatedParser._data", "RelatedParser._headers_done", "RelatedParser._end")),
    ("STOW: multipart parsing (python-multipart)", ("MultipartParser", "RelatedParser.feed")),
    ("STOW: cleanup of temp parts (ingest.store)", ("ingest.py:store",)),
    ("STOW: response JSON (_stow_response)", ("_stow_response",)),
    ("WADO: file open/read/close through anyio (thread hand-offs)",
     ("AsyncFile.", "open_file", "stream_files")),
    ("thread hand-off (anyio to_thread)", ("run_sync_in_worker_thread", "to_thread.py")),
    ("Accept / Content-Type parsing (python-multipart parse_options_header)",
     ("multipart.py:content_type", "parse_options_header")),
    ("route matching (Api.dispatch's own time: regex scan of the route table)",
     ("leaf:server/app.py:Api.dispatch",)),
    ("socket send (uvicorn RequestResponseCycle.send)", ("RequestResponseCycle.send",)),
    ("HTTP receive/parse (uvicorn httptools)",
     ("RequestResponseCycle.receive", "HttpToolsProtocol.", "request.stream", "Request.stream")),
    ("routing, middleware, handlers (Starlette, app.py)",
     ("Api.dispatch", "Starlette.__call__", "Middleware", "wrapped_app")),
    ("event loop itself (uvloop/asyncio)", ("Runner.run",)),
]


def py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def profiled(pid: int, out: Path, rate: int, gil: bool) -> Iterator[None]:
    """py-spy record of ``pid`` while the block runs.

    ``gil``: only samples of the thread holding the GIL, i.e. the Python work that
    serialises the server; otherwise every thread that is not idle (file I/O too).
    """
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy not found: VIRTUAL_ENV=.venv uv pip install py-spy")
    cmd = [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
           "--threads", "--output", str(out)] + (["--gil"] if gil else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # let it attach before the work starts
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _frame_name(frame: str) -> str:
    """``fn (path/to/module.py:123)`` -> ``module.py:fn`` (``server/module.py`` for ours)."""
    name, _, where = frame.partition(" (")
    if not where:
        return frame
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if "dicom_deid" in path else parts[-1] if parts else path
    return f"{short}:{name}"


def _category(names: list[str]) -> str:
    for cat, patterns in CATEGORIES:
        for p in patterns:
            if p.startswith("leaf:") and names[-1] == p[5:]:
                return cat
            if not p.startswith("leaf:") and any(p in f for f in names):
                return cat
    return "other"


def summarize_profile(path: Path, top: int = 12) -> dict:
    """Shares of samples by category, by leaf function (self) and by thread.

    Samples of anyio worker threads blocked waiting for work are left out (py-spy does
    not always recognise that wait as idle), so shares are of busy samples.
    """
    self_c: Counter[str] = Counter()
    cats: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread = frames[0].partition(": ")[2] or frames[0]
        names = [_frame_name(f) for f in frames[1:]]
        if not names:
            continue
        if any("Queue.get" in f for f in names[-3:]):
            idle += n
            continue
        total += n
        threads["event loop (MainThread)" if thread == "MainThread" else
                "anyio worker threads" if "AnyIO" in thread else thread] += n
        self_c[names[-1]] += n
        cats[_category(names)] += n

    def share(c: Counter[str], k: int) -> list[list]:
        return [[name, round(v / max(total, 1), 3)] for name, v in c.most_common(k)]

    return {"samples": total, "idle_worker_samples_left_out": idle,
            "threads": share(threads, 5), "categories": share(cats, 20),
            "self": share(self_c, top), "raw": str(path)}


def profile_pass(server: ServerProcess, target: Target, corpus: list[CTInstance],
                 args: argparse.Namespace, scratch: Path) -> dict:
    """STOW into fresh stores and warm retrieval (curl client) under py-spy, two ways."""
    out_dir = args.json.parent / "profiles"
    out_dir.mkdir(parents=True, exist_ok=True)
    summary: dict = {}
    payload = sum(len(i.data) for i in corpus)
    base = target.base
    print("profile pass (py-spy; figures under the profiler are not the timed ones):",
          flush=True)
    try:
        for mode in ("gil", "wall"):
            store = create_store(server.url, f"throughput-profile-{mode}")
            target.base = f"{server.url}/v1/{store}/dicomWeb"
            raw = out_dir / f"stow_{mode}.txt"
            with profiled(server.proc.pid, raw, args.profile_rate, mode == "gil"):
                p = stow_requests(target, corpus, args.batch, args.threads)
            summary[f"stow_{mode}"] = {"rate_under_profiler": f"{p.instances_per_s:.0f} inst/s",
                                       **summarize_profile(raw)}
            for level, urls in (
                ("instance", [instance_url(target.base, i) for i in corpus]),
                ("series", [f"{target.base}/studies/{st}/series/{se}"
                            for st, se in series_groups(corpus)]),
            ):
                client = "curl" if shutil.which("curl") else "requests"
                raw = out_dir / f"wado_{level}_{mode}.txt"
                with profiled(server.proc.pid, raw, args.profile_rate, mode == "gil"):
                    if client == "curl":
                        p = retrieve_curl(target, level, urls, len(corpus), payload,
                                          args.threads, scratch)
                    else:
                        p = retrieve_requests(target, level, urls, len(corpus), payload,
                                              args.threads)
                summary[f"wado_{level}_warm_{client}_{mode}"] = {
                    "rate_under_profiler": f"{p.mb_per_s:.0f} MB/s", **summarize_profile(raw)}
            print(f"  {mode}: done", flush=True)
    finally:
        target.base = base
    return summary


# -- report -------------------------------------------------------------------------------


def _fmt(v: float | None, digits: int = 0) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def _share(p: dict, disk: float | None) -> str:
    return f"{p['mb_per_s'] / disk:.0%}" if disk and not p["name"].startswith("STOW") else "–"


def markdown(res: dict) -> str:
    ours, peer = res["ours"], res.get("peer", {}).get("phases", {})
    d = res["disk"]
    disk = d["reference_mb_per_s"]
    c = res["corpus"]
    src = res["source"]
    lines = [
        f"Reproduce: `{COMMAND}`",
        "",
        f"Server code: commit {src['commit'][:12] or '?'}"
        + (" with uncommitted changes in src/dicom_deid/server"
           if src["server_changes_uncommitted"] else "") + ".",
        f"Corpus: {c['instances']} synthetic CT instances, 512x512x16 bit "
        f"({c['mb']:.0f} MB, {c['series']} series, seed {c['seed']}); "
        f"{res['args']['threads']} client threads; {res['args']['batch']} instances per STOW "
        f"request; median of {res['args']['repeat']} runs.",
        f"Disk ({d['file_bytes'] / 1024**3:.1f} GiB probe on the data dir's file system): "
        f"write+fsync {_fmt(d['write_fsync_mb_per_s'])} MB/s, sequential read cold "
        f"{_fmt(d.get('read_cold_mb_per_s'))} MB/s, O_DIRECT (8 MiB, queue depth 1) "
        f"{_fmt(d.get('read_direct_mb_per_s'))} MB/s, page cache "
        f"{_fmt(d.get('read_warm_mb_per_s'))} MB/s. Share of disk = MB/s / "
        f"{_fmt(disk)} MB/s ({d['reference']}).",
        "",
        "| phase | ours inst/s | ours MB/s | share of disk | server CPU | client CPU "
        "| peer inst/s | peer MB/s | peer share of disk | peer CPU | ours/peer |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, p in ours.items():
        q = peer.get(key)
        if q:
            theirs = (f"{_fmt(q['instances_per_s'])} | {_fmt(q['mb_per_s'])} "
                      f"| {_share(q, disk)} | {q['server_cpu_share']:.0%} "
                      f"| {p['instances_per_s'] / q['instances_per_s']:.2f}")
        else:
            theirs = "– | – | – | – | –"
        lines.append(
            f"| {p['name']} | {_fmt(p['instances_per_s'])} | {_fmt(p['mb_per_s'])} "
            f"| {_share(p, disk)} | {p['server_cpu_share']:.0%} | {p['client_cpu_share']:.0%} "
            f"| {theirs} |")
    lines.append("")
    lines.append("CPU shares are of one core (the machine has "
                 f"{res['machine']['cpus']}); 'client' includes curl child processes.")
    files = ours.get("files_direct_cold")
    if files:
        shares = [f"{p['name'].split(' (')[0]}: {p['mb_per_s'] / files['mb_per_s']:.0%}"
                  for k, p in ours.items() if k.startswith("wado") and "_cold_" in k]
        lines.append("Cold retrieval as a share of reading the same instance files directly "
                     f"({files['mb_per_s']:.0f} MB/s, {files['name']}): " + "; ".join(shares)
                     + ".")
    mem = res["memory"]
    lines += [
        "",
        "Ours, RSS (MiB) after each 250 stored instances: "
        + ", ".join(f"{n}: {v:.0f}" for n, v in mem["checkpoints"])
        + f"; peak {mem['peak_mib']:.0f} MiB over the run.",
    ]
    if res.get("peer", {}).get("skipped"):
        lines.append(f"Peer: skipped ({res['peer']['skipped']}).")
    elif res.get("peer"):
        pm = res["peer"]["memory"]
        lines.append(f"Peer ({res['peer']['name']}), RSS (MiB) after each 250 stored: "
                     + ", ".join(f"{n}: {v:.0f}" for n, v in pm["checkpoints"])
                     + f"; peak {pm['peak_mib']:.0f} MiB.")
    lines += ["", "| goal | target | measured | met |", "|---|---|---|---|"]
    for g in res["goals"]:
        met = "n/a" if g["met"] is None else "yes" if g["met"] else "NO"
        lines.append(f"| {g['goal']} | {g['target']} | {g['measured']} | {met} |")
    return "\n".join(lines)


def goals(res: dict) -> list[dict]:
    ours, disk = res["ours"], res["disk"]["reference_mb_per_s"]
    out = []
    stow = ours["stow_requests"]["instances_per_s"]
    out.append({"goal": "STOW-RS throughput (requests client)",
                "target": f">= {GOAL_STOW:.0f} instances/s",
                "measured": f"{stow:.0f} instances/s", "met": stow >= GOAL_STOW})
    for key in ("wado_instance_cold_curl", "wado_series_cold_curl", "wado_instance_warm_curl",
                "wado_series_warm_curl"):
        if key in ours and disk:
            share = ours[key]["mb_per_s"] / disk
            out.append({"goal": f"{ours[key]['name']} vs disk sequential read",
                        "target": f">= {GOAL_DISK_SHARE:.0%} of {disk:.0f} MB/s",
                        "measured": f"{ours[key]['mb_per_s']:.0f} MB/s = {share:.0%}",
                        "met": share >= GOAL_DISK_SHARE})
    mem = res["memory"]
    out.append({"goal": "memory flat as the store grows",
                "target": "RSS growth, first to last checkpoint, <= max(16 MiB, 10%)",
                "measured": f"{mem['growth_mib']:+.1f} MiB over {mem['span_instances']} more "
                            "instances", "met": mem["flat"]})
    return out


def profile_markdown(profile: dict) -> str:
    lines = ["Profile of the server (py-spy; 'gil' = samples of the thread holding the GIL, "
             "'wall' = all non-idle threads):"]
    for key, s in profile.items():
        lines += ["", f"{key} ({s['samples']} samples, {s['rate_under_profiler']} under the "
                      "profiler; threads: "
                  + ", ".join(f"{k} {v:.0%}" for k, v in s["threads"]) + ")",
                  "", "| where | share |", "|---|---:|"]
        lines += [f"| {k} | {v:.0%} |" for k, v in s["categories"] if v >= 0.01]
        lines.append("| top leaf functions: " + ", ".join(
            f"{k} {v:.0%}" for k, v in s["self"][:6]) + " | |")
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------


def source_state() -> dict:
    """Which server code was measured: the commit, and whether the work tree differs."""
    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True,
                                  timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD"),
            "server_changes_uncommitted": git("status", "--porcelain", "--",
                                              "src/dicom_deid/server").splitlines()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--instances", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=20, help="instances per STOW request")
    ap.add_argument("--threads", type=int, default=2, help="concurrent client threads")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each phase (median shown)")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--disk-gib", type=float, default=2.0, help="size of the disk probe file")
    ap.add_argument("--work-dir", type=Path, default=None,
                    help="parent of the temp data dirs (default: the system temp dir)")
    ap.add_argument("--install-peers", action="store_true",
                    help="apt-get install orthanc + orthanc-dicomweb if missing")
    ap.add_argument("--no-peer", action="store_true", help="skip the Orthanc comparison")
    ap.add_argument("--profile", action="store_true",
                    help="add an untimed py-spy pass over the server and report hot spots")
    ap.add_argument("--profile-rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--json", type=Path, default=ROOT / "bench/results/server_throughput.json")
    args = ap.parse_args(argv)
    started = time.perf_counter()

    work = Path(tempfile.mkdtemp(prefix="dicom-deid-bench-", dir=args.work_dir))
    res: dict = {
        "command": COMMAND, "argv": sys.argv[1:],
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "source": source_state(),
        "machine": {"cpus": os.cpu_count(),
                    "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
                    "python": platform.python_version(), "kernel": platform.release(),
                    "pydicom": pydicom.__version__},
    }
    try:
        print(f"generating {args.instances} CT instances (seed {args.seed}) ...", flush=True)
        t0 = time.perf_counter()
        corpus = ct_corpus(args.instances, args.seed)
        res["corpus"] = {"instances": len(corpus), "mb": sum(len(i.data) for i in corpus) / MB,
                         "series": len(series_groups(corpus)), "seed": args.seed,
                         "generate_s": round(time.perf_counter() - t0, 1)}

        print(f"disk probe: {args.disk_gib} GiB in {work} ...", flush=True)
        res["disk"] = measure_disk(work, int(args.disk_gib * 1024**3))
        cold = bool(res["disk"].get("drop_caches"))
        if not cold:
            print("  cannot drop the page cache here: cold phases skipped", flush=True)
        print(f"  {res['disk']}", flush=True)

        run_ours(work, corpus, args, cold, res)
        res["peer"] = run_peer(work, corpus, args, cold)
        res["goals"] = goals(res)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res["elapsed_s"] = round(time.perf_counter() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=2))
    print()
    print(markdown(res))
    if "profile" in res:
        print()
        print(profile_markdown(res["profile"]))
    print(f"\nJSON: {args.json}  (run took {res['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
