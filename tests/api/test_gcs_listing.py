"""``gcs.iter_objects``, the bucket listing the export gate, the manifest and
``dicomStores.import`` share, against the real emulator with the real client."""

from __future__ import annotations

import pytest
from google.api_core import exceptions as gexc
from google.cloud import storage

from dicom_deid.gcs import client, iter_objects

#: Names that sort differently as bytes and as numbers, with characters a URL escapes.
NAMES = ["run/1.2/3.4/10.dcm", "run/1.2/3.4/9.dcm", "run/1.2/5 6/é+%.dcm",
         "run/manifest.parquet"]


@pytest.fixture
def filled(bucket: storage.Bucket) -> storage.Bucket:
    for i, name in enumerate(NAMES):
        bucket.blob(name).upload_from_string(b"x" * i)
    bucket.blob("other/1.dcm").upload_from_string(b"y" * 7)
    bucket.blob("runner.dcm").upload_from_string(b"z")
    return bucket


def test_every_object_under_the_prefix_once_with_its_size(filled: storage.Bucket) -> None:
    listed = list(iter_objects(client(), filled.name, "run/"))
    expected = sorted((name, i) for i, name in enumerate(NAMES))
    assert listed == expected
    assert listed == [(b.name, b.size) for b in filled.client.list_blobs(filled, prefix="run/")]


@pytest.mark.parametrize("page_size", [1, 2, 1000])
def test_pages_are_walked_to_the_end(filled: storage.Bucket, page_size: int) -> None:
    """On Cloud Storage a listing comes 1,000 objects a page; every page is read once."""
    listed = list(iter_objects(client(), filled.name, page_size=page_size))
    assert [name for name, _ in listed] == sorted([*NAMES, "other/1.dcm", "runner.dcm"])


def test_nothing_under_the_prefix_is_an_empty_listing(filled: storage.Bucket) -> None:
    assert list(iter_objects(client(), filled.name, "absent/")) == []


def test_a_missing_bucket_raises_the_client_libraries_not_found(bucket: storage.Bucket) -> None:
    with pytest.raises(gexc.NotFound):
        list(iter_objects(client(), f"{bucket.name}-missing"))
