"""The engine's name for the API schema checks, which live in ``dicom_deid.api_schema``
because the Airflow side validates configs with them too (it may not import the
engine's internals)."""

from ..api_schema import ConfigError, schemas, validate

__all__ = ["ConfigError", "schemas", "validate"]
