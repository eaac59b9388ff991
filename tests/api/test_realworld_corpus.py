"""Real-world DICOM through the local API: every readable file is stored, de-identified
under every profile and REDACT_ALL_TEXT (and one file per pixel format under
REDACT_SENSITIVE_TEXT), and comes back.

The corpus is what registry packages ship (``dicom_deid.corpus.realworld``: pydicom,
pydicom-data, deid-data, nibabel) plus the crafted writer quirks of
``dicom_deid.corpus.quirks``. Whether a file *should* go through is judged without
this project's code: by pydicom (every element converts) or DCMTK's ``dcmdump``
(exit 0, no error). A file either of them reads must be stored, unless it lacks what
a DICOM store needs (a valid SOP Instance UID and the other identifying UIDs,
checked here with pydicom) or repeats an earlier file's SOP Instance UID. Every
refusal and every failed instance must give a reason naming the step and never a
value; the counts of every operation reconcile.
"""

from __future__ import annotations

import io
import re
import subprocess
import warnings
from collections import Counter
from dataclasses import dataclass

import pytest
import requests
from pydicom import dcmread
from pydicom.dataelem import RawDataElement

from dicom_deid.corpus import realworld
from dicom_deid.devstack import wait_for_operation
from dicom_deid.engine.reading import REQUIRED_UIDS, valid_uid
from tests.api.test_pydicom_corpus import same_instance
from tests.helpers import new_store, pixel_format, retrieve_raw, stores_api, stow_raw

FAILED_SOP_SEQ, REFERENCED_SOP_SEQ = "00081198", "00081199"
DUPLICATE = 0x0111
STEPS = ("reading", "profile action", "pixel decode", "pixel encode", "writing")
TAG = re.compile(r"\([0-9A-F]{4},[0-9A-F]{4}\)")
PROFILES = ("KEEP_ALL_PROFILE", "MINIMAL_KEEP_LIST_PROFILE",
            "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE", "DEIDENTIFY_TAG_CONTENTS")
IMAGE_MODES = ("REDACT_ALL_TEXT", "REDACT_SENSITIVE_TEXT")


@dataclass
class Case:
    name: str
    data: bytes
    readable: bool  # by pydicom or dcmdump, judged independently of the engine
    storable: bool  # readable, and has the UIDs a store needs


def _whole(ds: object) -> bool:
    """Every element converts and no value is shorter than its length, at every depth."""
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)
        if isinstance(raw, RawDataElement) and raw.length != 0xFFFFFFFF and (
                len(raw.value or b"") < raw.length):
            return False
        elem = ds[tag]
        if elem.VR == "SQ" and not all(_whole(item) for item in elem.value):
            return False
    return True


def _pydicom_reads(data: bytes) -> tuple[bool, object]:
    """pydicom (force) converts every element, none cut short: pydicom reads a cut file
    without complaint, so lengths are checked here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = dcmread(io.BytesIO(data), force=True)
            return len(ds) > 0 and _whole(ds), ds
        except Exception:
            return False, None


def _pixels_decode(data: bytes) -> bool:
    """pydicom (with the project's codecs installed) decodes the pixel data."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dcmread(io.BytesIO(data), force=True).pixel_array  # noqa: B018
            return True
        except Exception:
            return False


def _dcmdump_reads(data: bytes, tmp) -> bool:
    path = tmp / "probe.dcm"
    path.write_bytes(data)
    run = subprocess.run(["dcmdump", "-q", "+E", str(path)], capture_output=True, timeout=60)
    return run.returncode == 0 and b"E: " not in run.stderr


def _has_store_uids(ds: object) -> bool:
    try:
        return ds is not None and all(valid_uid(ds.get(k)) for k in REQUIRED_UIDS)
    except Exception:
        return False


def _corpus_files() -> list[tuple[str, bytes]]:
    out = [(f"{f.source}:{f.name}", f.path.read_bytes()) for f in realworld.files()]
    try:
        from dicom_deid.corpus import quirks
    except ImportError:  # pragma: no cover - the quirk corpus is part of the project
        return out
    return out + [(f"quirk:{q.name}", q.build()) for q in quirks.quirks()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Case]:
    tmp = tmp_path_factory.mktemp("corpus")
    files = _corpus_files()
    found = realworld.found_sources(realworld.files())
    assert found == set(realworld.SOURCES), f"missing: {set(realworld.SOURCES) - found}"
    cases = []
    for name, data in files:
        by_pydicom, ds = _pydicom_reads(data)
        readable = by_pydicom or _dcmdump_reads(data, tmp)
        if ds is None and readable:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    ds = dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
                except Exception:
                    ds = None
        cases.append(Case(name, data, readable, readable and _has_store_uids(ds)))
    return cases


def _sop_uid(data: bytes) -> str | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return str(dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
                       .get("SOPInstanceUID"))
        except Exception:
            return None


def _stow_each(healthcare, server, dataset: str, cases: list[Case]) -> dict:  # noqa: ANN001
    """``cases`` in stores, uploaded file by file; what happened to each.

    Registry packages ship one image in several encodings under one SOP Instance UID;
    each goes to the first store that does not hold that UID yet, so every file is
    stored and de-identified, none refused as a duplicate.
    """
    stores: list[tuple[str, set]] = []
    stored: dict[str, tuple[str, Case]] = {}
    sop_of: dict[str, tuple[str, str, str]] = {}
    problems, refused = [], Counter()
    for case in cases:
        uid = _sop_uid(case.data)
        # (no SOP Instance UID: refused wherever it goes, so it goes to the first store)
        home = next((s for s in stores if uid is None or uid not in s[1]), None)
        if home is None:
            home = (new_store(healthcare, dataset, "realworld"), set())
            stores.append(home)
        r = stow_raw(f"{server.url}/v1/{home[0]}/dicomWeb", [case.data])
        assert r.status_code < 500, (case.name, r.status_code, r.text[:300])
        body = r.json()
        if r.status_code == 200:
            item = body[REFERENCED_SOP_SEQ]["Value"][0]
            tail = item["00081190"]["Value"][0].split("/studies/", 1)[1].split("/")
            home[1].add(uid)
            stored[case.name] = (home[0], case)
            sop_of[case.name] = (tail[0], tail[2], tail[4])
            continue
        failure = body[FAILED_SOP_SEQ]["Value"][0]
        reason = failure.get("00000902", {}).get("Value", [""])[0]
        refused[reason] += 1
        if case.storable:
            problems.append(f"{case.name}: refused although pydicom or dcmdump reads it "
                            f"and its UIDs are valid: {reason}")
        elif not reason:
            problems.append(f"{case.name}: refused without a reason")
    print(f"{len(cases)} files: {len(stored)} stored in {len(stores)} stores; "
          f"refused: {dict(refused)}")
    assert not problems, "\n".join(problems)
    return {"stores": [s for s, _ in stores], "stored": stored, "uids": sop_of}


@pytest.fixture(scope="module")
def source(healthcare, server, dataset: str, corpus: list[Case]) -> dict:
    """The whole corpus in stores."""
    return _stow_each(healthcare, server, dataset, corpus)


@pytest.fixture(scope="module")
def source_by_format(healthcare, server, dataset: str, source: dict) -> dict:
    """The smallest stored file of each pixel format (``tests.helpers.pixel_format``:
    syntax, photometric, bit depth, samples, planar configuration, multi-frame) in
    stores of their own: about 80 formats among the corpus' 344 files."""
    smallest: dict[tuple | None, Case] = {}
    for _, case in sorted(source["stored"].values(), key=lambda sc: len(sc[1].data)):
        smallest.setdefault(pixel_format(case.data), case)
    assert len(smallest) >= 60, f"only {len(smallest)} pixel formats: the corpus shrank"
    return _stow_each(healthcare, server, dataset, list(smallest.values()))


def test_every_readable_file_is_stored_and_comes_back(server, source: dict) -> None:
    wrong = []
    for name, (store, case) in source["stored"].items():
        got = retrieve_raw(f"{server.url}/v1/{store}/dicomWeb", *source["uids"][name])
        if not same_instance(case.data, got):
            wrong.append(name)
    assert not wrong, f"not returned as sent: {wrong}"
    assert len(source["stored"]) > 250, len(source["stored"])


#: The whole corpus goes through every profile and through REDACT_ALL_TEXT, which
#: decodes, reads and re-encodes every frame of every file. REDACT_SENSITIVE_TEXT takes
#: the same decode and encode path and adds reading the text found, so it gets one file
#: per pixel format: run on all 344 it took 285 s, a sixth of the whole suite.
BY_FORMAT = {"BASIC+REDACT_SENSITIVE_TEXT"}


def _configs() -> list[tuple[str, dict]]:
    out = [(p, {"dicom": {"filterProfile": p}}) for p in PROFILES]
    out += [(f"BASIC+{m}", {"dicom": {"filterProfile": PROFILES[2]},
                            "image": {"textRedactionMode": m}}) for m in IMAGE_MODES]
    return out


@pytest.mark.parametrize(("label", "config"), _configs(), ids=[c[0] for c in _configs()])
def test_every_stored_file_is_deidentified_or_fails_alone_with_a_named_reason(
        request: pytest.FixtureRequest, healthcare, server, dataset: str, label: str,
        config: dict) -> None:
    source = request.getfixturevalue("source_by_format" if label in BY_FORMAT else "source")
    # An instance may fail only where pydicom cannot decode its pixels either (under an
    # image mode, which must decode them); everything else a real writer made goes
    # through, float pixel data included.
    name_of = {(store, source["uids"][name][2]): name
               for name, (store, _) in source["stored"].items()}
    wrongly_failed: list[str] = []
    total_failed, out_count = 0, 0
    all_reasons: Counter = Counter()
    started = []  # every store's operation at once: the server runs them as it can
    for store in source["stores"]:
        dest = new_store(healthcare, dataset, "rw-out")
        op = stores_api(healthcare).deidentify(
            sourceStore=store, body={"destinationStore": dest, "config": config}).execute()
        started.append((store, dest, op["name"]))
    for store, dest, name in started:
        done = wait_for_operation(healthcare, name, timeout=900)
        assert "error" not in done, done
        counter = done["metadata"]["counter"]
        success, failure = int(counter.get("success", 0)), int(counter.get("failure", 0))
        n = sum(1 for s, _ in source["stored"].values() if s == store)
        assert success + failure == n, counter
        if failure:
            logs = requests.get(done["metadata"]["logsUrl"]).json()["failures"]
            all_reasons.update(f["reason"] for f in logs)
            for f in logs:
                name = name_of[(store, f["resource"].rsplit("/", 1)[1])]
                case = source["stored"][name][1]
                if "image" not in config or _pixels_decode(case.data):
                    wrongly_failed.append(f"{name}: {f['reason']}")
        total_failed += failure
        r = requests.get(f"{server.url}/v1/{dest}/dicomWeb/instances",
                         params={"limit": 5000}, headers={"Accept": "application/dicom+json"})
        out = r.json() if r.status_code == 200 else []
        assert len(out) == success
        out_count += success
        base = f"{server.url}/v1/{dest}/dicomWeb"
        for item in out:
            uids = (item["0020000D"]["Value"][0], item["0020000E"]["Value"][0],
                    item["00080018"]["Value"][0])
            [data] = retrieve_raw(base, *uids)
            ds = dcmread(io.BytesIO(data))
            ds.walk(lambda _ds, elem: elem.value)  # every element of the output converts
            assert label == "KEEP_ALL_PROFILE" or ds.get("PatientIdentityRemoved") == "YES", uids
    print(f"{label}: {out_count} of {len(source['stored'])} de-identified; "
          f"failures: {dict(all_reasons)}")
    unnamed = [r for r in all_reasons if not r.startswith(STEPS) or not TAG.search(r)]
    assert not unnamed, f"failure reasons that name no step and element: {unnamed}"
    assert not wrongly_failed, "failed although pydicom decodes their pixels:\n" + "\n".join(
        wrongly_failed)
    assert all(r.startswith("pixel decode") for r in all_reasons), dict(all_reasons)
