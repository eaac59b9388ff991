#!/usr/bin/env python
"""File de-identification throughput and memory: ``dicom-deid deidentify`` against peers.

Run: ``.venv/bin/python bench/deidentify_throughput.py --install-peers`` (peers are
installed only with that flag: dicognito, pydicom/deid and dcmanon (Rust, Python
bindings) into ``bench/.peers-venv``, never the project's lock; GDCM's ``gdcmanon``
from Debian ``libgdcm-tools``).

What is measured, and why this way:

* One synthetic corpus for every tool, written before any clock starts: 70% CT
  (512x512x16), 20% MR (256x256x16, nested request/reference sequences, a private
  block quoting the patient), 10% Enhanced MR (30-60 frames, functional groups with
  per-frame date-times and nested UIDs), nested study/series directories, from
  ``--seed``. See ``dicom_deid.corpus`` (ct, mr, multiframe).
* Every tool reads that corpus and writes into a fresh directory on the same file
  system; the page cache is dropped before each run (cold) when the kernel allows,
  else each run follows one untimed read of the corpus (warm); the report says which.
* Time is spawn to exit plus a ``sync`` (so write-back is paid by whoever caused it);
  rates are on the input. Peak RSS of the whole process tree (50 ms sampling) and the
  kernel's high-water mark of its largest process; CPU from ``wait4``.
* Output check: files written, and how many of each kind parse as DICOM.
* Memory flatness: the whole sequence is repeated at ``--sizes`` fractions of
  ``--instances`` (default 25% and 100%).
* Audit (untimed): each tool on one instance of each kind; which PHI-shaped values it
  kept, changed, emptied or removed, at the top level, in nested items, in the
  private block and in functional groups.

``cp -r`` is the floor: no tool that reads and writes every byte can beat it. Ours gets
the basic profile config ``{"dicom": {"filterProfile":
"ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}}``; the peers get their defaults (gdcmanon
``--dumb`` a hand-written tag list, see ``deidentify/tools.py``), and dcmanon runs
twice: with its defaults, and with tag actions that do our basic profile's work
(``deidentify/dcmanon_config.py``: our own decision for every row of the PS3.15 table,
in dcmanon's vocabulary), one process per core either way.

Before the sizes: start-up (``deidentify/startup.py``), one CT slice through each tool,
and for ours ``python -X importtime`` of that run. After them, the goals of issue 19
(``deidentify/report.py`` ``GOALS``) as ratios from this one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pydicom

# isort: split
# The bench's own modules, in bench/ (this script's directory is on sys.path).
from deidentify.audit import audit_tool
from deidentify.corpus import one_of_each, write_corpus
from deidentify.report import COMMAND, markdown
from deidentify.runner import (
    check_output,
    log_excerpt,
    prepare_cache,
    run_measured,
    summarize,
)
from deidentify.startup import one_file_run, our_imports
from deidentify.tools import (
    TOOLS,
    Context,
    Tool,
    install_gdcm,
    install_python_peers,
    make_keypair,
    our_exe,
    write_config,
    write_dcmanon_actions,
)

ROOT = Path(__file__).resolve().parent.parent


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def variants(names: list[str], workers: list[int]) -> dict[str, tuple[Tool, int]]:
    """Run order and names: ours once per worker count, then the peers, then cp."""
    out: dict[str, tuple[Tool, int]] = {}
    for name in names:
        if name == "ours":
            for w in workers:
                out[f"ours (workers={w})"] = (TOOLS["ours"], w)
        else:
            out[name] = (TOOLS[name], 1)
    return out


def main(argv: list[str] | None = None) -> int:
    cpus = os.cpu_count() or 1
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--instances", type=int, default=2000, help="size of the full corpus")
    ap.add_argument("--sizes", type=_floats, default=[0.25, 1.0],
                    help="comma-separated fractions of --instances to run (memory flatness)")
    ap.add_argument("--workers", type=_ints, default=sorted({1, cpus}),
                    help=f"comma-separated worker counts for ours (default 1,{cpus})")
    ap.add_argument("--tools", default=",".join(TOOLS),
                    help="comma-separated subset of: " + ", ".join(TOOLS))
    ap.add_argument("--install-peers", action="store_true",
                    help="create bench/.peers-venv (dicognito, deid) and apt-get "
                         "libgdcm-tools when missing")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--warm", action="store_true",
                    help="do not drop the page cache; read the corpus once before each run")
    ap.add_argument("--timeout", type=float, default=3600, help="per run, seconds")
    ap.add_argument("--no-audit", action="store_true",
                    help="skip the what-changes audit (tools still get an untimed warm-up)")
    ap.add_argument("--work-dir", type=Path, default=None,
                    help="parent of the scratch dir (default: the system temp dir)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the corpus, the outputs and the logs (scratch dir printed)")
    ap.add_argument("--json", type=Path,
                    default=ROOT / "bench/results/deidentify_throughput.json")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.tools.split(",") if n.strip()]
    unknown = [n for n in names if n not in TOOLS]
    if unknown:
        ap.error(f"unknown tools {unknown}; choose from {', '.join(TOOLS)}")
    started = time.perf_counter()

    if args.install_peers:
        if {"dicognito", "deid", "dcmanon", "dcmanon-equal"} & set(names):
            print("installing Python peers into bench/.peers-venv ...", flush=True)
            if reason := install_python_peers():
                print(f"  {reason}", flush=True)
        if {"gdcmanon-dumb", "gdcmanon-basic"} & set(names):
            print("installing libgdcm-tools (apt-get) if missing ...", flush=True)
            if reason := install_gdcm():
                print(f"  {reason}", flush=True)

    work = Path(tempfile.mkdtemp(prefix="dicom-deid-filebench-", dir=args.work_dir))
    ctx = Context(work=work, our_exe=our_exe(), config=write_config(work),
                  dcmanon_actions=write_dcmanon_actions(work) if "dcmanon-equal" in names
                  else None)
    if "gdcmanon-basic" in names and (pair := make_keypair(work)):
        ctx.key, ctx.cert = pair
    runs = variants(names, args.workers)
    skipped = {}
    for label, (tool, _) in runs.items():
        if reason := tool.missing(ctx):
            skipped[label] = reason
            print(f"{label}: skipped ({reason})", flush=True)

    res: dict = {
        "command": " ".join([COMMAND.split(" --")[0], *(sys.argv[1:] if argv is None
                                                         else argv)]),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {"cpus": cpus, "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
                    "python": platform.python_version(), "kernel": platform.release(),
                    "pydicom": pydicom.__version__},
        "work_dir": str(work),
        "tools": {label: {"describe": tool.describe, "version": tool.version(ctx),
                          **({"skipped": skipped[label]} if label in skipped else {})}
                  for label, (tool, _) in runs.items()},
        "sizes": [], "log_excerpts": {}, "audit": {},
    }
    try:
        # Untimed, first: the audit doubles as every tool's warm-up run, which leaves
        # Python bytecode caches behind (see runner.child_env) so that no timed run
        # pays for compiling its imports.
        print("audit / warm-up: one instance of each kind through every tool (untimed) ...",
              flush=True)
        inputs = one_of_each(work / "audit-in", args.seed)
        scratch = work / "audit"
        scratch.mkdir()
        for label, (tool, workers) in runs.items():
            if label in skipped:
                continue
            ctx.workers = workers
            if args.no_audit or tool.name == "cp" or (
                    tool.name == "ours" and "ours" in res["audit"]):
                run_measured(tool.argv(ctx, inputs["ct"], scratch / "warm"),
                             scratch / "warm.log", args.timeout)
                shutil.rmtree(scratch / "warm", ignore_errors=True)
                continue
            key = "ours" if tool.name == "ours" else label
            res["audit"][key] = audit_tool(tool, ctx, inputs, scratch)

        print("start-up: one CT through every tool, warm, median of 5 ...", flush=True)
        res["startup"] = {}
        for label, (tool, workers) in runs.items():
            if label in skipped or tool.name == "cp":
                continue
            ctx.workers = workers
            res["startup"][label] = one_file_run(tool, ctx, inputs["ct"], scratch)
            if tool.name == "ours":
                res["startup"][label].update(our_imports(ctx, inputs["ct"], scratch))
            print(f"  {label:24s} {res['startup'][label]}", flush=True)

        for frac in sorted(args.sizes):
            n = max(3, round(args.instances * frac))
            src = work / f"corpus-{n}"
            print(f"\ngenerating {n} instances (seed {args.seed}) in {src} ...", flush=True)
            manifest = write_corpus(src, n, args.seed)
            print(f"  {manifest['bytes'] / 1e6:,.0f} MB in {manifest['generate_s']} s "
                  "(not timed)", flush=True)
            size: dict = {"manifest": manifest, "runs": {}, "cache": "?"}
            caches = set()
            for label, (tool, workers) in runs.items():
                if label in skipped:
                    size["runs"][label] = {"skipped": skipped[label]}
                    continue
                ctx.workers = workers
                slug = label.replace(" ", "").replace("(", "-").replace(")", "").replace(
                    "=", "")
                dst = work / f"out-{n}-{slug}"
                log = work / f"log-{n}-{slug}.txt"
                caches.add(prepare_cache(src, not args.warm))
                run = run_measured(tool.argv(ctx, src, dst), log, args.timeout)
                out = check_output(dst)
                r = summarize(run, manifest, out)
                if tool.name == "ours" and ctx.reports:
                    with contextlib.suppress(OSError, ValueError):
                        report = json.loads(ctx.reports[-1].read_text())
                        report["failures"] = report.get("failures", [])[:5]
                        r["our_report"] = report
                size["runs"][label] = r
                res["log_excerpts"][label] = log_excerpt(log)
                print(f"  {label:24s} {r['seconds']:7.1f} s  {r['instances_per_s']:7.1f} inst/s"
                      f"  {r['mb_per_s']:7.1f} MB/s  peak {r['peak_rss_mib']:7.1f} MiB  "
                      f"files {out['files']}/{n}  exit {run['returncode']}", flush=True)
                if not args.keep:
                    shutil.rmtree(dst, ignore_errors=True)
            size["cache"] = "/".join(sorted(caches)) or "?"
            res["sizes"].append(size)
            if not args.keep:
                shutil.rmtree(src, ignore_errors=True)

    finally:
        res["elapsed_s"] = round(time.perf_counter() - started, 1)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2, default=str))
        if args.keep:
            print(f"\nkept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(markdown(res))
    print(f"\nJSON: {args.json}  (run took {res['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
