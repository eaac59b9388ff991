"""DeidentifyConfig checked against the Cloud Healthcare API's own schema (client side).

The schema is read from the ``healthcare.v1`` discovery document that ships with
google-api-python-client, so a config accepted here has the fields and enum values
Google accepts: a config tested locally behaves the same in the cloud. Errors name
the field by its JSON path (``config.dicom.filterProfile``) and never quote the
value of a free-form field, which could be a key.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import googleapiclient

_DOCUMENT = (Path(googleapiclient.__file__).parent
             / "discovery_cache" / "documents" / "healthcare.v1.json")


class ConfigError(ValueError):
    """A request or config that does not match the API's schema."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@lru_cache(maxsize=1)
def schemas() -> dict[str, dict]:
    """The discovery document's schemas, by name."""
    return json.loads(_DOCUMENT.read_text())["schemas"]


def validate(value: object, schema: str = "DeidentifyConfig", path: str = "config") -> None:
    """Raise :class:`ConfigError` unless ``value`` is a valid instance of ``schema``."""
    _check(value, {"$ref": schema}, path)


def _check(value: object, spec: dict, path: str) -> None:
    if "$ref" in spec:
        schema = schemas()[spec["$ref"]]
        if not isinstance(value, dict):
            raise ConfigError(path, f"must be an object ({spec['$ref']})")
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key not in properties:
                known = ", ".join(sorted(properties)) or "none"
                raise ConfigError(f"{path}.{key}", f"unknown field (known fields: {known})")
            _check(item, properties[key], f"{path}.{key}")
        return
    kind = spec.get("type")
    if kind == "array":
        if not isinstance(value, list):
            raise ConfigError(path, "must be a list")
        for i, item in enumerate(value):
            _check(item, spec.get("items", {}), f"{path}[{i}]")
    elif kind == "string":
        if not isinstance(value, str):
            raise ConfigError(path, "must be a string")
        if spec.get("format") == "int64":
            try:
                int(value)
            except ValueError:
                raise ConfigError(path, "must be an integer in a string") from None
        if "enum" in spec and value not in spec["enum"]:
            raise ConfigError(path, f"{value!r} is not one of {', '.join(spec['enum'])}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise ConfigError(path, "must be true or false")
    elif kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConfigError(path, "must be an integer")
        try:
            int(value)
        except ValueError:
            raise ConfigError(path, "must be an integer") from None
    elif kind == "object":
        if not isinstance(value, dict):
            raise ConfigError(path, "must be an object")
        extra = spec.get("additionalProperties")
        if extra:
            for key, item in value.items():
                _check(item, extra, f"{path}.{key}")
