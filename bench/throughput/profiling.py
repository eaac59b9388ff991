"""An untimed py-spy pass over our server, and where its time goes.

Separate from the timed runs because sampling slows the server down.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from dicom_deid.corpus import CTInstance
from dicom_deid.devstack import ServerProcess
from throughput.dicomweb_load import (
    instance_url,
    retrieve_curl,
    retrieve_requests,
    series_groups,
    stow_requests,
)
from throughput.measure import Target
from throughput.our_server import create_store

# Where a sample's time goes: the first category any of whose patterns occurs in one of
# the sample's frames (checked in this order, so specific work wins over the callers).
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("STOW: fsync + rename of instance files (BlobStore.commit)", ("BlobStore.commit",)),
    ("STOW: fsync of directories (BlobStore.sync_dirs)", ("BlobStore.sync_dirs",)),
    ("STOW: DICOM parse + validate (ingest.inspect)", ("ingest.py:inspect",)),
    ("SQLite (catalog, store lookup)", ("Catalog.", "store_pk", "dicomweb.py:_instances")),
    ("STOW: temp files created/written on the event loop (RelatedParser callbacks)",
     ("RelatedParser._data", "RelatedParser._headers_done", "RelatedParser._end")),
    ("STOW: multipart parsing (python-multipart)", ("MultipartParser", "RelatedParser.feed")),
    ("STOW: cleanup of temp parts (ingest.store)", ("ingest.py:store",)),
    ("STOW: response JSON (_stow_response)", ("_stow_response",)),
    ("WADO: file open/read/close through anyio (thread hand-offs)",
     ("AsyncFile.", "open_file", "stream_files")),
    ("thread hand-off (anyio to_thread)", ("run_sync_in_worker_thread", "to_thread.py")),
    ("Accept / Content-Type parsing (python-multipart parse_options_header)",
     ("multipart.py:content_type", "parse_options_header")),
    ("route matching (Api.dispatch's own time: regex scan of the route table)",
     ("leaf:server/app.py:Api.dispatch",)),
    ("socket send (uvicorn RequestResponseCycle.send)", ("RequestResponseCycle.send",)),
    ("HTTP receive/parse (uvicorn httptools)",
     ("RequestResponseCycle.receive", "HttpToolsProtocol.", "request.stream", "Request.stream")),
    ("routing, middleware, handlers (Starlette, app.py)",
     ("Api.dispatch", "Starlette.__call__", "Middleware", "wrapped_app")),
    ("event loop itself (uvloop/asyncio)", ("Runner.run",)),
]


def py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def profiled(pid: int, out: Path, rate: int, gil: bool) -> Iterator[None]:
    """py-spy record of ``pid`` while the block runs.

    ``gil``: only samples of the thread holding the GIL, i.e. the Python work that
    serialises the server; otherwise every thread that is not idle (file I/O too).
    """
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy not found: VIRTUAL_ENV=.venv uv pip install py-spy")
    # --subprocesses: the work happens in the forked worker processes, not the parent.
    cmd = [exe, "record", "--pid", str(pid), "--subprocesses", "--rate", str(rate),
           "--format", "raw", "--threads", "--output", str(out)] + (["--gil"] if gil else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # let it attach before the work starts
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _frame_name(frame: str) -> str:
    """``fn (path/to/module.py:123)`` -> ``module.py:fn`` (``server/module.py`` for ours)."""
    name, _, where = frame.partition(" (")
    if not where:
        return frame
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if "dicom_deid" in path else parts[-1] if parts else path
    return f"{short}:{name}"


def _category(names: list[str]) -> str:
    for cat, patterns in CATEGORIES:
        for p in patterns:
            if p.startswith("leaf:") and names[-1] == p[5:]:
                return cat
            if not p.startswith("leaf:") and any(p in f for f in names):
                return cat
    return "other"


def summarize_profile(path: Path, top: int = 12) -> dict:
    """Shares of samples by category, by leaf function (self) and by thread.

    Samples of anyio worker threads blocked waiting for work are left out (py-spy does
    not always recognise that wait as idle), so shares are of busy samples.
    """
    self_c: Counter[str] = Counter()
    cats: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread = frames[0].partition(": ")[2] or frames[0]
        names = [_frame_name(f) for f in frames[1:]]
        if not names:
            continue
        if any("Queue.get" in f for f in names[-3:]):
            idle += n
            continue
        total += n
        threads["event loop (MainThread)" if thread == "MainThread" else
                "anyio worker threads" if "AnyIO" in thread else thread] += n
        self_c[names[-1]] += n
        cats[_category(names)] += n

    def share(c: Counter[str], k: int) -> list[list]:
        return [[name, round(v / max(total, 1), 3)] for name, v in c.most_common(k)]

    return {"samples": total, "idle_worker_samples_left_out": idle,
            "threads": share(threads, 5), "categories": share(cats, 20),
            "self": share(self_c, top), "raw": str(path)}


def profile_pass(server: ServerProcess, target: Target, corpus: list[CTInstance],
                 args: argparse.Namespace, scratch: Path) -> dict:
    """STOW into fresh stores and warm retrieval (curl client) under py-spy, two ways."""
    out_dir = args.json.parent / "profiles"
    out_dir.mkdir(parents=True, exist_ok=True)
    summary: dict = {}
    payload = sum(len(i.data) for i in corpus)
    base = target.base
    print("profile pass (py-spy; figures under the profiler are not the timed ones):",
          flush=True)
    try:
        for mode in ("gil", "wall"):
            store = create_store(server.url, f"throughput-profile-{mode}")
            target.base = f"{server.url}/v1/{store}/dicomWeb"
            raw = out_dir / f"stow_{mode}.txt"
            with profiled(server.proc.pid, raw, args.profile_rate, mode == "gil"):
                p = stow_requests(target, corpus, args.batch, args.threads)
            summary[f"stow_{mode}"] = {"rate_under_profiler": f"{p.instances_per_s:.0f} inst/s",
                                       **summarize_profile(raw)}
            for level, urls in (
                ("instance", [instance_url(target.base, i) for i in corpus]),
                ("series", [f"{target.base}/studies/{st}/series/{se}"
                            for st, se in series_groups(corpus)]),
            ):
                client = "curl" if shutil.which("curl") else "requests"
                raw = out_dir / f"wado_{level}_{mode}.txt"
                with profiled(server.proc.pid, raw, args.profile_rate, mode == "gil"):
                    if client == "curl":
                        p = retrieve_curl(target, level, urls, len(corpus), payload,
                                          args.threads, scratch)
                    else:
                        p = retrieve_requests(target, level, urls, len(corpus), payload,
                                              args.threads)
                summary[f"wado_{level}_warm_{client}_{mode}"] = {
                    "rate_under_profiler": f"{p.mb_per_s:.0f} MB/s", **summarize_profile(raw)}
            print(f"  {mode}: done", flush=True)
    finally:
        target.base = base
    return summary
