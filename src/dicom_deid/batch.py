"""De-identifying a directory tree of DICOM files: ``dicom-deid deidentify``.

For batch users without a server: every file under the source is de-identified in
worker processes (one per core) and written as ``DST/<study>/<series>/<instance>.dcm``
under its *new* UIDs, so no source file name (which often carries a patient's name)
reaches the output. Each output appears atomically (written aside, then hard-linked
into place, which also refuses a second instance with the same new SOP Instance
UID). Files that cannot be de-identified are counted with a reason in the JSON
report; the run goes on. The exit code is non-zero only when the run itself fails.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .api_schema import config_digest
from .engine.instance import DeidentifyError, UnreadableInstance, deidentify_file
from .engine.plan import Plan, build_plan

log = logging.getLogger("dicom_deid.batch")

_CHUNK = 16


@dataclass(frozen=True)
class FileResult:
    file: str  # relative to the source directory
    ok: bool
    reason: str | None = None
    output: str | None = None  # relative to the destination directory


def load_key(path: str | None) -> bytes:
    """The run's secret: from a key file (created if missing), else ``DICOM_DEID_KEY``.

    Without either, a random key is used and the run's UIDs and date shifts will not
    match any other run's.
    """
    if path:
        p = Path(path)
        if not p.exists():
            p.write_text(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
            p.chmod(0o600)
        return base64.b64decode(p.read_text().strip())
    env = os.environ.get("DICOM_DEID_KEY")
    if env:
        return base64.b64decode(env)
    log.warning("no --key-file or DICOM_DEID_KEY: using a one-off key; UIDs and date "
                "shifts will differ from any other run")
    return secrets.token_bytes(32)


_RUN: tuple[str, str, Plan] | None = None


def _init(src_root: str, dst_root: str, plan: Plan, workers: int) -> None:
    """Worker set-up: the run's plan arrives once, not with every file; the OCR engine
    gets this worker's share of the cores (``ocr_rapid.share_cores``) when the plan
    reads text in pixels: only then, since importing it imports numpy."""
    global _RUN
    _RUN = (src_root, dst_root, plan)
    if plan.image.redacts:
        from .engine import ocr_rapid

        ocr_rapid.share_cores(workers)


def _one(rel: str) -> FileResult:
    assert _RUN is not None
    src_root, dst_root, plan = _RUN
    tmp = os.path.join(dst_root, f".deid-{secrets.token_hex(8)}.part")
    try:
        outcome = deidentify_file(os.path.join(src_root, rel), tmp, plan)
    except (UnreadableInstance, DeidentifyError) as exc:
        return FileResult(rel, False, str(exc))
    except OSError as exc:
        return FileResult(rel, False, f"could not read or write ({exc.strerror})")
    out_rel = os.path.join(outcome.study_uid, outcome.series_uid, f"{outcome.sop_uid}.dcm")
    target = os.path.join(dst_root, out_rel)
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.link(tmp, target)
    except FileExistsError:
        return FileResult(rel, False, "another input has the same SOP Instance UID")
    except OSError as exc:
        return FileResult(rel, False, f"could not write the output ({exc.strerror})")
    finally:
        os.unlink(tmp)
    return FileResult(rel, True, output=out_rel)


class _NoBar:
    """What ``run`` uses of a tqdm bar, doing nothing (``--no-progress``)."""

    def __init__(self, **_: object) -> None:
        pass

    def update(self) -> None:
        pass

    def close(self) -> None:
        pass


def source_files(src: Path) -> list[str]:
    """Every regular file under ``src`` (sorted, hidden ones skipped), relative to it."""
    out = []
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                out.append(os.path.relpath(os.path.join(root, name), src))
    return out


def run(config: dict, src: Path, dst: Path, key: bytes, *, workers: int = 0,
        progress: bool = True, retain_safe_private: bool = False) -> dict:
    """De-identify ``src`` into ``dst``; the report (counts, per-file failures)."""
    plan = build_plan(config, key, retain_safe_private=retain_safe_private)
    files = source_files(src)
    dst.mkdir(parents=True, exist_ok=True)
    # never more processes than files: a one-file run starts none
    workers = max(1, min(workers or os.cpu_count() or 1, len(files)))
    started = time.monotonic()
    results: list[FileResult] = []
    if progress:  # imported only to be shown (a tenth of the start-up otherwise)
        from tqdm import tqdm
    else:
        tqdm = _NoBar
    bar = tqdm(total=len(files), unit="file", disable=not progress, file=sys.stderr)
    if workers == 1:
        _init(str(src), str(dst), plan, 1)
        for rel in files:
            results.append(_one(rel))
            bar.update()
    else:
        # Small chunks: a run mixes 100 kB slices with 10 MB multi-frame files, and a
        # big chunk of the latter left to one worker at the end idles the others.
        chunk = max(1, min(_CHUNK, len(files) // (workers * 32)))
        from concurrent.futures import ProcessPoolExecutor  # only when there is a pool

        with ProcessPoolExecutor(workers, initializer=_init,
                                 initargs=(str(src), str(dst), plan, workers)) as pool:
            for result in pool.map(_one, files, chunksize=chunk):
                results.append(result)
                bar.update()
    bar.close()
    seconds = time.monotonic() - started
    failures = [asdict(r) for r in results if not r.ok]
    for item in failures:
        del item["ok"], item["output"]
    written = sum(r.ok for r in results)
    return {
        "profile": plan.profile,
        "config_digest": config_digest(config),
        "counts": {"input": len(files), "written": written, "failed": len(failures)},
        "seconds": round(seconds, 3),
        "files_per_second": round(len(files) / seconds, 1) if seconds else None,
        "failures": failures,
    }
