"""The training handoff: export the de-identified store with the API, list what landed,
gate it, and write and read back the manifest beside it."""

from __future__ import annotations

import io

import pandas as pd
import pyarrow.parquet as pq
import pytest
from airflow.sdk.exceptions import AirflowFailException
from dicom_deid_airflow import manifest as manifest_module
from dicom_deid_airflow.manifest import MANIFEST_COLUMNS, build_manifest, list_exported_objects
from dicom_deid_airflow.quality import raise_if_failed, run_gate
from google.cloud import storage

from dicom_deid.devstack import wait_for_operation
from dicom_deid.gcs import client as gcs_client
from tests.airflow_quality.conftest import SUITES, Corpus, assert_no_phi, stores_api


@pytest.fixture
def gcs(gcs_emulator) -> storage.Client:
    return gcs_client("local")


def export(hc, store: str, uri_prefix: str, mime: str | None = None) -> None:
    destination = {"uriPrefix": uri_prefix}
    if mime:
        destination["mimeType"] = mime
    op = stores_api(hc).export(name=store, body={"gcsDestination": destination}).execute()
    done = wait_for_operation(hc, op["name"])
    assert "error" not in done and not int(done["metadata"]["counter"].get("failure", 0))


def dest_sops(corpus: Corpus, store: str) -> set[str]:
    return {i["00080018"]["Value"][0] for i in corpus.client(store).search_for_instances()}


def test_export_listing_and_gate(corpus: Corpus, hc, bucket, gcs, tmp_path) -> None:
    store = corpus.stores["strong"]
    prefix = f"gs://{bucket.name}/deid/run-1"
    export(hc, store, prefix + "/")
    objects = list_exported_objects(gcs, prefix)
    assert len(objects) == 5
    assert set(objects["instance"]) == dest_sops(corpus, store)
    assert (objects["size"] > 0).all()
    assert objects["name"].str.startswith("deid/run-1/").all()

    passed = run_gate(SUITES / "export.json", objects, name="export",
                      params={"expected_count": 5}, out_dir=tmp_path)
    assert passed.success
    wrong = run_gate(SUITES / "export.json", objects, name="export",
                     params={"expected_count": 6}, out_dir=tmp_path)
    assert wrong.failed_expectations == ["expect_table_row_count_to_equal"]
    with pytest.raises(AirflowFailException, match="expect_table_row_count_to_equal"):
        raise_if_failed(wrong)


def test_manifest_parquet_beside_the_export(corpus: Corpus, hc, bucket, gcs, tmp_path) -> None:
    store = corpus.stores["shift"]
    prefix = f"gs://{bucket.name}/deid"
    export(hc, store, prefix)
    result = build_manifest(corpus.client(store), gcs, prefix)
    assert result.uri == f"gs://{bucket.name}/deid/manifest.parquet"
    assert (result.rows, result.instances, result.missing_metadata) == (5, 5, 0)

    data = bucket.blob("deid/manifest.parquet").download_as_bytes()
    table = pq.read_table(io.BytesIO(data))
    assert table.num_rows == 5 == len(dest_sops(corpus, store))
    assert tuple(table.column_names) == MANIFEST_COLUMNS
    frame = table.to_pandas()
    assert set(frame["sop_uid"]) == dest_sops(corpus, store)
    assert frame["uri"].str.startswith(f"gs://{bucket.name}/deid/").all()
    for uri in frame["uri"]:
        assert bucket.blob(uri.split("/", 3)[3]).exists()
    assert set(frame["modality"]) == {"CT", "MR", "US"}
    ct = frame[frame["rows"] == 128].iloc[0]  # pydicom's CT_small
    assert ct["pixel_spacing_row_mm"] == pytest.approx(0.661468)
    assert ct["slice_thickness_mm"] == pytest.approx(5.0)
    shifted = frame["study_date"].dropna()
    assert len(shifted) >= 1  # the date-shifted run keeps (shifted) study dates

    # No value of the source survives in the manifest (dates were shifted).
    text = frame.astype(str).to_csv(index=False).encode()
    uid_free = frame.drop(columns=["uri", "study_uid", "series_uid", "sop_uid"]).astype(
        str).to_csv(index=False).encode()
    assert_no_phi(text, corpus.needles, uid_free=uid_free)
    assert_no_phi(str(result.to_dict()).encode(), corpus.needles)

    assert run_gate(SUITES / "manifest.json", frame, name="manifest",
                    out_dir=tmp_path).success
    # The manifest is not an exported object: the export gate still counts 5.
    assert len(list_exported_objects(gcs, prefix)) == 5


@pytest.mark.parametrize("out_format", ["parquet", "csv"])
def test_manifest_written_in_chunks_equals_one_written_whole(
        corpus: Corpus, hc, bucket, gcs, monkeypatch, out_format: str) -> None:
    """The manifest is written a series and a row group at a time, so its task holds
    one series however big the export: with row groups of 2 rows (several series, a
    stray object between them) it holds the same rows as one written whole."""
    store = corpus.stores["strong"]
    prefix = f"gs://{bucket.name}/chunks"
    export(hc, store, prefix)
    bucket.blob("chunks/1.2.3/1.2.4/1.2.5.dcm").upload_from_string(b"DICM")  # no metadata
    bucket.blob("chunks/notes.txt").upload_from_string(b"stray")  # no UIDs in its name

    def read(name: str) -> pd.DataFrame:
        data = io.BytesIO(bucket.blob(name).download_as_bytes())
        return pq.read_table(data).to_pandas() if out_format == "parquet" else pd.read_csv(data)

    whole = build_manifest(corpus.client(store), gcs, prefix, out_format=out_format)
    expected = read(f"chunks/manifest.{out_format}")
    monkeypatch.setattr(manifest_module, "ROW_GROUP", 2)
    chunked = build_manifest(corpus.client(store), gcs, prefix, out_format=out_format)
    got = read(f"chunks/manifest.{out_format}")
    assert chunked == whole
    assert (whole.rows, whole.instances, whole.missing_metadata) == (7, 6, 2)
    pd.testing.assert_frame_equal(got, expected)
    assert list(got["uri"]) == sorted(got["uri"])  # the listing's (name) order
    if out_format == "parquet":
        metadata = pq.read_metadata(io.BytesIO(
            bucket.blob("chunks/manifest.parquet").download_as_bytes()))
        assert metadata.num_row_groups == 4 and metadata.num_rows == 7


@pytest.mark.parametrize("out_format", ["parquet", "csv"])
def test_an_empty_export_gets_a_manifest_with_its_columns_and_no_rows(
        corpus: Corpus, bucket, gcs, out_format: str) -> None:
    result = build_manifest(corpus.client(corpus.stores["strong"]), gcs,
                            f"gs://{bucket.name}/empty", out_format=out_format)
    assert (result.rows, result.instances, result.missing_metadata) == (0, 0, 0)
    data = io.BytesIO(bucket.blob(f"empty/manifest.{out_format}").download_as_bytes())
    frame = pq.read_table(data).to_pandas() if out_format == "parquet" else pd.read_csv(data)
    assert tuple(frame.columns) == MANIFEST_COLUMNS and len(frame) == 0


def test_manifest_csv_and_an_object_without_metadata(corpus: Corpus, hc, bucket, gcs,
                                                      tmp_path) -> None:
    store = corpus.stores["strong"]
    prefix = f"gs://{bucket.name}/out"
    export(hc, store, prefix)
    # An object whose instance is not in the store (a stale export, a stray upload).
    bucket.blob("out/1.2.3/1.2.4/1.2.5.dcm").upload_from_string(b"DICM")
    result = build_manifest(corpus.client(store), gcs, prefix, out_format="csv")
    assert result.uri.endswith("/out/manifest.csv")
    assert (result.rows, result.missing_metadata) == (6, 1)
    frame = pd.read_csv(io.BytesIO(bucket.blob("out/manifest.csv").download_as_bytes()))
    assert tuple(frame.columns) == MANIFEST_COLUMNS and len(frame) == 6
    gate = run_gate(SUITES / "manifest.json", frame, name="manifest", out_dir=tmp_path)
    assert not gate.success
    assert ("expect_column_values_to_not_be_null", "modality") in {
        (f.expectation, f.column) for f in gate.failed}


def test_rendered_export_names_are_parsed(corpus: Corpus, hc, bucket, gcs, tmp_path) -> None:
    """image/png exports write {instance}.png (one frame) or {instance}/{N}.png: the
    listing still finds each instance, and the DICOM export gate rejects the names."""
    store = corpus.stores["strong"]
    prefix = f"gs://{bucket.name}/png"
    export(hc, store, prefix, mime="image/png")
    objects = list_exported_objects(gcs, prefix)
    assert set(objects["instance"]) == dest_sops(corpus, store)
    assert objects["name"].str.endswith(".png").all()
    gate = run_gate(SUITES / "export.json", objects, name="export",
                    params={"expected_count": 5}, out_dir=tmp_path)
    assert gate.failed_expectations == ["expect_column_values_to_match_regex"]

    # Multi-frame instances are exported as one object per frame.
    for n in (1, 2):
        bucket.blob(f"cine/1.2/1.3/1.4/{n}.png").upload_from_string(b"png")
    frames = list_exported_objects(gcs, f"gs://{bucket.name}/cine")
    assert list(frames["instance"]) == ["1.4", "1.4"]
    assert list(frames["frame"]) == [1, 2]


def test_bad_uri_prefix() -> None:
    with pytest.raises(ValueError, match="gs://"):
        list_exported_objects(None, "s3://bucket/x")  # type: ignore[arg-type]
