"""What ``validate`` checks against the API before anything is created.

Params can be well formed and still ask for the impossible: a source store that does not
exist, a study that is not in it, a bucket nobody can write to, a destination that
already holds another run's output. Found later, each of these costs a retried task, an
empty store left behind and a report that says nothing. Found here, the run fails once,
in ``validate``, naming the param, and nothing has been created.

Every problem is a :class:`PreflightError` (an ``AirflowFailException``: no retries, the
answer would be the same). A study is named by its position in ``study_uids``, never by
its UID. A transient fault (429, 5xx, no answer) is left to propagate: Airflow retries it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException
from google.api_core import exceptions as gcs_errors

from dicom_deid.gcs import parse_gs_uri
from dicom_deid_airflow.hooks.healthcare import HealthcareApiError, HealthcareHook

if TYPE_CHECKING:
    from google.cloud import storage

log = logging.getLogger(__name__)

#: The object ``validate`` writes and deletes to prove the export bucket is writable.
PROBE = "_dicom_deid/probes/{slug}.txt"


class PreflightError(AirflowFailException):
    """A resource the run needs is missing, unreadable or already taken."""


def _api_detail(exc: HealthcareApiError) -> str:
    status = " ".join(str(p) for p in (exc.code, exc.status) if p)
    return f"the API answered {status}: {exc.api_message}" if status else exc.api_message


def _store_exists(hook: HealthcareHook, name: str, param: str) -> bool:
    try:
        hook.get_dicom_store(name)
    except HealthcareApiError as exc:
        if exc.code == 404:
            return False
        if exc.retryable:
            raise
        raise PreflightError(f"{param}: DICOM store {name} cannot be read "
                             f"({_api_detail(exc)})") from None
    return True


def _missing_studies(hook: HealthcareHook, source: str, studies: list[str]) -> list[int]:
    """Positions in ``study_uids`` of the studies the source store does not hold."""
    web = hook.dicomweb_client(source)
    return [i for i, uid in enumerate(studies)
            if not web.search_for_studies(search_filters={"StudyInstanceUID": uid}, limit=1,
                                          fields=["StudyInstanceUID"])]


def _check_bucket(gcs: storage.Client, prefix: str, slug: str) -> str:
    bucket_name = parse_gs_uri(prefix, "export_prefix", prefix=True).bucket
    try:
        bucket = gcs.lookup_bucket(bucket_name)
    except gcs_errors.Forbidden:
        raise PreflightError(f"export_prefix: bucket {bucket_name} cannot be read "
                             "(403 Forbidden)") from None
    if bucket is None:
        raise PreflightError(f"export_prefix: bucket {bucket_name} does not exist")
    blob = bucket.blob(PROBE.format(slug=slug))
    try:
        blob.upload_from_string(b"dicom-deid write probe\n", content_type="text/plain")
        blob.delete()
    except gcs_errors.Forbidden:
        raise PreflightError(f"export_prefix: bucket {bucket_name} is not writable "
                             "(403 Forbidden on a probe object)") from None
    return bucket_name


def check_resources(plan: dict, hook: HealthcareHook, gcs: storage.Client,
                    slug: str, *, reuse_destination: bool = False) -> dict[str, Any]:
    """Source, studies, destination and bucket checked; what was found, for the report.

    Nothing to de-identify (an empty source, a study filter that matches nothing) is a
    failure: a green run that did nothing would be read as a de-identified store.
    ``reuse_destination`` accepts a destination that holds instances: an incremental
    run adds to the store the earlier runs filled.
    """
    source, destination = plan["source_store"], plan["destination_store"]
    if not _store_exists(hook, source, "source_store"):
        raise PreflightError(f"source_store: DICOM store {source} does not exist "
                             "(404 NOT_FOUND)")
    studies = plan["study_uids"]
    if studies:
        missing = _missing_studies(hook, source, studies)
        if len(missing) == len(studies):
            raise PreflightError(
                f"No instances matched the study filter: none of the {len(studies)} "
                "study_uids is in the source store")
        if missing:
            where = "study_uids[" + "], [".join(str(i) for i in missing) + "]"
            raise PreflightError(
                f"No instances matched the study filter for {where}: "
                f"{len(missing)} of the {len(studies)} study_uids "
                f"{'is' if len(missing) == 1 else 'are'} not in the source store")
    instances = hook.instance_count(source)
    if instances == 0:
        raise PreflightError("Nothing to de-identify: the source store holds no instances")
    held = 0
    if _store_exists(hook, destination, "destination_store_id"):
        held = hook.instance_count(destination)
        if held and not plan["overwrite"] and not reuse_destination:
            raise PreflightError(
                f"destination_store_id: DICOM store {destination} already holds {held} "
                "instances; choose another id or set overwrite to replace them")
    bucket = _check_bucket(gcs, plan["export_prefix"], slug)
    log.info("Preflight passed: source %s holds %d instances; destination %s (%s); export to "
             "%s (bucket %s writable)", source, instances, destination,
             f"exists, {held} instances" if held else "to be created or reused empty",
             plan["export_prefix"], bucket)
    return {"source_instances": instances, "destination_instances_before": held}
