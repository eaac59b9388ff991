"""Cloud Storage stand-ins side by side: upload cost per object as a bucket fills.

The pipeline's export writes one object per instance, so the stand-in's cost per object
decides how the embedded default scales. This starts each candidate on loopback on
its own empty directory, uploads ``--objects`` objects of ``--kb`` kB with
google-cloud-storage (the client the server and the DAGs use), and reports the mean
time per upload in windows of ``--window`` objects, then the time to list them all
with paging. Ratios compare each window with the first: a flat stand-in stays near 1.

    .venv/bin/python bench/gcs_emulators.py --objects 3000
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from dicom_deid.devstack import FakeGcsServer, GcpStorageEmulator, free_port


def _run(kind: type, objects: int, size: int, window: int) -> tuple[list[float], float]:
    with tempfile.TemporaryDirectory() as tmp:
        emulator = kind(Path(tmp) / "data", free_port(), Path(tmp) / "log").start()
        try:
            os.environ["STORAGE_EMULATOR_HOST"] = emulator.host
            client = storage.Client(project="bench", credentials=AnonymousCredentials())
            bucket = client.create_bucket("bench")
            payload = os.urandom(size)
            means, times = [], []
            for n in range(objects):
                start = time.perf_counter()
                bucket.blob(f"export/{n // 100}/{n}.dcm").upload_from_string(payload)
                times.append(time.perf_counter() - start)
                if len(times) == window:
                    means.append(statistics.mean(times) * 1000)
                    times = []
            start = time.perf_counter()
            listed = sum(1 for _ in client.list_blobs(bucket, prefix="export/"))
            list_s = time.perf_counter() - start
            assert listed == objects, f"{kind.__name__} listed {listed} of {objects}"
            return means, list_s
        finally:
            emulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=3000)
    parser.add_argument("--kb", type=int, default=200)
    parser.add_argument("--window", type=int, default=500)
    args = parser.parse_args()
    results = {kind.__name__: _run(kind, args.objects, args.kb * 1000, args.window)
               for kind in (FakeGcsServer, GcpStorageEmulator)}
    windows = [f"{(i + 1) * args.window}" for i in range(args.objects // args.window)]
    print(f"{args.objects} uploads of {args.kb} kB; mean ms per upload by objects held")
    print("| stand-in | " + " | ".join(f"≤{w}" for w in windows)
          + " | last / first | list all (s) |")
    print("| --- |" + " --- |" * (len(windows) + 2))
    for name, (means, list_s) in results.items():
        print(f"| {name} | " + " | ".join(f"{m:.1f}" for m in means)
              + f" | {means[-1] / means[0]:.2f}x | {list_s:.2f} |")
    fake, old = results["FakeGcsServer"][0], results["GcpStorageEmulator"][0]
    print(f"at the last window gcp-storage-emulator / fake-gcs-server = {old[-1] / fake[-1]:.1f}x")


if __name__ == "__main__":
    main()
