"""The one ``gs://`` parser: Cloud Storage's bucket rules, object-name limits, and
errors that name the field and the rule but never echo the URI (it may hold a
user's folder names)."""

from __future__ import annotations

import pytest

from dicom_deid.gcs import GcsUri, GcsUriError, bucket_problem, parse_gs_uri


@pytest.mark.parametrize(("uri", "expected"), [
    ("gs://bucket", GcsUri("bucket", "")),
    ("gs://my-bucket_1/a/b.dcm", GcsUri("my-bucket_1", "a/b.dcm")),
    ("gs://a.b.c/x", GcsUri("a.b.c", "x")),
    ("gs://b" + "x" * 61 + "/", GcsUri("b" + "x" * 61, "")),
])
def test_valid_uris_split_into_bucket_and_name(uri: str, expected: GcsUri) -> None:
    assert parse_gs_uri(uri) == expected


@pytest.mark.parametrize(("bucket", "rule"), [
    ("ab", "3-63 characters"),
    ("x" * 64, "3-63 characters"),
    ("Upper", "lowercase"),
    ("-dash", "start and end"),
    ("dash-", "start and end"),
    ("a..b", "dot-separated part"),
    ("a." + "x" * 64, "dot-separated part"),
    ("192.168.1.1", "IP address"),
    ("google-data", "'goog'"),
    ("has space", "lowercase"),
])
def test_bucket_rules_are_cloud_storages(bucket: str, rule: str) -> None:
    problem = bucket_problem(bucket)
    assert problem is not None and rule in problem
    with pytest.raises(GcsUriError, match="export_prefix") as raised:
        parse_gs_uri(f"gs://{bucket}/PATIENT-FOLDER", "export_prefix")
    assert "PATIENT-FOLDER" not in str(raised.value)


@pytest.mark.parametrize("uri", ["s3://bucket/x", "bucket/x", "", None, 42, "GS://bucket"])
def test_only_gs_scheme_is_accepted(uri: object) -> None:
    with pytest.raises(GcsUriError, match=r"^source must be a gs://bucket\[/path\] URI$"):
        parse_gs_uri(uri, "source")


def test_prefix_drops_trailing_slashes_and_children_join() -> None:
    parsed = parse_gs_uri("gs://bucket/runs/one///", prefix=True)
    assert parsed == GcsUri("bucket", "runs/one")
    assert str(parsed.child("manifest.parquet")) == "gs://bucket/runs/one/manifest.parquet"
    assert str(GcsUri("bucket").child("x")) == "gs://bucket/x"
    assert str(GcsUri("bucket")) == "gs://bucket"


def test_require_name_refuses_a_bare_bucket() -> None:
    with pytest.raises(GcsUriError, match="must name an object"):
        parse_gs_uri("gs://bucket/", "manifest", prefix=True, require_name=True)


@pytest.mark.parametrize("name", ["a" * 1025, "line\nbreak", "carriage\rreturn"])
def test_object_names_cloud_storage_refuses(name: str) -> None:
    with pytest.raises(GcsUriError, match="1024 bytes") as raised:
        parse_gs_uri(f"gs://bucket/{name}")
    assert name not in str(raised.value)


def test_multibyte_names_count_bytes_not_characters() -> None:
    assert parse_gs_uri("gs://bucket/" + "é" * 512).name == "é" * 512
    with pytest.raises(GcsUriError):
        parse_gs_uri("gs://bucket/" + "é" * 513)


def test_error_is_a_value_error() -> None:
    """Callers that validate params catch ValueError; the parser's error is one."""
    assert issubclass(GcsUriError, ValueError)
