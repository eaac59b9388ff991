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

This script holds the command line and the order of the run; the parts are in
``bench/throughput/`` (measuring, disk, DICOMweb load, the servers, profiling, report).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pydicom

from dicom_deid.corpus import ct_corpus

# isort: split
# The bench's own modules, in bench/throughput/ (this script's directory is on sys.path).
from throughput.dicomweb_load import series_groups
from throughput.disk import measure_disk
from throughput.measure import MB
from throughput.report import COMMAND, goals, markdown, profile_markdown
from throughput.workload import run_ours, run_peer

ROOT = Path(__file__).resolve().parent.parent


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

