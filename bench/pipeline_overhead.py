#!/usr/bin/env python
"""What the Airflow pipeline costs on top of the API work it orchestrates.

Reproduce with ``make bench-pipeline`` (``.venv/bin/python bench/pipeline_overhead.py``);
``make bench-scale`` runs the presets ``--instances 2000`` and ``--instances 20000``, the
README's scaling table: per-instance cost, memory and disk from one size to the other.

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

Reported: STOW-RS time of the source, wall time of each (median of ``--repeat`` runs,
each on a fresh destination) and of the direct script's steps, their ratio, where the
pipeline's time goes (task durations from the run's metadata DB; the run's log is kept
beside the results), the peak resident memory of each process tree (sampled every
50 ms; the server's separately while storing, under the script and under the pipeline),
the server's bound (its live processes' own high-water marks summed: what it could hold
at once, whatever the timing of its workers)
and the disk used. ``airflow db migrate`` is done once before any clock starts.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import itertools
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
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psutil
import pydicom
from dicomweb_client.api import DICOMwebClient
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from googleapiclient.discovery import Resource

from dicom_deid.corpus.burned_instances import burned_instance
from dicom_deid.corpus.ct import iter_ct_corpus
from dicom_deid.devstack import airflow_env, healthcare_client, local_stack, wait_for_operation

REPO = Path(__file__).resolve().parents[1]
PARENT = "projects/bench/locations/local"
BUCKET = "bench-pipeline"
BASIC = json.loads((REPO / "include" / "configs" / "deid" / "basic.json").read_text())
#: Seconds one operation may take before the bench calls it stuck (--ct/--us scale it).
OPERATION_TIMEOUT = 3600.0
#: ``--instances N``: 98% CT in series of about 100 slices (two series per study, as a
#: CT exam with two reconstructions), 2% ultrasound frames with burned-in text.
US_SHARE = 50
SLICES_PER_STUDY = 200


def preset(instances: int) -> tuple[int, int, int]:
    """(CT slices, US frames, CT studies) for a store of ``instances``."""
    us = max(1, instances // US_SHARE)
    ct = instances - us
    return ct, us, max(1, ct // SLICES_PER_STUDY)


def high_water_mark(pid: int) -> int:
    """The most resident memory process ``pid`` has held so far (``VmHWM``), in bytes;
    0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class PeakRss:
    """Peak RSS of a process and its descendants, sampled every 50 ms (``peak``), and
    the most they could hold at once (``bound``: the sum of the live processes' own
    high-water marks). The sampled peak of a pool depends on whether its workers' largest
    moments happen to coincide within a sample, which a longer run catches more often;
    the bound is what each worker did reach, whatever the timing, so it is the figure to
    compare across store sizes and to size a machine by."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.bound, self._stop = pid, 0, 0, threading.Event()
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
                self.bound = max(self.bound, sum(high_water_mark(p.pid) for p in procs))
            except psutil.Error:
                pass
            self._stop.wait(0.05)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def seed(url: str, n_ct: int, n_us: int,
         studies: int) -> tuple[str, list[str], list[str], float]:
    """A source store; returns its name, the series paths of each route and the seconds
    STOW-RS took (instances are generated and sent 20 at a time, so the bench's own
    memory stays flat whatever the store's size)."""
    hc = healthcare_client(url)
    datasets = hc.projects().locations().datasets()
    datasets.create(parent=PARENT, datasetId="bench", body={}).execute()
    dataset = f"{PARENT}/datasets/bench"
    store = datasets.dicomStores().create(parent=dataset, dicomStoreId="source",
                                          body={}).execute()["name"]
    web = DICOMwebClient(url=f"{url}/v1/{store}/dicomWeb")
    series: set[str] = set()
    stow = 0.0
    first: list[pydicom.Dataset] = []

    def ct() -> Iterator[pydicom.Dataset]:
        for n, inst in enumerate(iter_ct_corpus(n_ct, seed=7, studies=studies,
                                                series_per_study=2), 1):
            series.add(f"/studies/{inst.study_uid}/series/{inst.series_uid}")
            yield pydicom.dcmread(io.BytesIO(inst.data))
            if n % 2000 == 0:
                print(f"  stored {n}/{n_ct} CT", flush=True)

    def us() -> Iterator[pydicom.Dataset]:
        for k in range(n_us):
            ds = burned_instance(100 + k, photometric="RGB").dataset
            if first:  # one series: the first frame's study and series
                ds.StudyInstanceUID, ds.SeriesInstanceUID = (first[0].StudyInstanceUID,
                                                             first[0].SeriesInstanceUID)
            else:
                first.append(ds)
            ds.InstanceNumber = k + 1
            yield ds

    for instances in (ct(), us()):
        while batch := list(itertools.islice(instances, 20)):
            start = time.perf_counter()
            web.store_instances(batch)
            stow += time.perf_counter() - start
    pixel = [f"/studies/{first[0].StudyInstanceUID}/series/{first[0].SeriesInstanceUID}"]
    return store, pixel, sorted(series), stow


def _wait(hc: Resource, operation: dict) -> dict:
    """The finished ``operation``, polled every 0.2 s; a failed one stops the bench."""
    if not operation.get("done"):
        operation = wait_for_operation(hc, operation["name"], OPERATION_TIMEOUT, interval=0.2)
    if operation.get("error"):
        raise RuntimeError(operation["error"])
    return operation


def direct(url: str, server_pid: int, store: str, pixel: list[str], metadata: list[str],
           tag: str) -> tuple[float, dict[str, float], dict[str, tuple[int, int]]]:
    """The API work alone, as a script would do it; returns seconds in all and by step,
    and the server's peak RSS and bound by step (which step sets the server's peak)."""
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
    steps: dict[str, float] = {}
    peaks: dict[str, tuple[int, int]] = {}
    dest = stores.create(parent=dataset, dicomStoreId=f"direct-{tag}", body={}).execute()["name"]
    for name in ("pixel", "metadata"):
        config = json.loads(json.dumps(BASIC))
        if name == "pixel":
            config["image"] = {"textRedactionMode": "REDACT_ALL_TEXT"}
        began, rss = time.perf_counter(), PeakRss(server_pid)
        _wait(hc, stores.deidentify(sourceStore=store, body={
            "destinationStore": dest, "config": config,
            "filterConfig": {"resourcePathsGcsUri": filters[name]}}).execute())
        steps[f"deidentify_{name}"] = time.perf_counter() - began
        peaks[f"deidentify_{name}"] = rss.stop(), rss.bound
    began, rss = time.perf_counter(), PeakRss(server_pid)
    _wait(hc, stores.export(name=dest, body={
        "gcsDestination": {"uriPrefix": f"gs://{BUCKET}/direct-{tag}"}}).execute())
    steps["export"] = time.perf_counter() - began
    peaks["export"] = rss.stop(), rss.bound
    return time.perf_counter() - start, steps, peaks


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


def sampled_modalities(reports: Path) -> dict[str, int]:
    """Modalities of the verification samples of the runs under ``reports``: a sample
    with ultrasound frames loads the OCR engine into Airflow's process (several hundred
    MiB), so Airflow's peak memory depends on the draw as much as on the store."""
    counts: dict[str, int] = {}
    for table in sorted(reports.rglob("verification.csv")):
        with table.open(newline="") as fh:
            for row in csv.DictReader(fh):
                counts[row["modality"]] = counts.get(row["modality"], 0) + 1
    return counts


def disk_mib(path: Path) -> float:
    """Bytes under ``path`` as MiB (files only, as ``du --apparent-size`` counts)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int,
                    help="a preset store: 98%% CT in two-series studies of 200 slices, "
                         "2%% US frames with burned-in text (overrides --ct/--us)")
    ap.add_argument("--ct", type=int, default=60, help="CT slices (two series)")
    ap.add_argument("--us", type=int, default=10, help="ultrasound frames with burned-in text")
    ap.add_argument("--studies", type=int, default=1, help="CT studies (two series each)")
    ap.add_argument("--sample", type=int, default=20, help="verification sample size")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", help="keep the stores, the Airflow DB and the reports in this "
                    "folder, and reuse a source store seeded there by an earlier run of the "
                    "same size (default: a temporary folder, removed at the end)")
    ap.add_argument("--out", help="JSON results (default bench/results/"
                                  "pipeline_overhead[_N].json)")
    args = ap.parse_args()
    if args.instances:
        args.ct, args.us, args.studies = preset(args.instances)
    instances = args.ct + args.us
    out = Path(args.out or REPO / "bench" / "results" / (
        f"pipeline_overhead_{args.instances}.json" if args.instances
        else "pipeline_overhead.json"))

    with contextlib.ExitStack() as cleanup:
        if args.work:
            work = Path(args.work).resolve()
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(cleanup.enter_context(
                tempfile.TemporaryDirectory(prefix="bench-pipeline-")))
        seeded = work / "seeded.json"
        size = {"ct": args.ct, "us": args.us, "studies": args.studies}
        if seeded.exists() and json.loads(seeded.read_text())["size"] != size:
            raise SystemExit(f"{work} holds a store of another size: use another --work")
        # local_stack sets STORAGE_EMULATOR_HOST for this process's GCS clients too.
        with local_stack(work) as stack:
            server, gcs = stack.server, stack.gcs
            if seeded.exists():
                kept = json.loads(seeded.read_text())
                store, pixel, metadata = kept["store"], kept["pixel"], kept["metadata"]
                stow_s, stow_rss, source_mib = kept["stow_s"], kept["stow_rss"], kept["mib"]
                print(f"reusing the source store of {instances} instances in {work}")
            else:
                storage.Client(project="bench",
                               credentials=AnonymousCredentials()).create_bucket(BUCKET)
                print(f"storing {instances} instances ({args.ct} CT in {args.studies} "
                      f"studies, {args.us} US)", flush=True)
                server_rss = PeakRss(server.proc.pid)
                store, pixel, metadata, stow_s = seed(server.url, args.ct, args.us,
                                                      args.studies)
                stow_rss = server_rss.stop()
                source_mib = disk_mib(work / "healthcare")
                seeded.write_text(json.dumps({
                    "size": size, "store": store, "pixel": pixel, "metadata": metadata,
                    "stow_s": stow_s, "stow_rss": stow_rss, "mib": source_mib}))
            print(f"STOW-RS: {stow_s:.1f} s ({stow_s / instances * 1000:.1f} ms/instance), "
                  f"server peak {stow_rss / 2**20:.0f} MiB, store {source_mib:.0f} MiB on disk",
                  flush=True)
            env = airflow_env(work / "airflow", server.url, gcs.host)
            env["DICOM_DEID_REPORTS"] = str(work / "reports")
            env["AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT"] = "120"
            airflow = str(Path(sys.executable).with_name("airflow"))
            subprocess.run([airflow, "db", "migrate"], env=env, check=True,
                           capture_output=True)
            direct_s, direct_steps, dag_s, dag_rss = [], [], [], []
            step_peaks: dict[str, tuple[int, int]] = {}
            server_direct, server_dag, bound_direct, bound_dag = 0, 0, 0, 0
            for i in range(args.repeat):
                tag = f"{i}-{uuid.uuid4().hex[:4]}"
                rss = PeakRss(server.proc.pid)
                seconds, steps, peaks = direct(server.url, server.proc.pid, store, pixel,
                                               metadata, tag)
                server_direct = max(server_direct, rss.stop())
                bound_direct = max(bound_direct, rss.bound)
                for step, (peak, bound) in peaks.items():
                    was = step_peaks.get(step, (0, 0))
                    step_peaks[step] = max(was[0], peak), max(was[1], bound)
                direct_s.append(seconds)
                direct_steps.append(steps)
                rss = PeakRss(server.proc.pid)
                seconds, peak, run = pipeline(env, store, args.sample, tag)
                server_dag = max(server_dag, rss.stop())
                bound_dag = max(bound_dag, rss.bound)
                # The run's log beside the results: trigger and task timestamps.
                log = out.with_suffix(f".run{i + 1}.log")
                log.parent.mkdir(parents=True, exist_ok=True)
                log.write_text(run.stdout)
                if run.returncode != 0:
                    failed = [line for line in run.stdout.splitlines()
                              if "Task failed" in line or "Error" in line][-20:]
                    print("\n".join(failed))
                    raise SystemExit(f"the pipeline run failed (exit {run.returncode}); "
                                     f"its log: {log}")
                dag_s.append(seconds)
                dag_rss.append(peak)
                print(f"run {i + 1}: direct {direct_s[-1]:.1f} s "
                      f"({', '.join(f'{k} {v:.1f}' for k, v in steps.items())}), "
                      f"pipeline {seconds:.1f} s, pipeline peak RSS {peak / 2**20:.0f} MiB",
                      flush=True)
            tasks = task_durations(work / "airflow")
            sampled = sampled_modalities(work / "reports")
            disk = {"server_mib": disk_mib(work / "healthcare"),
                    "gcs_mib": disk_mib(work / "gcs"),
                    "airflow_mib": disk_mib(work / "airflow"),
                    "source_store_mib": source_mib}

    d, p = statistics.median(direct_s), statistics.median(dag_s)
    steps_median = {k: statistics.median(s[k] for s in direct_steps) for k in direct_steps[0]}
    result = {
        "instances": {"ct": args.ct, "us": args.us, "ct_studies": args.studies},
        "sample": args.sample, "repeat": args.repeat, "cpus": os.cpu_count(),
        "stow_s": stow_s, "stow_ms_per_instance": stow_s / instances * 1000,
        "direct_s": direct_s, "pipeline_s": dag_s, "direct_median_s": d,
        "pipeline_median_s": p, "ratio": p / d,
        "direct_ms_per_instance": d / instances * 1000,
        "pipeline_ms_per_instance": p / instances * 1000,
        "direct_step_median_s": steps_median,
        "direct_step_server_peak_rss_mib": {k: v[0] / 2**20 for k, v in step_peaks.items()},
        "direct_step_server_bound_mib": {k: v[1] / 2**20 for k, v in step_peaks.items()},
        "pipeline_peak_rss_mib": max(dag_rss) / 2**20,
        "server_peak_rss_mib": {"stow": stow_rss / 2**20, "direct": server_direct / 2**20,
                                "pipeline": server_dag / 2**20},
        # The sum of the server's live processes' high-water marks (PeakRss.bound).
        "server_bound_mib": {"direct": bound_direct / 2**20, "pipeline": bound_dag / 2**20},
        "disk_mib": disk, "task_median_s": tasks, "sampled_modalities": sampled,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\n{instances} instances ({args.ct} CT in {args.studies} studies, {args.us} US "
          f"with burned-in text), sample {args.sample}, median of {args.repeat}, "
          f"{os.cpu_count()} CPUs\n")
    print("| | wall time | per instance | peak RSS |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| STOW-RS, 20 per request | {stow_s:.1f} s | {stow_s / instances * 1000:.1f} ms | "
          f"server {stow_rss / 2**20:.0f} MiB |")
    print(f"| direct API script (peer) | {d:.1f} s | {d / instances * 1000:.1f} ms | "
          f"server {server_direct / 2**20:.0f} MiB (bound {bound_direct / 2**20:.0f}) |")
    print(f"| `airflow dags test dicom_deidentify` | {p:.1f} s ({p / d:.2f}x) | "
          f"{p / instances * 1000:.1f} ms | Airflow {max(dag_rss) / 2**20:.0f} MiB, "
          f"server {server_dag / 2**20:.0f} MiB (bound {bound_dag / 2**20:.0f}) |")
    print(f"\ndisk: source store {source_mib:.0f} MiB; at the end server "
          f"{disk['server_mib']:.0f} MiB, Cloud Storage {disk['gcs_mib']:.0f} MiB, "
          f"Airflow {disk['airflow_mib']:.0f} MiB")
    print("verification samples (all runs): " + ", ".join(
        f"{n} {m}" for m, n in sorted(sampled.items())) + " (US frames are OCR'd in "
        "Airflow's process)")
    print("\ndirect script by step (median; the server's peak RSS and bound in it): "
          + ", ".join(f"{k} {v:.1f} s ({step_peaks[k][0] / 2**20:.0f} MiB, bound "
                      f"{step_peaks[k][1] / 2**20:.0f})" for k, v in steps_median.items()))
    print("\nwhere the pipeline's time goes (median task duration):\n")
    print("| task | seconds |")
    print("| --- | ---: |")
    for task, seconds in sorted(tasks.items(), key=lambda kv: -kv[1]):
        print(f"| {task} | {seconds:.1f} |")
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
