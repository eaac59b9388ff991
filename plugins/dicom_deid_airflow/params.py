"""A run's params, checked before anything is created, and the plan they become.

The ``validate`` task turns the trigger form's params into a :class:`RunPlan`: resource
names, the chosen DeidentifyConfig (checked against the API's schema) and what to do
with the output. Every later task reads the plan, not the params, so a bad request fails
once, in ``validate``, with a message that names the field and never echoes a value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass

from dicom_deid.api_schema import ConfigError, validate
from dicom_deid.gcs import GcsUriError, parse_gs_uri
from dicom_deid_airflow.configs import load_profile, profiles

STORE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")
STORE_NAME = re.compile(
    r"^projects/[^/]+/locations/[^/]+/datasets/[A-Za-z0-9_.-]+/dicomStores/[A-Za-z0-9_.-]+$")
UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
MIME_TYPES = ("application/dicom", "image/png")
#: Params whose value may be a Jinja template (``{{ run_slug }}``, ``{{ params.profile }}``):
#: a run's own store and export folder by default, so runs triggered with the defaults
#: never collide.
TEMPLATED_PARAMS = ("destination_store_id", "export_prefix")


@dataclass(frozen=True)
class RunPlan:
    """A validated run: resource names, the config and what to do with the output.

    Each field is its own XCom (the ``validate`` task has multiple outputs), so the DAG
    wires ``plan["destination_store"]`` into an operator as data.
    """

    source_store: str
    dataset: str
    destination_store_id: str
    destination_store: str
    profile: str
    config: dict
    study_uids: list[str]
    sample_size: int
    export_prefix: str
    export_mime_type: str
    overwrite: bool
    max_failures: int

    def as_xcom(self) -> dict:
        return asdict(self)


def run_slug(run_id: str) -> str:
    """The run ID as a store ID and path segment: ``manual__2026-11-25T19:28:00+00:00``
    -> ``manual-2026-11-25t19-28-00-00-00``."""
    return re.sub(r"[^a-z0-9.]+", "-", run_id.lower()).strip("-.")[:200] or "run"


def validate_params(params: dict, render: Callable[[str], str] | None = None) -> dict:
    """Check every param and the chosen config before anything is created.

    ``render`` expands the templated params (see ``TEMPLATED_PARAMS``) in the run's
    context. Errors name the param (or the config field, by its JSON path) and never echo
    a study UID list or a config's keys back.
    """
    if render is not None:
        params = {**params, **{k: render(str(params[k])) for k in TEMPLATED_PARAMS
                               if "{{" in str(params.get(k) or "")}}
    source = str(params.get("source_store") or "")
    if not STORE_NAME.match(source):
        raise ValueError("source_store must be projects/P/locations/L/datasets/D/dicomStores/S")
    dest_id = str(params.get("destination_store_id") or "")
    if not STORE_ID.match(dest_id):
        raise ValueError("destination_store_id may only hold letters, digits, _ . - "
                         "(1-256 characters)")
    dataset = source.rsplit("/dicomStores/", 1)[0]
    destination = f"{dataset}/dicomStores/{dest_id}"
    if destination == source:
        raise ValueError("destination_store_id must differ from the source store")
    profile = str(params.get("profile") or "")
    if profile not in profiles():
        raise ValueError(f"profile must be one of {profiles()}")
    config = load_profile(profile)
    try:
        validate(config)
    except ConfigError as exc:
        raise ValueError(f"profile {profile}: {exc}") from None
    studies = [str(s).strip() for s in (params.get("study_uids") or []) if str(s).strip()]
    bad = sum(not UID.match(s) for s in studies)
    if bad:
        raise ValueError(f"study_uids: {bad} value(s) are not DICOM UIDs")
    size = int(params.get("sample_size") or 0)
    if not 1 <= size <= 10_000:
        raise ValueError("sample_size must be between 1 and 10000")
    try:
        prefix = str(parse_gs_uri(str(params.get("export_prefix") or ""), "export_prefix",
                                  prefix=True))
    except GcsUriError as exc:
        raise ValueError(str(exc)) from None
    mime = str(params.get("export_mime_type") or "application/dicom")
    if mime not in MIME_TYPES:
        raise ValueError(f"export_mime_type must be one of {list(MIME_TYPES)}")
    return RunPlan(source, dataset, dest_id, destination, profile, config, studies, size,
                   prefix, mime, bool(params.get("overwrite")),
                   int(params.get("max_failures") or 0)).as_xcom()
