"""The vendored API schemas are the installed google-api-python-client's.

``dicom_deid.api_schema`` validates configs against schemas copied from the client's
bundled ``healthcare.v1`` discovery document (so the engine need not import the
client). A client upgrade that changes them must fail here, not drift silently.
"""

from __future__ import annotations

import json
import tomllib
from fnmatch import fnmatch
from importlib import resources
from pathlib import Path

import googleapiclient

from dicom_deid import api_schema

ROOT = Path(__file__).resolve().parents[2]
DISCOVERY = (Path(googleapiclient.__file__).parent
             / "discovery_cache" / "documents" / "healthcare.v1.json")
REGENERATE = ("the vendored Cloud Healthcare API schemas differ from the installed "
              "google-api-python-client's (discovery revision {installed}, vendored from "
              "{vendored}): regenerate them with `.venv/bin/python tools/vendor_api_schema.py`, "
              "review the diff of src/dicom_deid/{path} and commit it")


def _vendored() -> dict:
    return json.loads(resources.files("dicom_deid").joinpath(api_schema.VENDORED).read_text())


def test_vendored_schemas_equal_the_installed_discovery_document() -> None:
    installed = api_schema.vendored(json.loads(DISCOVERY.read_text()))
    vendored = _vendored()
    message = REGENERATE.format(installed=installed["revision"],
                                vendored=vendored.get("revision"), path=api_schema.VENDORED)
    assert vendored.get("roots") == list(api_schema.ROOTS), message
    assert sorted(vendored["schemas"]) == sorted(installed["schemas"]), message
    for name, schema in installed["schemas"].items():
        assert vendored["schemas"][name] == schema, f"{name}: {message}"


def test_validation_uses_the_vendored_schemas() -> None:
    assert api_schema.schemas() == _vendored()["schemas"]
    assert _vendored()["revision"]
    for root in api_schema.ROOTS:
        api_schema.validate({}, root)


def test_the_vendored_file_is_packaged() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["dicom_deid"]
    assert any(fnmatch(api_schema.VENDORED, p) for p in patterns)
