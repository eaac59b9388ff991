"""One instance in, one de-identified instance out (or a reason why not).

This is the unit both the server's ``dicomStores.deidentify`` and the file CLI run
in worker processes. Two paths give the same result: the byte path
(:mod:`.instance_bytes`: no pydicom, pixel data copied by the kernel) takes the
common case, the dataset path (:mod:`.instance_dataset`: pydicom, repairs, image
redaction, every profile) takes the rest, and is imported only when first needed, so
a run the byte path covers never pays for importing pydicom and numpy. Failures
raise :class:`~.outcome.UnreadableInstance` or :class:`~.outcome.DeidentifyError`
with a message that names the step and the element and never quotes a value.
"""

from __future__ import annotations

import io
import mmap
import os
import tempfile
from typing import BinaryIO

from . import instance_bytes
from .outcome import DeidentifyError, Outcome, UnreadableInstance
from .plan import Plan

__all__ = ["DeidentifyError", "Outcome", "UnreadableInstance", "deidentify_bytes",
           "deidentify_file"]


def deidentify_bytes(data: bytes | str | BinaryIO, plan: Plan) -> tuple[bytes, Outcome]:
    """The de-identified Part 10 bytes of one instance, and its new identity."""
    if isinstance(data, bytes) and instance_bytes.eligible(plan):
        try:
            rendered = instance_bytes.render(data, plan)
        except instance_bytes.Fallback:
            pass
        else:
            return instance_bytes.joined(rendered, data), rendered.outcome
    from .instance_dataset import run

    buf = io.BytesIO()
    outcome = run(data, plan, buf)
    return buf.getvalue(), outcome


def deidentify_file(src: str, dst: str, plan: Plan) -> Outcome:
    """De-identify ``src`` into ``dst`` atomically: ``dst`` is complete or absent."""
    folder = os.path.dirname(dst) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".deid-", suffix=".part")
    try:
        outcome = _by_bytes(src, fd, plan) if instance_bytes.eligible(plan) else None
        if outcome is None:
            from .instance_dataset import run

            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            with os.fdopen(fd, "wb", buffering=1 << 20, closefd=False) as out:
                outcome = run(src, plan, out)
        os.close(fd)
        fd = -1
        os.replace(tmp, dst)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return outcome


def _by_bytes(src: str, out_fd: int, plan: Plan) -> Outcome | None:
    """The byte path from a file mapped in memory (only the headers are touched), or
    None when the dataset path must take it. Nothing is written before that is known."""
    src_fd = os.open(src, os.O_RDONLY)
    try:
        size = os.fstat(src_fd).st_size
        if size < 144:
            return None
        with mmap.mmap(src_fd, size, access=mmap.ACCESS_READ) as mapped:
            try:
                rendered = instance_bytes.render(mapped, plan)
            except instance_bytes.Fallback:
                return None
        instance_bytes.write_file(rendered, src_fd, out_fd)
        return rendered.outcome
    finally:
        os.close(src_fd)
