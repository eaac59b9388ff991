"""Quality gates: every shipped suite passes a good table and fails a bad one, naming the
failed expectation, and a failure stops the task without retries."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowFailException
from dicom_deid_airflow.quality import (
    SuiteError,
    counts_table,
    load_suite,
    raise_if_failed,
    run_gate,
)
from dicom_deid_airflow.verification.run import CHECKS, COLUMNS, read_verification_table

from tests.airflow_quality.conftest import SUITES


def verification_table(tmp_path: Path, rows: int = 3, **override: object) -> pd.DataFrame:
    """A verification table as the verifier writes it (through its CSV), all checks true
    except what ``override`` sets on the first row; pixels_clean left unevaluated."""
    frame = pd.DataFrame({column: [""] * rows for column in COLUMNS})
    frame["sample_index"] = [str(i) for i in range(rows)]
    frame["source_sop_sha256"] = [f"{i:016x}" for i in range(rows)]
    frame["dest_sop_uid"] = [f"2.25.{i + 1}" for i in range(rows)]
    frame["modality"] = "CT"
    frame["status"] = "ok"
    frame["match"] = "metadata"
    for check in CHECKS[:-1]:
        frame[check] = "true"
    for column, value in override.items():
        frame.loc[0, column] = value
    path = tmp_path / f"verification-{len(list(tmp_path.iterdir()))}.csv"
    frame.to_csv(path, index=False)
    return read_verification_table(path)


def exported(names: list[str], sizes: list[int] | None = None) -> pd.DataFrame:
    return pd.DataFrame({
        "name": names, "size": sizes or [100] * len(names),
        "study": ["1.2"] * len(names), "series": ["1.3"] * len(names),
        "instance": [f"1.4.{i}" for i in range(len(names))],
    })


def manifest(**override: list) -> pd.DataFrame:
    frame = pd.DataFrame({
        "uri": ["gs://b/p/1/2/3.dcm", "gs://b/p/1/2/4.dcm"], "modality": ["CT", "MR"],
        "rows": [512, 256], "columns": [512, 256], "study_uid": ["1", "1"],
        "series_uid": ["2", "2"],
    })
    for column, values in override.items():
        frame[column] = values
    return frame


def gate(suite: str, table: pd.DataFrame, tmp_path: Path, **params: object):  # noqa: ANN201
    return run_gate(SUITES / f"{suite}.json", table, name=f"test-{suite}",
                    params=params or None, out_dir=tmp_path / "gates")


def failed_columns(result) -> set:  # noqa: ANN001
    return {(f.expectation, f.column) for f in result.failed}


@pytest.mark.parametrize("suite", ["deidentified", "counts", "export", "manifest"])
def test_shipped_suites_load_and_resolve(suite: str, tmp_path: Path) -> None:
    spec = load_suite(SUITES / f"{suite}.json", {"expected_count": 1})
    assert spec["name"] == suite and spec["expectations"]
    raw = json.loads((SUITES / f"{suite}.json").read_text())
    assert raw["description"], "each suite says why it exists"


def test_deidentified_gate_passes_a_clean_sample(tmp_path: Path) -> None:
    result = gate("deidentified", verification_table(tmp_path), tmp_path)
    assert result.success and not result.failed
    raise_if_failed(result)  # no-op
    saved = json.loads(result.result_path.read_text())
    assert saved["gate"]["success"] is True
    assert saved["great_expectations"]["success"] is True


def test_deidentified_gate_fails_on_a_leak_and_names_it(tmp_path: Path) -> None:
    table = verification_table(tmp_path, phi_removed="false", status="failed",
                               phi_removed_reason="PatientName:kept")
    result = gate("deidentified", table, tmp_path)
    assert not result.success
    assert failed_columns(result) == {
        ("expect_column_values_to_be_in_set", "status"),
        ("expect_column_values_to_be_in_set", "phi_removed"),
    }
    leak = next(f for f in result.failed if f.column == "phi_removed")
    assert leak.observed == {"unexpected_count": 1, "element_count": 3, "missing_count": 0}
    with pytest.raises(AirflowFailException) as info:
        raise_if_failed(result)
    message = str(info.value)
    assert "expect_column_values_to_be_in_set(column=phi_removed)" in message
    assert "unexpected_count=1" in message and "test-deidentified" in message
    # The deprecated import path names the same class, so either catches it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from airflow.exceptions import AirflowFailException as Legacy
    assert isinstance(info.value, Legacy)


def test_deidentified_gate_fails_unmatched_and_empty_samples(tmp_path: Path) -> None:
    unmatched = verification_table(tmp_path, status="unmatched", uids_changed="",
                                   phi_removed="", dates_ok="", clinical_kept="")
    assert failed_columns(gate("deidentified", unmatched, tmp_path)) == {
        ("expect_column_values_to_be_in_set", "status")}
    empty = verification_table(tmp_path, rows=0)
    result = gate("deidentified", empty, tmp_path)
    assert result.failed_expectations == ["expect_table_row_count_to_be_between"]
    assert result.failed[0].observed == {"observed_value": 0}


def test_counts_gate_reconciles(tmp_path: Path) -> None:
    assert gate("counts", counts_table(10, 10, 0), tmp_path).success
    lost = gate("counts", counts_table(10, 8, 1), tmp_path, max_failures=1)
    assert failed_columns(lost) == {
        ("expect_column_pair_values_to_be_equal", "source_instances,accounted"),
        ("expect_column_values_to_be_in_set", "reconciled"),
    }
    # One failure is tolerated only when the run allows it.
    assert not gate("counts", counts_table(10, 9, 1), tmp_path).success
    assert gate("counts", counts_table(10, 9, 1), tmp_path, max_failures=1).success
    assert not gate("counts", counts_table(0, 0, 0), tmp_path).success


def test_export_gate(tmp_path: Path) -> None:
    names = [f"deid/1.2/1.3/1.4.{i}.dcm" for i in range(3)]
    assert gate("export", exported(names), tmp_path, expected_count=3).success

    wrong = gate("export", exported(names), tmp_path, expected_count=4)
    assert wrong.failed_expectations == ["expect_table_row_count_to_equal"]
    assert wrong.failed[0].observed == {"observed_value": 3}
    with pytest.raises(AirflowFailException, match="expect_table_row_count_to_equal"):
        raise_if_failed(wrong)

    bad = gate("export", exported([*names[:2], "deid/notes.txt"], [100, 0, 5]), tmp_path,
               expected_count=3)
    assert failed_columns(bad) == {
        ("expect_column_values_to_be_between", "size"),
        ("expect_column_values_to_match_regex", "name"),
    }


def test_export_gate_needs_its_expected_count(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="expected_count"):
        gate("export", exported(["p/1/2/3.dcm"]), tmp_path)


def test_manifest_gate(tmp_path: Path) -> None:
    assert gate("manifest", manifest(), tmp_path).success
    result = gate("manifest", manifest(uri=["gs://b/x.dcm"] * 2, modality=["CT", None],
                                       rows=[0, 256]), tmp_path)
    assert failed_columns(result) == {
        ("expect_column_values_to_be_unique", "uri"),
        ("expect_column_values_to_not_be_null", "modality"),
        ("expect_column_values_to_be_between", "rows"),
    }
    missing = gate("manifest", manifest().drop(columns=["series_uid"]), tmp_path)
    assert failed_columns(missing) == {
        ("expect_column_values_to_not_be_null", "series_uid")}
    assert "exception" in missing.failed[0].observed


def test_suite_format_errors_are_clear(tmp_path: Path) -> None:
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"name": "u", "expectations": [
        {"type": "expect_the_moon", "kwargs": {}}]}))
    with pytest.raises(SuiteError, match="expect_the_moon"):
        run_gate(unknown, manifest(), name="u", out_dir=tmp_path)
    bad_kwargs = tmp_path / "bad.json"
    bad_kwargs.write_text(json.dumps({"name": "b", "expectations": [
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"value_set": [1]}}]}))
    with pytest.raises(SuiteError, match="invalid kwargs"):
        run_gate(bad_kwargs, manifest(), name="b", out_dir=tmp_path)
    with pytest.raises(SuiteError, match="expectations"):
        (tmp_path / "empty.json").write_text("{}")
        load_suite(tmp_path / "empty.json")


def test_placeholders_keep_their_type_and_fill_text(tmp_path: Path) -> None:
    spec = load_suite(SUITES / "export.json", {"expected_count": 7})
    assert spec["expectations"][0]["kwargs"]["value"] == 7
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"params": {"prefix": "deid"}, "expectations": [
        {"type": "expect_column_values_to_match_regex",
         "kwargs": {"column": "name", "regex": "^{{ prefix }}/[0-9.]+$"}}]}))
    assert load_suite(path)["expectations"][0]["kwargs"]["regex"] == "^deid/[0-9.]+$"
    assert load_suite(path, {"prefix": "x"})["expectations"][0]["kwargs"]["regex"] == (
        "^x/[0-9.]+$")
    assert load_suite(path)["name"] == "s"


def test_gx_logs_stay_quiet(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    gate("manifest", manifest(), tmp_path)
    noisy = [r for r in caplog.records
             if r.name.startswith("great_expectations") and r.levelno < logging.WARNING]
    assert not noisy
    assert any(r.name == "dicom_deid_airflow.quality" for r in caplog.records)
