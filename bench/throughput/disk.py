"""The disk and the page cache: dropping the cache, probing the disk, reading files directly.

These give the reference retrieval is held against: what the file system under the
data directory delivers without any server in between.
"""

from __future__ import annotations

import mmap
import os
import time
from pathlib import Path

from throughput.measure import MB, MIB, Phase, Target, WorkQueue, run_threads, timed


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
