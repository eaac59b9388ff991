"""Cloud Storage locations: one ``gs://`` parser for the server and the Airflow side.

The local server (import, export, filter files) and the Airflow tasks (export prefix,
manifest, filter files, Vertex AI output) all take ``gs://`` URIs from users. They must
agree on what a valid one is, or a URI the DAG accepts is refused by the API it calls
(or the reverse). The rules are Cloud Storage's own bucket naming rules, so what passes
here is a bucket Google could hold; the object part is checked for what Cloud Storage
refuses (over 1024 bytes, CR or LF).

Also here: :func:`iter_objects`, the one bucket listing both sides use, and the client
the library uses, which talks to the emulator that ``STORAGE_EMULATOR_HOST`` names
without credentials (the local default), else to Cloud Storage with Application
Default Credentials. The Airflow side builds its own client
from its connection (``dicom_deid_airflow.storage``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import ijson
import requests
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

_BUCKET = re.compile(r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?")
_IP = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_MAX_OBJECT_BYTES = 1024


class GcsUriError(ValueError):
    """A ``gs://`` URI that Cloud Storage would not accept; says which rule, never
    the URI (it may hold a user's folder names)."""


@dataclass(frozen=True)
class GcsUri:
    """A bucket and an object name (or prefix, without a trailing slash when parsed as
    a prefix)."""

    bucket: str
    name: str = ""

    def __str__(self) -> str:
        return f"gs://{self.bucket}/{self.name}" if self.name else f"gs://{self.bucket}"

    def child(self, name: str) -> GcsUri:
        """An object under this prefix."""
        return GcsUri(self.bucket, f"{self.name}/{name}" if self.name else name)


def bucket_problem(bucket: str) -> str | None:
    """Why ``bucket`` is not a valid Cloud Storage bucket name, or None."""
    dotted = "." in bucket
    if not 3 <= len(bucket) <= (222 if dotted else 63):
        return "the bucket name must be 3-63 characters (up to 222 with dots)"
    if not _BUCKET.fullmatch(bucket):
        return ("the bucket name may only hold lowercase letters, digits, - _ . and must "
                "start and end with a letter or digit")
    if dotted and (".." in bucket or any(len(part) > 63 for part in bucket.split("."))):
        return "each dot-separated part of the bucket name must be 1-63 characters"
    if _IP.fullmatch(bucket):
        return "the bucket name must not be an IP address"
    if bucket.startswith("goog"):
        return "the bucket name must not start with 'goog'"
    return None


def parse_gs_uri(uri: object, what: str = "uri", *, prefix: bool = False,
                 require_name: bool = False) -> GcsUri:
    """``gs://bucket/a/b`` -> ``GcsUri("bucket", "a/b")``, or :class:`GcsUriError`
    naming ``what`` (the field) and the rule broken.

    ``prefix``: a folder, so trailing slashes are dropped; ``require_name``: an object
    (or a non-empty prefix) must follow the bucket.
    """
    text = uri if isinstance(uri, str) else ""
    if not text.startswith("gs://"):
        raise GcsUriError(f"{what} must be a gs://bucket[/path] URI")
    bucket, _, name = text[len("gs://"):].partition("/")
    problem = bucket_problem(bucket)
    if problem:
        raise GcsUriError(f"{what}: {problem}")
    if prefix:
        name = name.rstrip("/")
    if require_name and not name:
        raise GcsUriError(f"{what} must name an object after the bucket (gs://bucket/path)")
    if len(name.encode("utf-8")) > _MAX_OBJECT_BYTES or "\r" in name or "\n" in name:
        raise GcsUriError(f"{what}: the object name must be at most 1024 bytes, "
                          "without line breaks")
    return GcsUri(bucket, name)


def client(project: str = "local") -> storage.Client:
    """The emulator ``STORAGE_EMULATOR_HOST`` names (anonymous), else Cloud Storage with
    Application Default Credentials."""
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return storage.Client(project=project, credentials=AnonymousCredentials())
    return storage.Client()


#: Seconds to connect, and between two reads of a listing's answer.
_LIST_TIMEOUT = (60, 300)


def iter_objects(gcs: storage.Client, bucket: str, prefix: str | None = None, *,
                 page_size: int | None = None) -> Iterator[tuple[str, int]]:
    """``(name, size)`` of every object in ``bucket`` under ``prefix``, in name order,
    read from the JSON API's answer as it arrives.

    Why not ``Client.list_blobs``: it parses each page whole. Cloud Storage pages by
    1,000 objects, but fake-gcs-server (the local default) ignores ``fields`` and
    answers one page of every object with all its metadata, about 1.8 KB each: at
    20,000 objects 35 MiB of JSON and 140 MiB of Python objects in the task that
    listed them. Asking it for pages of 1,000 makes it scan the bucket again for each,
    which is quadratic. Parsed as a stream (``ijson``), a listing holds one object at a
    time on both, in one pass on the emulator and a page at a time on Google.
    Opening a page is retried as the client's calls are (``DEFAULT_RETRY``); an answer
    cut off half-way raises rather than restarting a page already partly yielded.
    ``page_size`` asks for pages (``maxResults``); by default the server chooses.
    """
    url = f"{gcs.api_endpoint}/storage/v1/b/{quote(bucket, safe='')}/o"
    query = {"fields": "items(name,size),nextPageToken"}
    if prefix:
        query["prefix"] = prefix
    if page_size:
        query["maxResults"] = str(page_size)
    token: str | None = None
    while True:
        params = {**query, "pageToken": token} if token else query
        response = DEFAULT_RETRY(_open_listing)(gcs, url, params)
        token, name, size = None, None, 0
        with response:
            for path, event, value in ijson.parse(response.raw):
                if path == "items.item.name":
                    name = value
                elif path == "items.item.size":
                    size = int(value)
                elif path == "items.item" and event == "end_map" and name is not None:
                    yield name, size
                    name, size = None, 0
                elif path == "nextPageToken":
                    token = value
        if not token:
            return


def _open_listing(gcs: storage.Client, url: str, params: dict) -> requests.Response:
    """One page's answer, open for streaming; a status other than 200 raises the
    client library's exception for it (``NotFound`` for a missing bucket, ...)."""
    response = gcs._http.get(url, params=params, stream=True,  # noqa: SLF001
                             timeout=_LIST_TIMEOUT)
    if response.status_code != 200:
        raise gexc.from_http_response(response)
    response.raw.decode_content = True  # gzip, if the server chose it
    return response
