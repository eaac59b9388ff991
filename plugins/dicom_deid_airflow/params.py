"""A run's params, checked before anything is created, and the plan they become.

The ``validate`` task turns the trigger form's params into a :class:`RunPlan`: resource
names, the chosen DeidentifyConfig (checked against the API's schema) and what to do
with the output. Every later task reads the plan, not the params, so a bad request fails
once, in ``validate``, with a message that names the field and never echoes a value.

Optional params are empty (``None``) in the form rather than holding a template: the
form then shows no required mark and no raw Jinja, and the plan says what an empty value
became (the run's own destination store and export folder).
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
#: Export formats, by the name the trigger form shows.
MIME_TYPES = {"application/dicom": "DICOM, as stored",
              "image/png": "PNG, one image per frame (for ML)"}
#: Params whose value may be a Jinja template (``{{ run_slug }}``, ``{{ params.profile }}``).
TEMPLATED_PARAMS = ("destination_store_id", "export_prefix")
#: Where an export goes when the run names no folder: ``gs://<bucket>/<run slug>``.
DEFAULT_EXPORT_BUCKET = "dicom-deid-export"


class ParamError(ValueError):
    """A param or the chosen profile is wrong: the same request fails the same way, so the
    task fails at once (the ``validate`` task raises it as AirflowFailException)."""


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
    dry_run: bool = False
    require_review: bool = False

    def as_xcom(self) -> dict:
        return asdict(self)


def run_slug(run_id: str) -> str:
    """The run ID as a store ID and path segment: ``manual__2026-11-25T19:28:00+00:00``
    -> ``manual-2026-11-25t19-28-00-00-00``."""
    return re.sub(r"[^a-z0-9.]+", "-", run_id.lower()).strip("-.")[:200] or "run"


def validate_params(params: dict, render: Callable[[str], str] | None = None,
                    run_id: str = "manual") -> dict:
    """Check every param and the chosen config before anything is created.

    ``render`` expands the templated params (see ``TEMPLATED_PARAMS``) in the run's
    context; an empty one becomes the run's own (``<profile>-<run slug>``,
    ``gs://dicom-deid-export/<run slug>``). Errors (:class:`ParamError`) name the param
    (or the config field, by its JSON path) and never echo a study UID or a config's keys.
    """
    if render is not None:
        params = {**params, **{k: render(str(params[k])) for k in TEMPLATED_PARAMS
                               if "{{" in str(params.get(k) or "")}}
    slug = run_slug(run_id)
    source = str(params.get("source_store") or "")
    if not STORE_NAME.match(source):
        raise ParamError("source_store must be projects/P/locations/L/datasets/D/dicomStores/S")
    profile = str(params.get("profile") or "")
    if profile not in profiles():
        raise ParamError(f"profile must be one of {profiles()}")
    dest_id = str(params.get("destination_store_id") or "").strip() or f"{profile}-{slug}"
    if not STORE_ID.match(dest_id):
        raise ParamError("destination_store_id may only hold letters, digits, _ . - "
                         "(1-256 characters)")
    dataset = source.rsplit("/dicomStores/", 1)[0]
    destination = f"{dataset}/dicomStores/{dest_id}"
    if destination == source:
        raise ParamError("destination_store_id must differ from the source store")
    config = load_profile(profile)
    try:
        validate(config)
    except ConfigError as exc:
        raise ParamError(f"profile {profile}: {exc}") from None
    raw_studies = params.get("study_uids") or []
    if not isinstance(raw_studies, list):
        raise ParamError("study_uids must be a list of Study Instance UIDs")
    studies = [str(s).strip() for s in raw_studies if str(s).strip()]
    bad = [i for i, s in enumerate(studies) if not UID.match(s) or len(s) > 64]
    if bad:
        raise ParamError(f"study_uids: {_positions(bad)} of the {len(studies)} given "
                         f"{'is' if len(bad) == 1 else 'are'} not a DICOM UID (digits and "
                         "dots, at most 64 characters)")
    if len(set(studies)) != len(studies):
        raise ParamError("study_uids: the same study is listed twice")
    size = int(params.get("sample_size") or 0)
    if not 1 <= size <= 10_000:
        raise ParamError("sample_size must be between 1 and 10000")
    prefix_param = str(params.get("export_prefix") or "").strip()
    try:
        prefix = str(parse_gs_uri(prefix_param or f"gs://{DEFAULT_EXPORT_BUCKET}/{slug}",
                                  "export_prefix", prefix=True))
    except GcsUriError as exc:
        raise ParamError(str(exc)) from None
    mime = str(params.get("export_mime_type") or "application/dicom")
    if mime not in MIME_TYPES:
        raise ParamError(f"export_mime_type must be one of {list(MIME_TYPES)}")
    failures = params.get("max_failures") or 0
    if not isinstance(failures, int) or failures < 0:
        raise ParamError("max_failures must be a whole number, 0 or more")
    return RunPlan(source, dataset, dest_id, destination, profile, config, studies, size,
                   prefix, mime, bool(params.get("overwrite")), int(failures),
                   bool(params.get("dry_run")), bool(params.get("require_review"))).as_xcom()


def _positions(indexes: list[int]) -> str:
    """``study_uids[0], [3]``: where the bad values are, not what they are."""
    return "study_uids[" + "], [".join(str(i) for i in indexes) + "]"
