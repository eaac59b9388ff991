"""Child processes of the server die with it.

``kill -9`` of the server gives it no chance to stop what it started: the forked
request workers and the de-identification pool's processes would run on, reparented
to init, holding CPU and files (an audit found three left for 30 minutes). The kernel
can do it instead: ``PR_SET_PDEATHSIG`` makes it SIGKILL a process when the thread
that created it exits, whatever the way.
"""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with(parent: int) -> None:
    """Have the kernel SIGKILL this process when ``parent`` exits (Linux only).

    Runs first thing in the child. If the parent is already gone (it died between the
    fork and this call), exit now: the signal would never come."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: a child may outlive a killed parent
        return
    if os.getppid() != parent:
        os._exit(1)
