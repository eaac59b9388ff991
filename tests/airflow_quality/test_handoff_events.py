"""The handoff handles every manifest of the Asset events that triggered it.

A run triggered by several events (the DAG was paused while two exports finished) used
to hand off only the newest manifest: the others were never gated or loaded, silently.
The end-to-end case with a real scheduler is in ``tests/ui``; these pin the rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from dicom_deid_airflow.handoff import for_each_manifest, manifests_of


@dataclass
class Event:  # the two attributes of an Asset event the handoff reads
    extra: dict = field(default_factory=dict)


def test_every_manifest_of_every_event_in_order_once() -> None:
    events = [Event({"manifest": "gs://b/one/manifest.parquet"}),
              Event({"manifest": "gs://b/two/manifest.parquet"}),
              Event({"manifest": "gs://b/one/manifest.parquet"})]
    assert manifests_of(events, None) == ["gs://b/one/manifest.parquet",
                                          "gs://b/two/manifest.parquet"]


def test_a_manual_run_uses_its_param_and_nothing_at_all_fails() -> None:
    assert manifests_of([], "gs://b/m.parquet") == ["gs://b/m.parquet"]
    # The catch-up after a pause: several, by comma or line, each once.
    assert manifests_of([], "gs://b/1.parquet,\ngs://b/2.parquet gs://b/1.parquet") == [
        "gs://b/1.parquet", "gs://b/2.parquet"]
    with pytest.raises(AirflowFailException, match="no dicom_deid_manifest event"):
        manifests_of([], "")


def test_an_event_without_a_manifest_fails_naming_its_position() -> None:
    events = [Event({"manifest": "gs://b/one/manifest.parquet"}), Event({})]
    with pytest.raises(AirflowFailException, match=r"1 of the 2 .* \(events \[1\]\)"):
        manifests_of(events, None)


def test_each_manifest_is_tried_and_every_failure_named() -> None:
    seen: list[str] = []

    def step(uri: str) -> dict:
        seen.append(uri)
        if "bad" in uri:
            raise ValueError("gate failed")
        return {"rows": 1}

    with pytest.raises(AirflowException, match=r"failed for 1 of 3 manifests: gs://b/bad"):
        for_each_manifest(["gs://b/a", "gs://b/bad", "gs://b/c"], step, "the gate")
    assert seen == ["gs://b/a", "gs://b/bad", "gs://b/c"]  # the third still ran
    assert for_each_manifest(["gs://b/a"], step, "the gate") == [
        {"manifest": "gs://b/a", "rows": 1}]
