"""Start-up: what a tool costs before and around its first file.

A one-file input (one CT slice) through each tool, warm, spawn to exit, median of
``repeats`` runs: for ours this is the command line's start-up to its first file
(issue 19's goal: under 0.2 s). For ours also ``python -X importtime`` of the same
run: the time spent importing, and whether pydicom or numpy were imported at all
(the byte path needs neither; importing them was a quarter of a second).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from deidentify.runner import child_env
from deidentify.tools import Context, Tool


def one_file_run(tool: Tool, ctx: Context, src: Path, work: Path, repeats: int = 5) -> dict:
    """Median / min / max seconds of ``repeats`` one-file runs of ``tool``."""
    times = []
    for i in range(repeats):
        dst = work / f"startup-{tool.name}-{i}"
        argv = tool.argv(ctx, src, dst)
        started = time.perf_counter()
        r = subprocess.run(argv, capture_output=True, env=child_env(), timeout=120)
        times.append(time.perf_counter() - started)
        shutil.rmtree(dst, ignore_errors=True)
        if r.returncode != 0:
            return {"error": f"exit {r.returncode}"}
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
            "max_s": round(max(times), 3), "runs": repeats}


def our_imports(ctx: Context, src: Path, work: Path) -> dict:
    """``-X importtime`` of one one-file run of ours: total import time, heavy modules."""
    assert ctx.config is not None
    dst = work / "startup-importtime"
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dicom_deid.cli", "deidentify", "--config",
         str(ctx.config), str(src), str(dst), "--workers", str(ctx.workers), "--no-progress",
         "--report", str(work / "startup-importtime.json")],
        capture_output=True, text=True, env=child_env(), timeout=120)
    shutil.rmtree(dst, ignore_errors=True)
    total_us, modules = 0, set()
    for line in r.stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        if not cumulative.strip().isdigit():
            continue
        modules.add(name.strip())
        if len(name) - len(name.lstrip()) == 1:  # top level: its cumulative time counts once
            total_us += int(cumulative)
    heavy = sorted({m.split(".")[0] for m in modules} & {"pydicom", "numpy", "tqdm"})
    return {"imports_ms": round(total_us / 1000, 1), "modules": len(modules),
            "heavy_imported": heavy, "returncode": r.returncode}
