"""DICOMweb access, with nothing identifying in logs or exceptions.

The verifier sees both stores only through QIDO-RS and WADO-RS, and both clients
(dicomweb-client, requests, urllib3) quote UIDs and URLs in their logs and messages;
for the source store those are identifying. Every call goes through here so that a
failure names the step and the HTTP status only.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from dicom_deid_airflow.hooks.healthcare import HealthcareApiError
from dicom_deid_airflow.qido import QIDO_PAGE, search_pages

from .errors import VerificationError

__all__ = ["QIDO_PAGE", "Ref", "call", "json_tag", "json_value", "list_instances",
           "quiet_logs", "retrieve"]

_T = TypeVar("_T")


@contextmanager
def quiet_logs() -> Iterator[None]:
    """Raise the level of loggers that quote UIDs and URLs (dicomweb-client logs every
    retrieval with its UIDs at INFO; urllib3 logs URLs at DEBUG; pydicom quotes values
    in warnings), and silence warnings, for the duration of a verification."""
    names = ("dicomweb_client", "urllib3", "pydicom")
    loggers = [logging.getLogger(name) for name in names]
    previous = [lg.level for lg in loggers]
    for lg in loggers:
        if lg.getEffectiveLevel() < logging.WARNING:
            lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, previous, strict=True):
            lg.setLevel(level)


def call(what: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """Run a DICOMweb call; turn its failure into a VerificationError without its URL.

    requests' and dicomweb-client's messages quote the request URL or the UID, which for
    the source store is identifying; ``from None`` keeps them out of the traceback too.
    """
    try:
        return fn(*args, **kwargs)
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise VerificationError(f"{what} failed: HTTP {status}") from None
    except HealthcareApiError as exc:  # the hook's session names the status, not the URL
        raise VerificationError(f"{what} failed: HTTP {exc.code or '?'}") from None
    except Exception as exc:  # anything else may quote a URL or a value just the same
        raise VerificationError(f"{what} failed: {type(exc).__name__}") from None


def json_value(item: dict, tag: str) -> list:
    """The values of attribute ``tag`` (8 hex digits) in a DICOM JSON model item."""
    return list((item.get(tag) or {}).get("Value") or [])


def json_tag(keyword: str) -> str:
    """The DICOM JSON model's key (8 upper-case hex digits) for a keyword."""
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return f"{tag:08X}"


@dataclass(frozen=True)
class Ref:
    """Where an instance is in a store: its study, series and SOP Instance UIDs."""

    study: str
    series: str
    sop: str


def list_instances(client: DICOMwebClient, what: str) -> list[Ref]:
    """Every instance of a store (UIDs only), sorted so the sample does not depend on
    the order the server returns them in."""
    def search(**kwargs: Any) -> list[dict]:
        return call(f"search of {what} instances", client.search_for_instances, **kwargs)

    refs: set[Ref] = set()
    for rows in search_pages(search, fields=["StudyInstanceUID", "SeriesInstanceUID",
                                             "SOPInstanceUID"]):
        refs.update(
            Ref(json_value(r, "0020000D")[0], json_value(r, "0020000E")[0],
                json_value(r, "00080018")[0])
            for r in rows
            if json_value(r, "0020000D") and json_value(r, "0020000E")
            and json_value(r, "00080018"))
    return sorted(refs, key=lambda r: (r.study, r.series, r.sop))


def series_modalities(client: DICOMwebClient, what: str) -> dict[str, str]:
    """The Modality of every series of a store, by Series Instance UID (the route a
    series took is decided by it)."""
    def search(**kwargs: Any) -> list[dict]:
        return call(f"search of {what} series", client.search_for_series, **kwargs)

    out: dict[str, str] = {}
    for rows in search_pages(search, fields=["SeriesInstanceUID", "Modality"]):
        for r in rows:
            if json_value(r, "0020000E"):
                out[str(json_value(r, "0020000E")[0])] = str(
                    (json_value(r, "00080060") or [""])[0]).upper()
    return out


def retrieve(client: DICOMwebClient, ref: Ref, what: str) -> Dataset:
    """One instance retrieved with WADO-RS; ``what`` names the store in a failure."""
    return call(f"retrieval of a {what} instance", client.retrieve_instance,
                ref.study, ref.series, ref.sop)
