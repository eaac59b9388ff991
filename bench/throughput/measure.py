"""Measuring a server under load: its memory, its CPU, the wall time, the client threads.

Units: MB are 10**6 bytes, MiB 2**20.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import psutil

MB = 1e6
MIB = 1024 * 1024
CHECKPOINT = 250


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
