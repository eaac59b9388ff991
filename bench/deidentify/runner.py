"""One measured run of one tool: page cache, wall time, CPU, peak memory, output check.

* Cache: before each run everything is synced and the page cache dropped (we are
  root), so every tool reads the corpus from disk ("cold"). Where the kernel refuses
  (a container), the corpus's own pages are evicted with ``posix_fadvise``, which
  needs no privilege and gives the same cold read of the input. ``--warm`` reads the
  corpus once untimed instead; the run records which.
* Time: from spawning the process to its exit (``exit_s``), and to the end of a
  ``sync`` after it (``seconds``, the headline): a tool that leaves its output in
  dirty pages is not credited for the write-back that ``cp`` or an fsyncing tool pays.
* Memory: the RSS of the whole process tree sampled every 50 ms (``peak_rss``, sums
  worker processes, so shared pages of forked workers count once per worker: an upper
  bound), and the largest single process's own high-water mark (``max_proc_rss``,
  ``VmHWM`` from /proc, read at each sample: catches spikes between samples, misses
  only the last 50 ms of a process). Not ``ru_maxrss`` from ``wait4``: it keeps the
  high-water mark of the forked copy of this (larger) Python process from before the
  exec, so every tool would show at least the bench's own size.
* CPU: user + system seconds of the tree (``wait4`` rusage), so ``cpu_s / seconds`` is
  the number of cores the tool kept busy.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pydicom
from throughput.disk import drop_caches
from throughput.measure import MB, MIB, RssSampler

from deidentify.corpus import SOP_CLASS_KIND


def evict(src: Path) -> bool:
    """Evict every file under ``src`` from the page cache (``POSIX_FADV_DONTNEED`` after
    a sync): a cold read of the corpus where ``drop_caches`` is not allowed (a
    container's read-only /proc/sys). Only clean pages go, hence the sync first."""
    os.sync()
    try:
        for path in src.rglob("*"):
            if path.is_file():
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)
    except (OSError, AttributeError):
        return False
    return True


def prepare_cache(src: Path, cold: bool) -> str:
    """Drop the page cache, else evict the corpus's pages from it (cold), or read
    ``src`` once (warm); say which happened."""
    if cold and (drop_caches() or evict(src)):
        return "cold"
    for path in src.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                while f.read(8 * 1024 * 1024):
                    pass
    return "warm"


class TreeSampler(RssSampler):
    """:class:`RssSampler` (tree RSS sum) plus the largest per-process VmHWM seen."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(pid, interval)
        self.max_hwm = 0

    def rss(self) -> int:
        total = super().rss()
        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
        except psutil.Error:
            return total
        for p in procs:
            self.max_hwm = max(self.max_hwm, _hwm(p.pid))
        return total


def _hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


# Ours reads its secret from here (else it makes a one-off key and warns): a fixed
# bench key, so that ours runs as a real batch job would and its output is repeatable.
BENCH_KEY = base64.b64encode(hashlib.sha256(b"dicom-deid file bench").digest()).decode()


def child_env() -> dict[str, str]:
    """The environment for tools: this one, but letting Python write bytecode caches, so
    that a warm-up run leaves .pyc files and no timed run pays for compiling imports."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.setdefault("DICOM_DEID_KEY", BENCH_KEY)
    return env


def run_measured(argv: list[str], log: Path, timeout: float) -> dict:
    """Run ``argv`` to completion (killed after ``timeout`` s); time and memory of it."""
    with open(log, "ab") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env=child_env())
        sampler = TreeSampler(proc.pid, 0.05).start()
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        t_exit = time.perf_counter()
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop()
    os.sync()
    t_sync = time.perf_counter()
    return {"returncode": proc.returncode, "timed_out": killed.is_set(),
            "exit_s": t_exit - t0, "seconds": t_sync - t0,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss": sampler.peak_all, "max_proc_rss": sampler.max_hwm}


def check_output(dst: Path) -> dict:
    """Files written under ``dst``, their bytes, and how many of each corpus kind parse
    as DICOM (header only; the output is not trusted to keep the SOP class)."""
    files = bytes_ = unreadable = no_sop_class = 0
    kinds: collections.Counter[str] = collections.Counter()
    for path in dst.rglob("*") if dst.exists() else ():
        if not path.is_file():
            continue
        files += 1
        bytes_ += path.stat().st_size
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True,
                                 specific_tags=["SOPClassUID", "Modality", "NumberOfFrames"])
            sop = ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID")
            if sop:
                kinds[SOP_CLASS_KIND.get(str(sop), "other")] += 1
            else:  # a tool that strips the SOP Class UID: classify by what is left
                no_sop_class += 1
                frames = int(ds.get("NumberOfFrames") or 1)
                kind = {"CT": "ct", "MR": "mr" if frames == 1 else "mf"}.get(
                    str(ds.get("Modality")), "other")
                kinds[kind] += 1
        except Exception:  # noqa: BLE001 - any failure to parse counts as unreadable
            unreadable += 1
    return {"files": files, "bytes": bytes_, "kinds": dict(kinds), "unreadable": unreadable,
            "no_sop_class_uid": no_sop_class}


def log_excerpt(log: Path, lines: int = 6) -> list[str]:
    """The first distinct error-looking lines of a tool's output (for the report)."""
    seen: list[str] = []
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return seen
    for line in text:
        low = line.lower()
        if any(w in low for w in ("error", "fail", "could not", "cannot", "exception",
                                  "traceback", "warning")):
            short = line.strip()[:200]
            if short not in seen:
                seen.append(short)
        if len(seen) >= lines:
            break
    return seen


def summarize(run: dict, manifest: dict, out: dict) -> dict:
    """Rates on the corpus's own size (what went in), not on what came out."""
    s = run["seconds"]
    return {
        **{k: round(v, 3) if isinstance(v, float) else v for k, v in run.items()
           if k not in ("peak_rss", "max_proc_rss")},
        "instances": manifest["instances"], "input_bytes": manifest["bytes"],
        "instances_per_s": round(manifest["instances"] / s, 1),
        "mb_per_s": round(manifest["bytes"] / MB / s, 1),
        "cores": round(run["cpu_s"] / s, 2),
        "peak_rss_mib": round(run["peak_rss"] / MIB, 1),
        "max_proc_rss_mib": round(run["max_proc_rss"] / MIB, 1),
        "output": out,
        "complete": out["files"] == manifest["instances"] and not out["unreadable"]
        and run["returncode"] == 0 and not run["timed_out"],
    }
