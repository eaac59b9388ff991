"""``filterConfig.resourcePathsGcsUri``: the studies, series or instances an operation
is restricted to, read from Cloud Storage.

``dicomStores.deidentify`` and ``dicomStores.export`` take the same filter (the
discovery document's ``DicomFilterConfig``): a text object of
``/studies/{uid}[/series/{uid}[/instances/{uid}]]`` lines. Both read it here, while the
request waits, so a bad filter is a 400 or 404 on the request and never a failed
operation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import requests
from google.api_core import exceptions as gexc
from google.cloud.storage.retry import DEFAULT_RETRY

from ..gcs import GcsUriError, client, parse_gs_uri
from . import errors

FIELD = "filterConfig.resourcePathsGcsUri"
_PATH = re.compile(r"/?studies/([0-9.]+)(?:/series/([0-9.]+)(?:/instances/([0-9.]+))?)?/?")
#: A request that reads a config or filter object from Cloud Storage waits this long
#: at most, and reads this much at most (a filter of 100,000 instance paths is ~20 MB).
GCS_DEADLINE_S = 10.0
GCS_TEXT_MAX_BYTES = 64 * 2**20

Path = tuple[str, str | None, str | None]


def split_uri(uri: str, what: str) -> tuple[str, str]:
    """Bucket and object path of a request's ``gs://`` URI; 400 naming ``what``."""
    try:
        location = parse_gs_uri(uri, what)
    except GcsUriError as exc:
        raise errors.invalid(str(exc)) from None
    return location.bucket, location.name


def gcs_text(uri: str, field: str) -> str:
    """A config or filter object, read while the request waits: so within a deadline
    (the client's default retries for two minutes, which held a request ~100 s on an
    object the storage answered with errors) and up to a size."""
    bucket_name, path = split_uri(uri, field)
    try:
        data = client().bucket(bucket_name).blob(path).download_as_bytes(
            end=GCS_TEXT_MAX_BYTES, timeout=GCS_DEADLINE_S,
            retry=DEFAULT_RETRY.with_timeout(GCS_DEADLINE_S))
    except gexc.NotFound:
        raise errors.not_found(f"{field}: object not found") from None
    except (gexc.GoogleAPIError, requests.RequestException):
        raise errors.ApiError(503, f"{field}: the object could not be read from Cloud "
                                   f"Storage within {GCS_DEADLINE_S:g} s") from None
    if len(data) > GCS_TEXT_MAX_BYTES:
        raise errors.invalid(f"{field}: the object is larger than "
                             f"{GCS_TEXT_MAX_BYTES // 2**20} MB")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise errors.invalid(f"{field}: the object is not UTF-8 text") from None


def read_filter(body: dict) -> list[Path] | None:
    """The request's filter as (study, series, instance) paths; None when it has none.

    An empty filter is refused (400), as Google refuses it: an operation restricted to
    nothing is a caller's mistake, not a request for the whole store."""
    uri = (body.get("filterConfig") or {}).get("resourcePathsGcsUri")
    if not uri:
        return None
    out = []
    for n, line in enumerate(gcs_text(uri, FIELD).splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        m = _PATH.fullmatch(line)
        if not m:
            raise errors.invalid(f"{FIELD}: line {n} is not "
                                 "/studies/{uid}[/series/{uid}[/instances/{uid}]]")
        out.append((m[1], m[2], m[3]))
    if not out:
        raise errors.invalid(f"{FIELD}: the filter names no resource")
    return out


def select(rows: Iterable, filters: Sequence[Path] | None) -> list:
    """The instance rows (``study_uid``, ``series_uid``, ``sop_uid``) the filter names."""
    if filters is None:
        return list(rows)
    studies = {f[0] for f in filters if f[1] is None}
    series = {(f[0], f[1]) for f in filters if f[1] is not None and f[2] is None}
    instances = {f for f in filters if f[2] is not None}
    return [r for r in rows if r["study_uid"] in studies
            or (r["study_uid"], r["series_uid"]) in series
            or (r["study_uid"], r["series_uid"], r["sop_uid"]) in instances]
