"""The processes that de-identify instances for an operation.

De-identification is CPU-bound Python, so an operation runs it in a pool of processes
(one per core, spawned: the server's threads and sockets are not inherited). Three
things the standard pool does not do, each of which an audit caught missing:

- the processes die with the server: ``kill -9`` of it left them running, reparented
  to init (``lifeline.die_with`` in each, first thing);
- an instance gets a time budget: past it the worker stops that instance (SIGALRM,
  raised where Python code runs) and the instance fails alone with a reason. Never in
  the middle of an import, though: a module stopped half-way stays broken for every
  later instance of that worker (OpenCV's loader, interrupted once, answers each later
  ``import cv2`` with "recursion is detected" — CI saw the next instance fail as
  ``pixel decode failed ... ImportError``). The stop waits for the import to finish;
- ``:cancel`` and server shutdown stop the work within a poll interval, even in the
  middle of a batch: the pool's processes are killed rather than waited for, since a
  process busy in one long call cannot be asked.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from types import FrameType, TracebackType
from typing import Any

from ..engine import ocr_rapid
from . import quiet
from .lifeline import die_with

#: Seconds one instance may take before it fails with a reason (``serve
#: --instance-timeout-s``). Generous: a 1,000-frame cine with text redaction is minutes.
DEFAULT_BUDGET_S = 600.0
#: Where ``serve --instance-timeout-s`` leaves the budget for the server's processes.
BUDGET_ENV = "DICOM_DEID_INSTANCE_TIMEOUT_S"
#: How often a waiting operation checks for ``:cancel`` and shutdown.
POLL_S = 0.25

_budget_s = DEFAULT_BUDGET_S


def configured_budget_s() -> float:
    """The per-instance budget this server runs with (``BUDGET_ENV``, else the default)."""
    try:
        value = float(os.environ.get(BUDGET_ENV, DEFAULT_BUDGET_S))
    except ValueError:
        return DEFAULT_BUDGET_S
    return value if value > 0 else DEFAULT_BUDGET_S


class OverBudget(BaseException):
    """Raised inside a worker when its instance has used up the time budget. A
    ``BaseException``, as ``KeyboardInterrupt`` is, so that the engine's handlers for
    a bad instance (``except Exception``) do not take it for one."""


#: How often a stop that waits for an import to finish looks again.
_RETRY_S = 0.01
#: How long past the budget a stop waits for an import before it interrupts it anyway
#: (an import that never ends must not hold the instance forever).
_IMPORT_GRACE_S = 30.0
_overdue_since: float | None = None


def _importing(frame: FrameType | None) -> bool:
    """Whether ``frame``'s stack runs an import (``importlib``'s frozen frames)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib._bootstrap"):
            return True
        frame = frame.f_back
    return False


def _overtime(_signum: int, frame: FrameType | None) -> None:
    global _overdue_since
    now = time.monotonic()
    _overdue_since = _overdue_since if _overdue_since is not None else now
    if _importing(frame) and now - _overdue_since < _IMPORT_GRACE_S:
        signal.setitimer(signal.ITIMER_REAL, _RETRY_S)  # stop it once the import is done
        return
    raise OverBudget


def _start(parent: int, budget_s: float, processes: int) -> None:
    """Pool initializer: die with the server, arm the budget's signal, log no values,
    and give the OCR engine this process's share of the cores (the pool's processes
    read frames at once; each engine using every core only adds working memory)."""
    global _budget_s
    die_with(parent)
    quiet.install()
    _budget_s = budget_s
    signal.signal(signal.SIGALRM, _overtime)
    ocr_rapid.share_cores(processes)


def _timed(call: tuple[Callable[[Any], str | None], Any]) -> str | None:
    """Run one instance's work under the budget; a failure reason or None."""
    global _overdue_since
    fn, arg = call
    _overdue_since = None
    signal.setitimer(signal.ITIMER_REAL, _budget_s)
    try:
        return fn(arg)
    except OverBudget:
        return (f"de-identification took longer than the per-instance limit of "
                f"{_budget_s:g} s (serve --instance-timeout-s) and was stopped")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


class Pool:
    """A process pool for one operation; ``with Pool(...) as pool``."""

    def __init__(self, budget_s: float | None = None, processes: int | None = None) -> None:
        processes = processes or os.cpu_count() or 1
        self._executor = ProcessPoolExecutor(
            processes, mp_context=multiprocessing.get_context("spawn"), initializer=_start,
            initargs=(os.getpid(), budget_s or configured_budget_s(), processes))

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is not None:
            self.kill()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def map(self, fn: Callable[[Any], str | None], args: Iterable[Any],
            check: Callable[[], None]) -> list[str | None]:
        """``fn`` over ``args`` in the pool, in order. ``check`` is called every
        ``POLL_S`` while waiting and raises to stop the work (cancel, shutdown); the
        pool's processes are then killed so nothing of it runs on."""
        futures: list[Future] = [self._executor.submit(_timed, (fn, a)) for a in args]
        pending = set(futures)
        while pending:
            check()
            done, pending = wait(pending, timeout=POLL_S, return_when=FIRST_EXCEPTION)
            for future in done:
                future.result()  # a broken pool raises here, as the whole job's error
        return [f.result() for f in futures]

    def kill(self) -> None:
        """SIGKILL every process of the pool now (``ProcessPoolExecutor`` has no public
        way before Python 3.14's ``kill_workers``)."""
        kill_workers = getattr(self._executor, "kill_workers", None)
        if kill_workers is not None:
            kill_workers()
            return
        for process in list((getattr(self._executor, "_processes", None) or {}).values()):
            if process.is_alive():
                process.kill()
