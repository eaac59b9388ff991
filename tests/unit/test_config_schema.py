"""DeidentifyConfig validation against the API's discovery document."""

from __future__ import annotations

import pytest

from dicom_deid.api_schema import ConfigError, validate

RESEARCH = {
    "dicom": {"filterProfile": "DEIDENTIFY_TAG_CONTENTS",
              "keepList": {"tags": ["Modality", "00180050"]}},
    "text": {"transformations": [
        {"infoTypes": ["PERSON_NAME"], "replaceWithInfoTypeConfig": {}},
        {"infoTypes": ["DATE"], "dateShiftConfig": {"cryptoKey": "c2VjcmV0"}},
    ]},
    "image": {"textRedactionMode": "REDACT_ALL_TEXT",
              "customRegexes": [{"pattern": "ID[0-9]+", "groupIndexes": [0]}]},
}


def test_a_valid_config_passes():
    validate(RESEARCH)
    validate({})
    validate({"destinationStore": "projects/p/locations/l/datasets/d/dicomStores/s",
              "config": RESEARCH}, "DeidentifyDicomStoreRequest", "request")


@pytest.mark.parametrize("config, path, words", [
    ({"dicom": {"filterProfile": "BASIC"}}, "config.dicom.filterProfile",
     "not one of TAG_FILTER_PROFILE_UNSPECIFIED"),
    ({"dicom": {"keepLists": {}}}, "config.dicom.keepLists", "unknown field"),
    ({"image": {"textRedactionMode": True}}, "config.image.textRedactionMode", "string"),
    ({"text": {"transformations": [{"infoTypes": "PERSON_NAME"}]}},
     "config.text.transformations[0].infoTypes", "list"),
    ({"text": {"transformations": [{"redactConfig": {"x": 1}}]}},
     "config.text.transformations[0].redactConfig.x", "unknown field"),
    ({"dicom": {"skipIdRedaction": "yes"}}, "config.dicom.skipIdRedaction", "true or false"),
    ([], "config", "object"),
])
def test_errors_name_the_field(config, path, words):
    with pytest.raises(ConfigError) as err:
        validate(config)
    assert err.value.path == path
    assert words in str(err.value)
    assert str(err.value).startswith(path + ": ")


def test_free_form_values_are_not_echoed():
    key = "c2VjcmV0LWtleS12YWx1ZQ=="
    with pytest.raises(ConfigError) as err:
        validate({"text": {"transformations": [{"dateShiftConfig": {"cryptoKey": 5}}]}})
    assert key not in str(err.value)
