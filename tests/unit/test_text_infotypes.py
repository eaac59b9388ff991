"""Detection of identifying text by infoType, and the API's transformations of it."""

from __future__ import annotations

import pytest

from dicom_deid.engine.infotypes import find
from dicom_deid.engine.plan import build_plan
from dicom_deid.engine.text_transforms import apply, crypto_hash, fit

KEY = b"k" * 32


@pytest.mark.parametrize(("text", "found", "info_type"), [
    ("call 617-555-0199 today", "617-555-0199", "PHONE_NUMBER"),
    ("mail jane.doe@example.org", "jane.doe@example.org", "EMAIL_ADDRESS"),
    ("SSN 123-45-6789", "123-45-6789", "US_SOCIAL_SECURITY_NUMBER"),
    ("seen on 03/04/2021", "03/04/2021", "DATE"),
    ("exam 2021-03-04", "2021-03-04", "DATE"),
    ("born 4 March 1950", "4 March 1950", "DATE"),
    ("a 45-year-old woman", "45-year-old", "AGE"),
    ("MRN: A1234567", "A1234567", "MEDICAL_RECORD_NUMBER"),
    ("referred by Dr. Jane Roe", "Jane Roe", "PERSON_NAME"),
    ("DOE^JOHN signed", "DOE^JOHN", "PERSON_NAME"),
    ("lives at 12 Baker Street", "12 Baker Street", "LOCATION"),
    ("scanned at Lakeside General Hospital", "Lakeside General Hospital", "LOCATION"),
])
def test_detects(text: str, found: str, info_type: str) -> None:
    spans = [(text[s.start:s.end], s.info_type) for s in find(text)]
    assert (found, info_type) in spans


@pytest.mark.parametrize("text", [
    "AXIAL 5.0 SOFT TISSUE 512x512", "CT CHEST W CONTRAST", "T2 FLAIR 3mm", "LEFT", "PA",
    "Lung 1.25mm B70f", "WL 40 WW 400"])
def test_clinical_descriptions_are_left_alone(text: str) -> None:
    assert find(text) == []


def test_own_identifiers_found_in_free_text() -> None:
    text = "follow-up for Quixote, id ZQ-77"
    spans = find(text, {"QUIXOTE": "PERSON_NAME", "ZQ-77": "MEDICAL_RECORD_NUMBER"})
    assert [(text[s.start:s.end], s.info_type) for s in spans] == [
        ("Quixote", "PERSON_NAME"), ("ZQ-77", "MEDICAL_RECORD_NUMBER")]


def _plan(method: dict, info_types: list[str] | None = None):  # noqa: ANN202
    item = dict(method)
    if info_types:
        item["infoTypes"] = info_types
    return build_plan({"text": {"additionalTransformations": [item]}}, KEY)


def test_transformations() -> None:
    text = "Dr. Jane Roe on 2021-03-04"
    spans = find(text)
    assert apply(text, spans, _plan({"redactConfig": {}}), None) == "Dr.  on "
    assert apply(text, spans, _plan({"replaceWithInfoTypeConfig": {}}), None) == \
        "Dr. [PERSON_NAME] on [DATE]"
    assert apply(text, spans, _plan({"characterMaskConfig": {"maskingCharacter": "#"}}),
                 None) == "Dr. #### ### on ##########"
    hashed = apply(text, spans, _plan({"cryptoHashConfig": {}}, ["PERSON_NAME"]), None)
    assert hashed == f"Dr. {crypto_hash('Jane Roe', KEY)} on 2021-03-04"
    shifted = apply(text, spans, _plan({"dateShiftConfig": {}}, ["DATE"]), 10)
    assert shifted == "Dr. Jane Roe on 2021-03-14"


def test_exclude_info_types_wins() -> None:
    plan = build_plan({"text": {"additionalTransformations": [{"redactConfig": {}}],
                                "excludeInfoTypes": ["DATE"]}}, KEY)
    text = "Dr. Jane Roe on 2021-03-04"
    assert apply(text, find(text), plan, None) == "Dr.  on 2021-03-04"


def test_fit_keeps_values_valid_for_their_vr() -> None:
    assert fit("[MEDICAL_RECORD_NUMBER]", "SH") == "[MEDICAL_RECORD_"
    assert "=" not in fit("abc=", "PN")
    assert fit("a\\b", "CS") == "A_B"
