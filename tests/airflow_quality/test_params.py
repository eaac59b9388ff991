"""The run's params are checked before anything is created, with errors that name the
param; the templated defaults render to a store ID and prefix of the run's own."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
from dicom_deid_airflow.params import run_slug, validate_params
from dicom_deid_airflow.report_paths import path_segment

SOURCE = "projects/p/locations/l/datasets/d/dicomStores/source"
GOOD = {"source_store": SOURCE, "destination_store_id": "{{ params.profile }}-{{ run_slug }}",
        "profile": "basic", "study_uids": [], "sample_size": 5,
        "export_prefix": "gs://bucket/{{ run_slug }}", "export_mime_type": "application/dicom",
        "overwrite": False, "max_failures": 0}


def render_for(run_id: str, params: dict):  # noqa: ANN201
    return lambda value: jinja2.Template(value).render(params=params,
                                                       run_slug=run_slug(run_id))


def test_run_slug_is_a_valid_store_id_and_path_segment() -> None:
    assert run_slug("manual__2026-11-25T19:28:00.123+00:00") == (
        "manual-2026-11-25t19-28-00.123-00-00")
    assert run_slug("scheduled__2026-01-01T00:00:00+00:00") == "scheduled-2026-01-01t00-00-00-00-00"
    assert run_slug("::") == "run"


def test_templated_defaults_render_per_run() -> None:
    run_id = "manual__2026-11-25T19:28:00+00:00"
    plan = validate_params(GOOD, render=render_for(run_id, GOOD))
    assert plan["destination_store"] == (
        "projects/p/locations/l/datasets/d/dicomStores/basic-manual-2026-11-25t19-28-00-00-00")
    assert plan["export_prefix"] == "gs://bucket/manual-2026-11-25t19-28-00-00-00"
    other = validate_params(GOOD, render=render_for("manual__2026-11-26T08:00:00+00:00", GOOD))
    assert other["destination_store"] != plan["destination_store"]


@pytest.mark.parametrize(("change", "message"), [
    ({"source_store": "projects/p/datasets/d"}, "source_store must be"),
    ({"destination_store_id": "a/b"}, "destination_store_id may only hold"),
    ({"destination_store_id": "{{ 'x y' }}"}, "destination_store_id may only hold"),
    ({"destination_store_id": "source"}, "must differ from the source"),
    ({"profile": "nope"}, "profile must be one of"),
    ({"study_uids": ["1.2.3", "Jane Doe"]}, r"study_uids\[1\] of the 2 given is not"),
    ({"study_uids": ["1.2.3", "1.2.3"]}, "listed twice"),
    ({"study_uids": "1.2.3"}, "must be a list"),
    ({"max_failures": -1}, "max_failures must be"),
    ({"sample_size": 0}, "sample_size must be between"),
    ({"export_prefix": "s3://bucket/x"}, "export_prefix must be a gs://"),
    ({"export_mime_type": "image/gif"}, "export_mime_type must be one of"),
])
def test_bad_params_are_named(change: dict, message: str) -> None:
    params = {**GOOD, **change}
    with pytest.raises(ValueError, match=message) as err:
        validate_params(params, render=render_for("manual__1", params))
    assert "Jane Doe" not in str(err.value)


def test_empty_optional_params_become_the_runs_own() -> None:
    """The form leaves optional fields empty (no raw Jinja shown): the plan says what
    they became."""
    params = {**GOOD, "destination_store_id": None, "export_prefix": None, "study_uids": None,
              "overwrite": None}
    plan = validate_params(params, run_id="manual__2026-11-25T19:28:00+00:00")
    assert plan["destination_store_id"] == "basic-manual-2026-11-25t19-28-00-00-00"
    assert plan["export_prefix"] == "gs://dicom-deid-export/manual-2026-11-25t19-28-00-00-00"
    assert plan["study_uids"] == [] and plan["overwrite"] is False
    assert plan["dry_run"] is False and plan["require_review"] is False


def test_report_folder_names_stay_inside_their_parent_and_never_meet() -> None:
    run = "manual__2026-11-25T19:28:00+00:00"
    assert path_segment(run) == run
    assert [path_segment(n) for n in ("..", ".", "a/../b")] == ["%2E%2E", "%2E", "a%2F..%2Fb"]
    with pytest.raises(ValueError):
        path_segment("")
    names = [run, "manual__2026-11-25T19_28_00_00_00", "a:b", "a_b", "a+b", "a%3Ab",
             "café", "caf_", "caf%C3%A9", "%2E", ".", "_"]
    assert len({path_segment(n) for n in names}) == len(names)


def test_report_app_serves_only_the_folder_named_by_the_authorized_ids(tmp_path,
                                                                        monkeypatch) -> None:
    from dicom_deid_airflow import report_app
    from dicom_deid_airflow.report_paths import reports_dir
    from fastapi import HTTPException

    monkeypatch.setenv("DICOM_DEID_REPORTS", str(tmp_path))
    run, other = "manual__2026-11-25T19:28:00+00:00", "manual__2026-11-25T19_28_00_00_00"
    for dag, run_id in [("caf_", run), ("café", run), ("caf_", other)]:
        (reports_dir(dag, run_id) / "report.html").write_text(f"{dag} {run_id}")
    for run_id in (run, other):
        served = report_app.run_file("caf_", run_id, "report.html")
        assert Path(served.path).read_text() == f"caf_ {run_id}"
    for dag, run_id in [("café", run), ("caf_", ".."), ("caf%C3%A9", run)]:
        with pytest.raises(HTTPException) as refused:
            report_app.run_file(dag, run_id, "report.html")
        assert refused.value.status_code == 404
