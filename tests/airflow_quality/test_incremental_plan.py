"""The increment an incremental run plans, against the local server's DICOMweb: new
series, grown series, catch-up in steps, and a ledger that holds keyed digests only.

No Airflow DB is needed: ``incremental.find_increment`` takes a DICOMweb client and a
ledger; the DAG-level behaviour is in tests/dags/test_incremental.py.
"""

from __future__ import annotations

import io

import pydicom
import pytest
from dicom_deid_airflow.crypto_key import (
    CryptoKeyError,
    decode_key,
    digest,
    with_crypto_key,
)
from dicom_deid_airflow.incremental import INSTANCE, SERIES, Increment, Ledger, find_increment
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from tests.helpers import stow_raw

KEY = bytes(range(32))


def _ct(study: str, series: str, number: int) -> bytes:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = number
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _commit(ledger: Ledger, increment: Increment) -> None:
    ledger.add({"series": increment.series, "failed": 0})


def test_catch_up_in_steps_then_only_what_grew(server, store, dicomweb) -> None:  # noqa: ANN001
    web = f"{server.url}/v1/{store}/dicomWeb"
    study = generate_uid()
    series = sorted(generate_uid() for _ in range(3))
    parts = [_ct(study, series[0], 1), _ct(study, series[0], 2), _ct(study, series[1], 1),
             _ct(generate_uid(), series[2], 1)]
    assert stow_raw(web, parts).status_code == 200
    ledger = Ledger()

    # A cap of 1 still takes a whole series (series[0] has 2 instances), one series a
    # run, and says how many series wait; three runs catch up with all 4 instances.
    steps = []
    while (step := find_increment(dicomweb, ledger, KEY, set(), max_instances=1)).instances:
        assert len(step.series) == 1 and not set(step.series) & set(ledger.series)
        assert all("/instances/" in p for p in step.paths["metadata"])
        steps.append((step.instances, step.waiting_series))
        _commit(ledger, step)
        assert len(steps) <= 3
    assert sorted(n for n, _ in steps) == [1, 1, 2]
    assert [w for _, w in steps] == [2, 1, 0]
    assert find_increment(dicomweb, ledger, KEY, set(), 100).instances == 0

    # A series that grows after it was committed: only its new instance is new.
    late = _ct(study, series[0], 3)
    assert stow_raw(web, [late]).status_code == 200
    grown = find_increment(dicomweb, ledger, KEY, {"CT"}, 100)
    uid = pydicom.dcmread(io.BytesIO(late)).SOPInstanceUID
    assert grown.paths == {"pixel": [f"/studies/{study}/series/{series[0]}/instances/{uid}"],
                           "metadata": []}
    assert grown.studies == {study}


def test_the_ledger_holds_keyed_digests_not_uids() -> None:
    uid = "1.2.826.0.1.3680043.10.543.1"
    assert digest(KEY, INSTANCE, uid) == digest(KEY, INSTANCE, uid)
    assert digest(KEY, INSTANCE, uid) != digest(KEY, SERIES, uid)
    assert digest(KEY, INSTANCE, uid) != digest(bytes(32), INSTANCE, uid)
    assert uid not in digest(KEY, INSTANCE, uid) and len(digest(KEY, INSTANCE, uid)) == 32


def test_the_key_goes_only_where_the_config_names_none() -> None:
    config = {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"},
              "text": {"additionalTransformations": [
                  {"infoTypes": ["DATE"], "dateShiftConfig": {}},
                  {"infoTypes": ["PERSON_NAME"], "cryptoHashConfig": {"cryptoKey": "b3du"}},
                  {"infoTypes": ["URL"], "replaceWithInfoTypeConfig": {}}]}}
    out = with_crypto_key(config, KEY)
    items = out["text"]["additionalTransformations"]
    assert items[0]["dateShiftConfig"]["cryptoKey"]
    assert items[1]["cryptoHashConfig"]["cryptoKey"] == "b3du"
    assert "cryptoKey" not in items[2]["replaceWithInfoTypeConfig"]
    assert "cryptoKey" not in config["text"]["additionalTransformations"][0]["dateShiftConfig"]


@pytest.mark.parametrize(("text", "says"), [
    (None, "is not set"), ("", "is not set"), ("not base64!", "is not base64"),
    ("AAAA", "holds 3 bytes")])
def test_a_bad_key_is_refused_without_quoting_it(text, says) -> None:  # noqa: ANN001
    with pytest.raises(CryptoKeyError, match=says) as caught:
        decode_key(text)
    if text:
        assert text not in str(caught.value)
