"""One source store with planted PHI, de-identified three ways, shared by these tests.

Why session-scoped: de-identification is the expensive step (about 2 s a run here) and
the tests only read the results. The source holds two marker instances (every PS3.15
attribute carries a unique marker; given distinct Instance Numbers, as slices of a series
have, so each has one source match), one RGB ultrasound-like image with names burned into
its pixels (on a flat background: whole-frame OCR, which the verifier uses, reads text on
speckle only now and then, see the verification module), and pydicom's CT and MR samples.

No Airflow DB is needed: the modules under test take plain DICOMweb and Cloud Storage
clients. API calls go through a fresh discovery client (``hc``): the session-scoped
``healthcare`` client keeps its HTTP connection open, and after an idle gap longer than
uvicorn's keep-alive timeout (5 s, e.g. while OCR runs) its next request can hit the
closed socket and fail with BrokenPipeError.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dicom_deid_airflow.verification.checks import IDENTIFYING_ATTRIBUTES
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from dicom_deid.corpus.burned_instances import PHI_VALUES, burned_instance
from dicom_deid.corpus.markers import marked_instance
from dicom_deid.devstack import healthcare_client, wait_for_operation
from tests.helpers import new_store, stores_api, stow_raw

SUITES = Path(__file__).resolve().parents[2] / "include" / "configs" / "quality"
BASIC = {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}
CONFIGS = {
    "strong": {"dicom": BASIC, "image": {"textRedactionMode": "REDACT_ALL_TEXT"}},
    "weak": {"dicom": {"filterProfile": "KEEP_ALL_PROFILE"}},
    "shift": {"dicom": BASIC, "image": {"textRedactionMode": "REDACT_ALL_TEXT"},
              "text": {"additionalTransformations": [
                  {"infoTypes": ["DATE"], "dateShiftConfig": {}}]}},
    "metadata_only": {"dicom": BASIC},
}
MARKER_SEEDS = (21, 22)
BURNED_SEED = 3


def deidentify(healthcare, dataset: str, source: str, config: dict, prefix: str) -> str:
    """Run dicomStores.deidentify into a new store and wait for it; the store's name."""
    dest = new_store(healthcare, dataset, prefix)
    op = stores_api(healthcare).deidentify(
        sourceStore=source, body={"destinationStore": dest, "config": config}).execute()
    done = wait_for_operation(healthcare, op["name"])
    assert "error" not in done, done
    assert not int(done["metadata"]["counter"].get("failure", 0)), done["metadata"]
    return dest


def to_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@dataclass
class Corpus:
    """The source instances, what identifies each, and the stores made from them."""

    server_url: str
    source: str
    datasets: dict[str, Dataset]  # role -> source dataset (roles: marked-21, burned, ct...)
    stores: dict[str, str] = field(default_factory=dict)  # config name -> destination
    needles: set[str] = field(default_factory=set)  # every PHI value planted or present

    def client(self, store: str) -> DICOMwebClient:
        return DICOMwebClient(url=f"{self.server_url}/v1/{store}/dicomWeb")

    def sop(self, role: str) -> str:
        return str(self.datasets[role].SOPInstanceUID)


def _needles(ds: Dataset) -> set[str]:
    """Identifying values of a source dataset and its UIDs: what no output may hold."""
    out = {str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)}
    for keyword in IDENTIFYING_ATTRIBUTES:
        value = ds.get(keyword)
        if value is None:
            continue
        for item in (value if isinstance(value, (list, tuple)) else [value]):
            text = str(item).strip()
            if len(text) >= 4:
                out.add(text)
    return out


@pytest.fixture
def hc(server):  # noqa: ANN201
    """A discovery client with a fresh connection (see the module docstring)."""
    return healthcare_client(server.url)


@pytest.fixture(scope="session")
def corpus(server, dataset: str) -> Corpus:
    healthcare = healthcare_client(server.url)
    datasets: dict[str, Dataset] = {}
    parts: list[bytes] = []
    needles: set[str] = set()
    for seed in MARKER_SEEDS:
        marked = marked_instance(seed)
        marked.dataset.InstanceNumber = seed  # slices of a series: distinct numbers
        datasets[f"marked-{seed}"] = marked.dataset
        parts.append(marked.to_bytes())
        needles |= {p.marker for p in marked.plants if p.searchable}
    burned = burned_instance(BURNED_SEED, photometric="RGB", background="flat").dataset
    datasets["burned"] = burned
    parts.append(to_bytes(burned))
    needles |= set(PHI_VALUES.values())
    for role, name in (("ct", "CT_small.dcm"), ("mr", "MR_small.dcm")):
        raw = Path(get_testdata_file(name)).read_bytes()
        datasets[role] = dcmread(io.BytesIO(raw))
        parts.append(raw)
    for ds in datasets.values():
        needles |= _needles(ds)

    source = new_store(healthcare, dataset, "vq-src")
    r = stow_raw(f"{server.url}/v1/{source}/dicomWeb", parts)
    assert r.status_code == 200, r.text
    out = Corpus(server.url, source, datasets, needles=needles)
    for name in ("strong", "weak", "shift"):
        out.stores[name] = deidentify(healthcare, dataset, source, CONFIGS[name], f"vq-{name}")
    return out


def assert_no_phi(data: bytes, needles: set[str], *, uid_free: bytes | None = None) -> None:
    """No needle in ``data``. All-digit needles (dates, numeric IDs) can occur by chance
    inside a 39-digit ``2.25`` destination UID, so they are looked for in ``uid_free``
    (the same output with the destination UIDs taken out) when it is given."""
    for needle in needles:
        raw = needle.encode("utf-8")
        haystack = uid_free if (uid_free is not None and needle.isdigit()) else data
        assert raw not in haystack, f"planted value {needle!r} leaked"
