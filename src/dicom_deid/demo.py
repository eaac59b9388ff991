"""``make demo``: the main job end to end on the embedded default, no cloud account.

Today this exercises the local Cloud Healthcare API path the pipeline relies on:
create a dataset and store, upload over STOW-RS, search with QIDO-RS, retrieve
with WADO-RS, export to Cloud Storage (a local emulator) and import it back, then
de-identify the store with the basic profile into a third store, de-identify
ultrasound-like instances with text burned into their pixels with REDACT_ALL_TEXT, and
run the Airflow DAGs end to end (de-identify, verify, gate, export, manifest, training
handoff) with ``airflow dags test``.
It prints what it did and exits non-zero if any step fails.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pydicom
from dicomweb_client.api import DICOMwebClient
from googleapiclient.discovery import Resource
from pydicom.data import get_testdata_file

from .corpus.burned_instances import burned_instance
from .devstack import airflow_env, healthcare_client, local_stack, seed_source, wait_for_operation
from .gcs import client as gcs_client

# pydicom's bundled samples, one per kind of image the pipeline meets.
SAMPLES = [
    "CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "JPEG-lossy.dcm",
    "SC_rgb_jpeg_gdcm.dcm", "SC_rgb_rle_2frame.dcm", "ExplVR_BigEnd.dcm", "693_J2KI.dcm",
    "SC_ybr_full_422_uncompressed.dcm", "J2K_pixelrep_mismatch.dcm", "MR_small_implicit.dcm",
]
PARENT = "projects/demo/locations/local"
CONFIG = Path(__file__).parents[2] / "include" / "configs" / "deid" / "basic.json"
ULTRASOUND = CONFIG.with_name("ultrasound.json")
#: Seconds any one operation may take: the demo's take seconds (OCR of burned-in frames
#: the longest); well past that, an operation is stuck and the demo fails, not hangs.
OPERATION_TIMEOUT = 600.0


def _wait(hc: Resource, name: str) -> dict:
    """The finished operation ``name``, polled every 0.2 s."""
    return wait_for_operation(hc, name, OPERATION_TIMEOUT, interval=0.2)


def _burned_in_text(hc: Resource, url: str, dataset: str) -> bool:
    """Ultrasound-like instances with names burned into their pixels, through
    ultrasound.json (basic profile + REDACT_ALL_TEXT): every instance stored, marked
    BurnedInAnnotation=NO, and the share of drawn strings painted over."""
    stores = hc.projects().locations().datasets().dicomStores()
    source = stores.create(parent=dataset, dicomStoreId="ultrasound", body={}).execute()["name"]
    cases = [burned_instance(1, photometric="RGB"),
             burned_instance(2, photometric="RGB", frames=20, syntax="rle"),
             burned_instance(3, syntax="jpeg-baseline", width=480, height=360)]
    DICOMwebClient(url=f"{url}/v1/{source}/dicomWeb").store_instances(
        [c.dataset for c in cases])
    dest = stores.create(parent=dataset, dicomStoreId="ultrasound-deidentified",
                         body={}).execute()["name"]
    op = stores.deidentify(sourceStore=source, body={
        "destinationStore": dest, "config": json.loads(ULTRASOUND.read_text())}).execute()
    counter = _wait(hc, op["name"])["metadata"]["counter"]
    web = DICOMwebClient(url=f"{url}/v1/{dest}/dicomWeb")
    by_shape = {(c.dataset.Rows, c.dataset.Columns, int(c.dataset.get("NumberOfFrames", 1))): c
                for c in cases}
    painted = total = marked = 0
    for item in web.search_for_instances():
        ds = web.retrieve_instance(item["0020000D"]["Value"][0], item["0020000E"]["Value"][0],
                                   item["00080018"]["Value"][0])
        marked += ds.get("BurnedInAnnotation") == "NO"
        frames = ds.pixel_array.reshape(int(ds.get("NumberOfFrames", 1)), ds.Rows, ds.Columns, -1)
        case = by_shape[(ds.Rows, ds.Columns, len(frames))]
        black = frames.min()
        for r in case.regions:
            total += 1
            painted += bool((frames[:, r.box[1]:r.box[3], r.box[0]:r.box[2]] == black).all())
    done = int(counter.get("success", 0))
    print(f"de-identified {len(cases)} ultrasound-like instances with burned-in text using "
          f"{ULTRASOUND.name}: {done} stored, {marked} marked BurnedInAnnotation=NO, "
          f"{painted} of {total} burned-in strings painted over")
    return done == marked == len(cases) and painted >= total - 1


def _pipeline(hc: Resource, url: str, gcs_host: str, dataset: str, workdir: Path) -> bool:
    """The Airflow DAGs end to end: ``airflow dags test`` (which runs the deferrable
    operators' triggers inline) of dicom_deidentify on a store with planted PHI, then
    the training handoff on the manifest it published."""
    import subprocess

    stores = hc.projects().locations().datasets().dicomStores()
    source = stores.create(parent=dataset, dicomStoreId="pipeline-source",
                           body={}).execute()["name"]
    seeded = seed_source(url, source)
    gcs = gcs_client("demo")
    gcs.create_bucket("demo-pipeline")
    workdir = workdir.resolve()
    env = airflow_env(workdir / "airflow", url, gcs_host)
    env["DICOM_DEID_REPORTS"] = str(workdir / "reports")
    airflow = str(Path(sys.executable).with_name("airflow"))
    print(f"Airflow: migrating a SQLite metadata DB in {workdir / 'airflow'} ...")
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    prefix = "gs://demo-pipeline/deidentified"
    logs = workdir / "airflow-dags-test.log"
    with logs.open("w") as out:
        first = subprocess.run([airflow, "dags", "test", "dicom_deidentify", "--conf", json.dumps({
            "source_store": source, "destination_store_id": "pipeline-deidentified",
            "profile": "basic", "sample_size": seeded, "export_prefix": prefix})],
            env=env, stdout=out, stderr=subprocess.STDOUT)
        second = subprocess.run([airflow, "dags", "test", "dicom_training_handoff", "--conf",
                                 json.dumps({"manifest": f"{prefix}/manifest.parquet"})],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    metrics = stores.getDICOMStoreMetrics(
        name=f"{dataset}/dicomStores/pipeline-deidentified").execute()
    exported = [b.name for b in gcs.list_blobs("demo-pipeline", prefix="deidentified/")
                if b.name.endswith(".dcm")]
    reports = sorted((workdir / "reports").rglob("report.html"))
    print(f"Airflow dicom_deidentify: {seeded} instances in, "
          f"{metrics.get('instanceCount', 0)} de-identified, gates "
          f"{'passed' if first.returncode == 0 else 'FAILED'}, {len(exported)} exported to "
          f"{prefix}, manifest {prefix}/manifest.parquet")
    handoff = "loaded the export as arrays" if second.returncode == 0 else "FAILED"
    print(f"Airflow dicom_training_handoff: {handoff}; run report "
          f"{reports[-1] if reports else '(none)'}; task logs {logs}")
    return first.returncode == 0 and second.returncode == 0 and len(exported) == seeded


def run(workdir: Path) -> int:
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    # local_stack sets STORAGE_EMULATOR_HOST for this process's GCS client too.
    with local_stack(workdir) as stack:
        server, gcs_emu = stack.server, stack.gcs
        print(f"local Cloud Healthcare API at {server.url}/v1 (data in {server.data_dir})")
        print(f"Cloud Storage emulator at {gcs_emu.host}")
        hc = healthcare_client(server.url)
        datasets = hc.projects().locations().datasets()
        stores = datasets.dicomStores()
        datasets.create(parent=PARENT, datasetId="demo", body={}).execute()
        dataset = f"{PARENT}/datasets/demo"
        source = stores.create(parent=dataset, dicomStoreId="source", body={}).execute()["name"]
        print(f"created store {source}")

        web = DICOMwebClient(url=f"{server.url}/v1/{source}/dicomWeb")
        # Several samples share a SOP Instance UID (variants of one image); a store keeps
        # one instance per UID, so keep the first of each.
        instances = list({ds.SOPInstanceUID: ds for ds in reversed(
            [pydicom.dcmread(get_testdata_file(name)) for name in SAMPLES])}.values())
        result = web.store_instances(instances)
        stored = len(result.get("ReferencedSOPSequence", []))
        print(f"uploaded {stored} of {len(instances)} instances over STOW-RS")
        for item in result.get("FailedSOPSequence", []):
            print(f"  refused: {item.get('ErrorComment', '')} (reason {item.FailureReason:#06x})")

        studies = web.search_for_studies()
        found = web.search_for_instances()
        print(f"searched: {len(studies)} studies, {len(found)} instances over QIDO-RS")

        same = 0
        for ds in instances:
            got = web.retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID,
                                        ds.SOPInstanceUID)
            same += got.SOPInstanceUID == ds.SOPInstanceUID and got.PixelData == ds.PixelData
        print(f"retrieved {same} instances over WADO-RS with identical pixel data")

        gcs = gcs_client("demo")
        gcs.create_bucket("demo-export")
        op = stores.export(name=source, body={"gcsDestination": {
            "uriPrefix": "gs://demo-export/source"}}).execute()
        op = _wait(hc, op["name"])
        objects = list(gcs.list_blobs("demo-export", prefix="source/"))
        print(f"exported {op['metadata']['counter'].get('success', '0')} instances to "
              f"gs://demo-export/source ({len(objects)} objects)")

        copy = stores.create(parent=dataset, dicomStoreId="copy", body={}).execute()["name"]
        op = stores.import_(name=copy, body={"gcsSource": {
            "uri": "gs://demo-export/source/**.dcm"}}).execute()
        op = _wait(hc, op["name"])
        metrics = stores.getDICOMStoreMetrics(name=copy).execute()
        print(f"imported them back into {copy}: {metrics['instanceCount']} instances, "
              f"{metrics['studyCount']} studies")

        deid = stores.create(parent=dataset, dicomStoreId="deidentified",
                             body={}).execute()["name"]
        config = json.loads(CONFIG.read_text())
        op = stores.deidentify(sourceStore=source, body={
            "destinationStore": deid, "config": config}).execute()
        op = _wait(hc, op["name"])
        counter = op["metadata"]["counter"]
        done = int(counter.get("success", 0))
        failed = int(counter.get("failure", 0))
        out = DICOMwebClient(url=f"{server.url}/v1/{deid}/dicomWeb").search_for_instances(
            fields=["PatientIdentityRemoved"])
        removed = sum(item.get("00120062", {}).get("Value") == ["YES"] for item in out)
        print(f"de-identified {source} into {deid} with {CONFIG.name}: {done} instances, "
              f"{failed} failed, {removed} marked PatientIdentityRemoved=YES")

        burned_ok = _burned_in_text(hc, server.url, dataset)
        pipeline_ok = _pipeline(hc, server.url, gcs_emu.host, dataset, workdir)

        ok = (stored == len(instances) == len(found) == same == len(objects)
              and int(metrics["instanceCount"]) == stored
              and done + failed == stored and failed == 0 and removed == done and burned_ok
              and pipeline_ok)
        print("demo " + ("succeeded" if ok else "FAILED: counts do not reconcile"))
        return 0 if ok else 1


def main() -> None:
    sys.exit(run(Path(".demo")))


if __name__ == "__main__":
    main()
