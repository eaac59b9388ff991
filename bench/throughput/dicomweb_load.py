"""DICOMweb load over HTTP: STOW-RS and WADO-RS from several clients, and a round-trip check.

Clients: ``requests`` (what a Python caller gets), ``curl`` (C, whose own CPU cost is
small enough that the figure is the server's) and dicomweb-client (STOW only, encoding
the datasets itself as its real callers do).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import uuid
from collections import Counter
from pathlib import Path

import pydicom
import requests

from dicom_deid.corpus import CTInstance
from throughput.disk import drop_caches
from throughput.measure import MIB, Phase, Target, WorkQueue, run_threads, timed

ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'


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
