#!/usr/bin/env python
"""What the Airflow pipeline costs on top of the API work it orchestrates.

Reproduce with ``make bench-pipeline`` (``.venv/bin/python bench/pipeline_overhead.py``).

The same source store (``--ct`` synthetic CT slices in two series, ``--us`` ultrasound
frames with burned-in text in one series) is processed twice on the local Cloud
Healthcare API server and the GCS emulator:

* **direct**: a script doing only the API work the DAG asks for, through the same
  discovery client: create the destination store, one ``dicomStores.deidentify`` per
  route (US with ``REDACT_ALL_TEXT``, CT metadata-only, through ``filterConfig``
  files) waited for in turn, then ``dicomStores.export``. This is the peer: what a team
  without Airflow would run by hand.
* **pipeline**: ``airflow dags test dicom_deidentify`` with the same profile, which adds
  parameter checks, routing by QIDO, verification of a sample (``--sample`` pairs
  fetched over DICOMweb and OCR'd), three Great Expectations gates, the manifest and
  the HTML report, and runs the deferrable operators' triggers inline.

Reported: wall time of each (median of ``--repeat`` runs, each on a fresh destination),
their ratio, where the pipeline's time goes (task durations from the run's metadata
DB), and the peak resident memory of each process tree (sampled every 50 ms; the
server and emulator are measured separately, as they serve both). ``airflow db
migrate`` is done once before any clock starts.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import psutil
import pydicom
from dicomweb_client.api import DICOMwebClient
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from googleapiclient.discovery import Resource

from dicom_deid.corpus import ct_corpus
from dicom_deid.corpus.burned_instances import burned_instance
from dicom_deid.devstack import airflow_env, healthcare_client, local_stack, wait_for_operation

REPO = Path(__file__).resolve().parents[1]
PARENT = "projects/bench/locations/local"
BUCKET = "bench-pipeline"
BASIC = json.loads((REPO / "include" / "configs" / "deid" / "basic.json").read_text())
#: Seconds one operation may take before the bench calls it stuck (--ct/--us scale it).
OPERATION_TIMEOUT = 3600.0


class PeakRss:
    """Peak RSS of a process and its descendants, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
                total = 0
                for p in procs:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
                self.peak = max(self.peak, total)
            except psutil.Error:
                pass
            self._stop.wait(0.05)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def seed(url: str, n_ct: int, n_us: int) -> tuple[str, list[str], list[str]]:
    """A source store; returns its name and the series paths of each route."""
    hc = healthcare_client(url)
    datasets = hc.projects().locations().datasets()
    datasets.create(parent=PARENT, datasetId="bench", body={}).execute()
    dataset = f"{PARENT}/datasets/bench"
    store = datasets.dicomStores().create(parent=dataset, dicomStoreId="source",
                                          body={}).execute()["name"]
    web = DICOMwebClient(url=f"{url}/v1/{store}/dicomWeb")
    ct = ct_corpus(n_ct, seed=7, studies=1, series_per_study=2)
    for start in range(0, len(ct), 20):
        web.store_instances([pydicom.dcmread(io.BytesIO(i.data)) for i in ct[start:start + 20]])
    us = []
    for k in range(n_us):
        ds = burned_instance(100 + k, photometric="RGB").dataset
        if us:  # one series: the first frame's study and series
            ds.StudyInstanceUID, ds.SeriesInstanceUID = (us[0].StudyInstanceUID,
                                                         us[0].SeriesInstanceUID)
        ds.InstanceNumber = k + 1
        us.append(ds)
    web.store_instances(us)
    metadata = sorted({f"/studies/{i.study_uid}/series/{i.series_uid}" for i in ct})
    pixel = [f"/studies/{us[0].StudyInstanceUID}/series/{us[0].SeriesInstanceUID}"]
    return store, pixel, metadata


def _wait(hc: Resource, operation: dict) -> dict:
    """The finished ``operation``, polled every 0.2 s; a failed one stops the bench."""
    if not operation.get("done"):
        operation = wait_for_operation(hc, operation["name"], OPERATION_TIMEOUT, interval=0.2)
    if operation.get("error"):
        raise RuntimeError(operation["error"])
    return operation


def direct(url: str, store: str, pixel: list[str], metadata: list[str], tag: str) -> float:
    """The API work alone, as a script would do it; returns seconds."""
    gcs = storage.Client(project="bench", credentials=AnonymousCredentials())
    bucket = gcs.bucket(BUCKET)
    filters = {}
    for name, paths in (("pixel", pixel), ("metadata", metadata)):
        blob = bucket.blob(f"_filters/{tag}/{name}.txt")
        blob.upload_from_string("\n".join(paths) + "\n")
        filters[name] = f"gs://{BUCKET}/{blob.name}"
    hc = healthcare_client(url)
    stores = hc.projects().locations().datasets().dicomStores()
    dataset = store.rsplit("/dicomStores/", 1)[0]
    start = time.perf_counter()
    dest = stores.create(parent=dataset, dicomStoreId=f"direct-{tag}", body={}).execute()["name"]
    for name in ("pixel", "metadata"):
        config = json.loads(json.dumps(BASIC))
        if name == "pixel":
            config["image"] = {"textRedactionMode": "REDACT_ALL_TEXT"}
        _wait(hc, stores.deidentify(sourceStore=store, body={
            "destinationStore": dest, "config": config,
            "filterConfig": {"resourcePathsGcsUri": filters[name]}}).execute())
    _wait(hc, stores.export(name=dest, body={
        "gcsDestination": {"uriPrefix": f"gs://{BUCKET}/direct-{tag}"}}).execute())
    return time.perf_counter() - start


def pipeline(env: dict, store: str, sample: int,
             tag: str) -> tuple[float, int, subprocess.CompletedProcess]:
    airflow = str(Path(sys.executable).with_name("airflow"))
    conf = {"source_store": store, "destination_store_id": f"dag-{tag}", "profile": "basic",
            "sample_size": sample, "export_prefix": f"gs://{BUCKET}/dag-{tag}"}
    start = time.perf_counter()
    proc = subprocess.Popen([airflow, "dags", "test", "dicom_deidentify", "--conf",
                             json.dumps(conf)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    rss = PeakRss(proc.pid)
    out, _ = proc.communicate()
    seconds = time.perf_counter() - start
    peak = rss.stop()
    return seconds, peak, subprocess.CompletedProcess(proc.args, proc.returncode, out)


def task_durations(home: Path) -> dict[str, float]:
    """Median seconds per task over the runs in the metadata DB."""
    db = sqlite3.connect(home / "airflow.db")
    rows = db.execute("select task_id, start_date, end_date from task_instance "
                      "where dag_id='dicom_deidentify' and state='success'").fetchall()
    per: dict[str, list[float]] = {}
    for task, start, end in rows:
        if start and end:
            per.setdefault(task, []).append(
                (datetime.fromisoformat(str(end)) - datetime.fromisoformat(str(start)))
                .total_seconds())
    return {t: statistics.median(v) for t, v in per.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ct", type=int, default=60, help="CT slices (two series)")
    ap.add_argument("--us", type=int, default=10, help="ultrasound frames with burned-in text")
    ap.add_argument("--sample", type=int, default=20, help="verification sample size")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "pipeline_overhead.json"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        work = Path(tmp)
        # local_stack sets STORAGE_EMULATOR_HOST for this process's GCS clients too.
        with local_stack(work) as stack:
            server, gcs = stack.server, stack.gcs
            storage.Client(project="bench",
                           credentials=AnonymousCredentials()).create_bucket(BUCKET)
            store, pixel, metadata = seed(server.url, args.ct, args.us)
            env = airflow_env(work / "airflow", server.url, gcs.host)
            env["DICOM_DEID_REPORTS"] = str(work / "reports")
            env["AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT"] = "120"
            airflow = str(Path(sys.executable).with_name("airflow"))
            subprocess.run([airflow, "db", "migrate"], env=env, check=True,
                           capture_output=True)
            server_rss = PeakRss(server.proc.pid)
            direct_s, dag_s, dag_rss = [], [], []
            for i in range(args.repeat):
                tag = f"{i}-{uuid.uuid4().hex[:4]}"
                direct_s.append(direct(server.url, store, pixel, metadata, tag))
                seconds, peak, run = pipeline(env, store, args.sample, tag)
                if run.returncode != 0:
                    print(run.stdout[-5000:])
                    raise SystemExit(f"the pipeline run failed (exit {run.returncode})")
                dag_s.append(seconds)
                dag_rss.append(peak)
                print(f"run {i + 1}: direct {direct_s[-1]:.1f} s, pipeline {seconds:.1f} s, "
                      f"pipeline peak RSS {peak / 2**20:.0f} MiB", flush=True)
            server_peak = server_rss.stop()
            tasks = task_durations(work / "airflow")

    instances = args.ct + args.us
    d, p = statistics.median(direct_s), statistics.median(dag_s)
    result = {
        "instances": {"ct": args.ct, "us": args.us}, "sample": args.sample,
        "repeat": args.repeat, "cpus": os.cpu_count(),
        "direct_s": direct_s, "pipeline_s": dag_s, "direct_median_s": d,
        "pipeline_median_s": p, "ratio": p / d,
        "pipeline_peak_rss_mib": max(dag_rss) / 2**20,
        "server_peak_rss_mib": server_peak / 2**20, "task_median_s": tasks,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\n{instances} instances ({args.ct} CT, {args.us} US with burned-in text), "
          f"sample {args.sample}, median of {args.repeat}, {os.cpu_count()} CPUs\n")
    print("| | wall time | per instance | peak RSS |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| direct API script (peer) | {d:.1f} s | {d / instances * 1000:.0f} ms | "
          f"server {server_peak / 2**20:.0f} MiB (both) |")
    print(f"| `airflow dags test dicom_deidentify` | {p:.1f} s ({p / d:.1f}x) | "
          f"{p / instances * 1000:.0f} ms | Airflow {max(dag_rss) / 2**20:.0f} MiB |")
    print("\nwhere the pipeline's time goes (median task duration):\n")
    print("| task | seconds |")
    print("| --- | ---: |")
    for task, seconds in sorted(tasks.items(), key=lambda kv: -kv[1]):
        print(f"| {task} | {seconds:.1f} |")
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
