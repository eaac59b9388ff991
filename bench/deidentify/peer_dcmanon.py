"""Drive dcmanon (Rust, Python bindings) over a directory tree; run in the peers' venv.

``python peer_dcmanon.py SRC DST --workers N [--tag-actions FILE]``: every file under
SRC is given to ``dcmanon.Anonymizer.anonymize`` and its bytes written to the same
relative path under DST. dcmanon is a library, not a command, and it works on one
file per call in the calling thread, so the tree is split over N processes (one per
core, as its own benchmarks run it), each holding one ``Anonymizer``.

``--tag-actions`` is a JSON object of dcmanon tag actions (``{"GGGGEEEE": {"action":
...}}``) layered over its defaults, as its documentation describes; without it
dcmanon runs with its defaults. Files it refuses are counted by exception type (never
a message or a path, which may quote a value) and the exit code is 1.
Not imported by the benchmark: it has to run with the peers' own interpreter.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys

_STATE: dict = {}


def _init(src: str, dst: str, actions: dict | None) -> None:
    from dcmanon import Anonymizer

    _STATE.update(src=src, dst=dst, anon=Anonymizer(tag_actions=actions) if actions
                  else Anonymizer())


def _one(rel: str) -> str | None:
    try:
        data = _STATE["anon"].anonymize(os.path.join(_STATE["src"], rel))
    except Exception as exc:  # noqa: BLE001 -- the peer's own error kinds vary
        return type(exc).__name__
    out = os.path.join(_STATE["dst"], rel)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "wb") as f:
        f.write(data)
    return None


def _files(src: str) -> list[str]:
    out = []
    for root, dirs, names in os.walk(src):
        dirs.sort()
        out.extend(os.path.relpath(os.path.join(root, n), src) for n in sorted(names))
    return out


def main(argv: list[str]) -> int:
    args = list(argv)
    workers, actions = os.cpu_count() or 1, None
    if "--workers" in args:
        i = args.index("--workers")
        workers = int(args[i + 1])
        del args[i:i + 2]
    if "--tag-actions" in args:
        i = args.index("--tag-actions")
        with open(args[i + 1]) as f:
            actions = json.load(f)
        del args[i:i + 2]
    src, dst = args
    files = _files(src)
    chunk = max(1, min(16, len(files) // (workers * 32) or 1))
    with multiprocessing.get_context("fork").Pool(
            workers, initializer=_init, initargs=(src, dst, actions)) as pool:
        failed = [r for r in pool.imap_unordered(_one, files, chunksize=chunk) if r]
    for kind in sorted(set(failed)):
        print(f"dcmanon refused {failed.count(kind)} files ({kind})", file=sys.stderr)
    print(f"dcmanon: {len(files) - len(failed)} of {len(files)} files written",
          file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
