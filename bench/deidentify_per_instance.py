#!/usr/bin/env python
"""Engine cost per instance, one core, warm cache: where file de-identification time goes.

Run: ``.venv/bin/python bench/deidentify_per_instance.py`` (about a minute). Generates
100 instances of each kind with the project's corpus modules (CT 512x512x16, MR
256x256x16, Enhanced MR 30-60 frames), de-identifies each with the basic profile via
``engine.instance.deidentify_file`` in this process (the byte path, which takes all
three kinds), and prints the best of
``--repeat`` passes in milliseconds per instance (best-of: the machine is shared and
noisy; the minimum is the engine's own cost). Complements
``deidentify_throughput.py``, which measures whole runs against peer tools.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from dicom_deid.corpus.ct import iter_ct_corpus
from dicom_deid.corpus.mr import iter_mr_corpus
from dicom_deid.corpus.multiframe import iter_multiframe_corpus
from dicom_deid.engine.instance import deidentify_file
from dicom_deid.engine.plan import build_plan

KINDS = {"CT": iter_ct_corpus, "MR": iter_mr_corpus, "Enhanced MR": iter_multiframe_corpus}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100, help="per kind")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    plan = build_plan({"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}},
                      b"k" * 32)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print("| kind | MB per instance | ms per instance (best of passes) |")
        print("| --- | ---: | ---: |")
        for kind, generate in KINDS.items():
            src = root / kind.replace(" ", "_")
            src.mkdir()
            files = []
            for i, inst in enumerate(generate(args.instances, seed=1)):
                path = src / f"{i:05d}.dcm"
                path.write_bytes(inst.data)
                files.append(path)
            out = root / "out"
            out.mkdir(exist_ok=True)
            for f in files:  # warm the cache and the decision table
                deidentify_file(str(f), str(out / f.name), plan)
            best = float("inf")
            for _ in range(args.repeat):
                # fresh names: renaming onto an existing file makes ext4 flush it first
                # (auto_da_alloc), a cost no real run pays
                for f in files:
                    (out / f.name).unlink(missing_ok=True)
                start = time.perf_counter()
                for f in files:
                    deidentify_file(str(f), str(out / f.name), plan)
                best = min(best, (time.perf_counter() - start) / len(files))
            size = sum(f.stat().st_size for f in files) / len(files) / 1e6
            print(f"| {kind} | {size:.2f} | {best * 1000:.1f} |")


if __name__ == "__main__":
    main()
