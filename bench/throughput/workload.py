"""The timed phases as one workload, run ``--repeat`` times against our server and the peer.

Both servers get the same corpus, clients and phases; only how an empty store is had
for each repetition and where the instance files lie differ (see :class:`Workload`).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from dicom_deid.corpus import CTInstance
from dicom_deid.devstack import ServerProcess, free_port
from throughput.dicomweb_load import (
    retrieval_phases,
    stow_dicomweb_client,
    stow_requests,
    verify_roundtrip,
)
from throughput.disk import read_files
from throughput.measure import MIB, Phase, RssSampler, Target
from throughput.our_server import create_store, our_files, store_instance_count
from throughput.peers import Orthanc, install_orthanc, orthanc_paths
from throughput.profiling import profile_pass


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
