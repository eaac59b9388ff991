"""Operators for DICOM stores on the Cloud Healthcare API (or the local server).

Create a store idempotently, import files from Cloud Storage, de-identify a store into
another, export a store to Cloud Storage, delete a store. Import, de-identification and
export are long-running operations:

- **Deferrable** (``[operators] default_deferrable``, as in the Google provider; the
  DAGs ask for it explicitly): the operator submits the operation and defers to
  :class:`~dicom_deid_airflow.triggers.healthcare.HealthcareOperationTrigger`, freeing the
  worker slot while the triggerer polls; ``execute_complete`` checks the outcome.
  ``deferrable=False`` polls in the worker and runs the same checks.
- **A retry never resubmits a running operation.** The operation's name is saved
  *before* the task defers or polls, so that a try that dies afterwards (worker lost,
  trigger error, timeout) leaves it behind for the next try. It is saved in Airflow
  3.3's ``task_state_store`` (through :class:`airflow.sdk.ResumableJobMixin`), which,
  unlike XCom, survives into the next try: Airflow clears a task's XComs when a new try
  starts (they only survive a deferral). On the next try the operator reattaches: to the
  running operation (defer or poll again), or to its finished result (checked without
  waiting). An operation that ended with an error, or that the API no longer knows, is
  submitted anew. The saved name is dropped once a verdict is reached (success, or too
  many failed instances), so clearing a finished task really runs it again.
- **Counts are checked.** An operation can succeed while instances failed:
  ``metadata.counter.failure`` above ``max_failures`` fails the task, with the counts and
  the operation's ``logsUrl`` (per-instance reasons) in the message, and without retries
  (the outcome would not change).
- **XCom carries names and counts only**: the operation name (key ``operation_name``),
  the links' ``{"endpoint", "name"}`` and the returned summary. No DICOM data, no PHI.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, ResumableJobMixin
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException

# The pool the DAGs give every operation task (DAGs import the library only through here).
from dicom_deid.pools import HEALTHCARE_POOL as HEALTHCARE_POOL
from dicom_deid_airflow.hooks.healthcare import (
    HealthcareApiError,
    HealthcareHook,
    dataset_of,
    operation_event,
)
from dicom_deid_airflow.links import HealthcareDicomStoreLink, HealthcareOperationLink
from dicom_deid_airflow.triggers.healthcare import HealthcareOperationTrigger

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

#: task_state_store key (and XCom key) holding the running operation's name.
OPERATION_KEY = "operation_name"
#: google.rpc codes of an operation error worth a retry (a new operation): UNKNOWN,
#: DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED (e.g. the server restarted under it),
#: INTERNAL, UNAVAILABLE. Any other (INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED,
#: FAILED_PRECONDITION, CANCELLED...) fails the task at once.
TRANSIENT_RPC_CODES = (2, 4, 8, 10, 13, 14)
#: XCom key of the create operator: true when this run created the store (not reused).
CREATED_KEY = "created"
UI_COLOR = "#d4e9f7"


def _as_bool(value: object, field: str) -> bool:
    """A templated flag: bools as they are, and the strings a template renders."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", "", "none"):
        return False
    raise ValueError(f"{field} must be a boolean, got {value!r}")


def load_config(config: dict | str, search_dirs: Sequence[Path] = ()) -> dict | str:
    """A DeidentifyConfig from a dict, a JSON string, a ``gs://`` URI or a JSON file.

    A relative file path is looked up in ``search_dirs`` (the DAG's folder, then the
    working directory). A ``gs://`` URI is returned as is (sent as ``gcsConfigUri``).
    """
    if isinstance(config, dict):
        return config
    if not isinstance(config, str):
        raise TypeError(f"config must be a dict or a string, not {type(config).__name__}")
    text = config.strip()
    if text.startswith("gs://"):
        return text
    if text.startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            raise AirflowException(
                "config is not valid JSON (a Jinja-rendered dict needs '| tojson', or the "
                "DAG's render_template_as_native_obj=True)") from None
    path = Path(text)
    candidates = [path] if path.is_absolute() else [Path(d) / path for d in search_dirs]
    for candidate in candidates:
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text())
            except ValueError:
                raise AirflowException(f"config file {candidate} is not valid JSON") from None
    raise AirflowException(f"config file {text} not found (looked in "
                           f"{', '.join(str(c.parent) for c in candidates) or 'nowhere'})")


class HealthcareBaseOperator(BaseOperator):
    """Connection settings shared by the Cloud Healthcare API operators.

    :param gcp_conn_id: connection of type ``google_cloud_platform`` (extras:
        ``api_endpoint``, ``project``, ``num_retries``, credentials for Google).
    :param api_endpoint: overrides the connection's ``api_endpoint`` extra.
    :param impersonation_chain: service account(s) to impersonate (Google endpoint only).
    """

    template_fields: Sequence[str] = ("gcp_conn_id", "api_endpoint", "impersonation_chain")
    ui_color = UI_COLOR

    def __init__(self, *, gcp_conn_id: str = "google_cloud_default",
                 api_endpoint: str | None = None,
                 impersonation_chain: str | Sequence[str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gcp_conn_id = gcp_conn_id
        self.api_endpoint = api_endpoint
        self.impersonation_chain = impersonation_chain

    @cached_property
    def hook(self) -> HealthcareHook:
        return HealthcareHook(gcp_conn_id=self.gcp_conn_id,
                              impersonation_chain=self.impersonation_chain,
                              api_endpoint=self.api_endpoint)


class HealthcareCreateDicomStoreOperator(HealthcareBaseOperator):
    """Create a DICOM store (and its dataset if needed); return the store's name.

    Idempotent: an existing dataset is reused, and so is an existing *empty* store. A
    store that holds instances fails the task unless ``overwrite`` is true, in which case
    it is deleted and recreated (its instances are lost).

    :param store_id: the store's ID.
    :param dataset_name: ``projects/P/locations/L/datasets/D``; or give ``location`` and
        ``dataset_id`` (and optionally ``project_id``, default: the connection's project).
    :param overwrite: replace a non-empty store (templated; "True"/"False" accepted).
    :param labels: labels for a newly created store.
    :param reuse_nonempty: keep and reuse a store that already holds instances: the
        long-lived destination of incremental runs, which each add to it.
    """

    template_fields: Sequence[str] = (
        *HealthcareBaseOperator.template_fields, "store_id", "dataset_name", "project_id",
        "location", "dataset_id", "overwrite", "labels")
    operator_extra_links = (HealthcareDicomStoreLink(),)

    def __init__(self, *, store_id: str, dataset_name: str | None = None,
                 location: str | None = None, dataset_id: str | None = None,
                 project_id: str | None = None, overwrite: bool | str = False,
                 labels: dict[str, str] | None = None, reuse_nonempty: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if reuse_nonempty and overwrite is True:
            raise ValueError("reuse_nonempty and overwrite exclude each other")
        self.reuse_nonempty = reuse_nonempty
        if not dataset_name and not (location and dataset_id):
            raise ValueError("give dataset_name, or location and dataset_id")
        self.store_id = store_id
        self.dataset_name = dataset_name
        self.location = location
        self.dataset_id = dataset_id
        self.project_id = project_id
        self.overwrite = overwrite
        self.labels = labels

    def execute(self, context: Context) -> str:
        hook = self.hook
        if self.dataset_name:
            parts = dataset_of(self.dataset_name).split("/")
            project, location, dataset_id = parts[1], parts[3], parts[5]
        else:
            project, location, dataset_id = self.project_id, self.location, self.dataset_id
        dataset = hook.create_dataset(project, location, dataset_id)["name"]
        store, created = hook.ensure_dicom_store(
            dataset, self.store_id, overwrite=_as_bool(self.overwrite, "overwrite"),
            labels=self.labels, reuse_nonempty=self.reuse_nonempty)
        HealthcareDicomStoreLink.persist(context, endpoint=hook.api_endpoint, name=store["name"])
        # Whether this run made the store: a failed run deletes only a store it made.
        context["ti"].xcom_push(key=CREATED_KEY, value=created)
        return store["name"]


class HealthcareDeleteDicomStoreOperator(HealthcareBaseOperator):
    """Delete a DICOM store and its instances.

    :param store: ``projects/P/locations/L/datasets/D/dicomStores/S``.
    :param missing_ok: succeed when the store does not exist (default).
    """

    template_fields: Sequence[str] = (*HealthcareBaseOperator.template_fields, "store")

    def __init__(self, *, store: str, missing_ok: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store = store
        self.missing_ok = missing_ok

    def execute(self, context: Context) -> None:
        self.hook.delete_dicom_store(self.store, missing_ok=self.missing_ok)


class HealthcareOperationOperator(ResumableJobMixin, HealthcareBaseOperator):
    """Base for operators that run one long-running operation (see the module docstring).

    Subclasses implement ``submit`` (start the operation, return its name), ``store_for_link``
    and ``summary``.

    :param deferrable: free the worker slot while the operation runs (default:
        ``[operators] default_deferrable``).
    :param poll_interval: seconds between polls of ``operations.get``.
    :param max_failures: instances allowed to fail before the task fails (templated).
    :param durable: save the operation name in ``task_state_store`` so a retry reattaches
        (ResumableJobMixin; default true).
    """

    template_fields: Sequence[str] = (*HealthcareBaseOperator.template_fields, "max_failures")
    operator_extra_links = (HealthcareDicomStoreLink(), HealthcareOperationLink())
    external_id_key = OPERATION_KEY

    def __init__(self, *,
                 deferrable: bool = conf.getboolean("operators", "default_deferrable",
                                                    fallback=False),
                 poll_interval: float = 10.0,
                 max_failures: int | str = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.max_failures = max_failures
        self._operation_name: str | None = None
        self._operation: dict | None = None
        self._result: dict | None = None

    # -- what subclasses define -------------------------------------------------------

    def submit(self, context: Context) -> str:
        raise NotImplementedError

    def store_for_link(self) -> str:
        raise NotImplementedError

    def summary(self, operation: str, success: int, failure: int) -> dict:
        raise NotImplementedError

    # -- flow -------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        return self.execute_resumable(context)

    def submit_job(self, context: Context) -> str:
        """Start the operation (ResumableJobMixin saves the name before we wait)."""
        return self.submit(context)

    def get_job_status(self, external_id: Any, context: Context) -> str:
        """RUNNING, SUCCEEDED (done, no error), FAILED (done with an error) or NOT_FOUND."""
        try:
            operation = self.hook.get_operation(str(external_id))
        except HealthcareApiError as exc:
            if exc.code == 404:
                return "NOT_FOUND"
            raise
        self._operation = operation
        if not operation.get("done"):
            return "RUNNING"
        return "FAILED" if operation.get("error") else "SUCCEEDED"

    def is_job_active(self, status: str) -> bool:
        return status == "RUNNING"

    def is_job_succeeded(self, status: str) -> bool:
        return status == "SUCCEEDED"

    def poll_until_complete(self, external_id: Any, context: Context) -> dict:
        """Defer to the trigger, or (``deferrable=False``) poll here; then check."""
        name = str(external_id)
        self._attach(context, name)
        if self.deferrable:
            self.defer(
                trigger=HealthcareOperationTrigger(
                    operation_name=name, gcp_conn_id=self.gcp_conn_id,
                    api_endpoint=self.api_endpoint,
                    impersonation_chain=self.impersonation_chain,
                    poll_interval=self.poll_interval),
                method_name="execute_complete")
        operation = self.hook.wait_for_operation(name, poll_interval=self.poll_interval)
        return self.execute_complete(context, operation_event(operation))

    def get_job_result(self, external_id: Any, context: Context) -> dict:
        """The checked summary: computed by the poll, or from an operation already done."""
        if self._result is not None:
            return self._result
        name = str(external_id)
        self._attach(context, name)
        operation = self._operation
        if not operation or operation.get("name") != name:
            operation = self.hook.get_operation(name)
        return self.execute_complete(context, operation_event(operation))

    def _attach(self, context: Context, name: str) -> None:
        """Record the operation for this try: XCom (visible in the UI) and the links."""
        self._operation_name = name
        endpoint = self.hook.api_endpoint
        context["ti"].xcom_push(key=OPERATION_KEY, value=name)
        HealthcareOperationLink.persist(context, endpoint=endpoint, name=name)
        HealthcareDicomStoreLink.persist(context, endpoint=endpoint, name=self.store_for_link())

    def _forget(self, context: Context) -> None:
        """A verdict was reached: the next run of this task starts a new operation."""
        state = context.get("task_state_store")
        if state is not None and self.durable:
            state.delete(OPERATION_KEY)

    def execute_complete(self, context: Context, event: dict) -> dict:
        """Check the trigger's event (or the last poll): error, then failure counts."""
        name = event.get("operation") or self._operation_name or "?"
        if event.get("status") != "success":
            error = event.get("error")
            if error:  # the operation itself failed: a retry would submit a new one
                self._forget(context)
                # Only a transient fault is worth a new operation; a bad config, a missing
                # resource or a refused permission would fail the same way again.
                kind = (AirflowException if error.get("code") in TRANSIENT_RPC_CODES
                        else AirflowFailException)
                raise kind(
                    f"{self.task_type} operation {name} failed: {error.get('message', '')} "
                    f"(code {error.get('code')})")
            # Polling failed; the operation may still run: keep its name for the retry.
            raise AirflowException(event.get("message") or f"polling operation {name} failed")
        counter = event.get("counter") or {}
        success, failure = int(counter.get("success", 0)), int(counter.get("failure", 0))
        self._forget(context)
        limit = int(self.max_failures or 0)
        if failure > limit:
            where = event.get("logs_url") or "the operation's logs"
            raise AirflowFailException(
                f"operation {name}: {failure} of {success + failure} instances failed "
                f"({success} succeeded), more than max_failures={limit}; "
                f"per-instance reasons: {where}")
        self.log.info("Operation %s done: %d succeeded, %d failed (max_failures=%d)", name,
                      success, failure, limit)
        self._result = self.summary(name, success, failure)
        return self._result

    def on_kill(self) -> None:
        """Cancel the operation this try is waiting for (non-deferrable mode)."""
        if self._operation_name and self._result is None:
            try:
                self.hook.cancel_operation(self._operation_name)
            except Exception as exc:
                self.log.warning("Could not cancel operation %s: %s", self._operation_name,
                                 exc)


class HealthcareDeidentifyDicomStoreOperator(HealthcareOperationOperator):
    """De-identify a DICOM store into another with ``dicomStores.deidentify``.

    The destination store must exist (current v1 API; see HealthcareCreateDicomStoreOperator).
    Returns ``{"operation", "success", "failure", "destination"}``.

    :param source_store: ``projects/P/locations/L/datasets/D/dicomStores/S`` (templated).
    :param destination_store: the store to write into, same location (templated).
    :param config: a DeidentifyConfig: a dict, a JSON string, a path to a JSON file
        (relative paths: the DAG's folder, then the working directory) or a ``gs://`` URI
        (templated).
    :param filter_uri: ``gs://`` file of ``/studies/...`` paths to restrict the
        de-identification to (``filterConfig.resourcePathsGcsUri``; templated).
    :param max_failures: instances allowed to fail (default 0; templated).
    :param crypto_key_variable: an Airflow Variable holding a base64 AES key, put into
        the request's date-shift and crypto-hash transformations that name no key of
        their own (``crypto_key``): runs that share it agree on every patient's date
        shift, where Google would draw a new key per operation. Read when the request
        is sent, so the key never reaches a rendered template, an XCom or a log.
    """

    template_fields: Sequence[str] = (
        *HealthcareOperationOperator.template_fields, "source_store", "destination_store",
        "config", "filter_uri")
    template_fields_renderers = {"config": "json"}

    def __init__(self, *, source_store: str, destination_store: str, config: dict | str,
                 filter_uri: str | None = None, crypto_key_variable: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source_store = source_store
        self.destination_store = destination_store
        self.config = config
        self.filter_uri = filter_uri
        self.crypto_key_variable = crypto_key_variable

    def _search_dirs(self) -> list[Path]:
        dirs = []
        dag = getattr(self, "dag", None) if self.has_dag() else None
        if dag is not None and getattr(dag, "fileloc", None):
            dirs.append(Path(dag.fileloc).parent)
        return [*dirs, Path.cwd()]

    def submit(self, context: Context) -> str:
        config = load_config(self.config, self._search_dirs())
        if self.crypto_key_variable:
            from dicom_deid_airflow.crypto_key import (
                CryptoKeyError,
                read_crypto_key,
                with_crypto_key,
            )

            if not isinstance(config, dict):
                raise AirflowFailException("crypto_key_variable needs the config as a dict, "
                                           "not a gs:// URI (the key is added to the request)")
            try:
                config = with_crypto_key(config, read_crypto_key(self.crypto_key_variable))
            except CryptoKeyError as exc:
                raise AirflowFailException(str(exc)) from None
        return self.hook.deidentify_dicom_store(self.source_store, self.destination_store,
                                                config, filter_uri=self.filter_uri or None)

    def store_for_link(self) -> str:
        return self.destination_store

    def summary(self, operation: str, success: int, failure: int) -> dict:
        return {"operation": operation, "success": success, "failure": failure,
                "destination": self.destination_store}

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage (sent only with a transport configured): the source store in, the
        destination store out; names from ``dicom_deid_airflow.lineage``."""
        from dicom_deid_airflow.lineage import dicom_store_dataset_id, operator_lineage

        endpoint = self.hook.api_endpoint
        return operator_lineage([dicom_store_dataset_id(endpoint, self.source_store)],
                                [dicom_store_dataset_id(endpoint, self.destination_store)])


class HealthcareExportDicomStoreOperator(HealthcareOperationOperator):
    """Export a DICOM store to Cloud Storage with ``dicomStores.export``.

    Returns ``{"operation", "success", "failure", "store", "uri_prefix"}``.

    :param store: the store to export (templated).
    :param uri_prefix: ``gs://bucket/prefix`` (templated).
    :param mime_type: export format, e.g. ``application/dicom`` or ``image/png``; the
        API's default is the stored DICOM (templated).
    :param filter_uri: ``gs://`` file of ``/studies/...`` paths to export only those
        (``filterConfig.resourcePathsGcsUri``; templated): an incremental run exports
        what it added into the folder that already holds the earlier runs' objects.
    :param max_failures: instances allowed to fail (default 0; templated).
    """

    template_fields: Sequence[str] = (
        *HealthcareOperationOperator.template_fields, "store", "uri_prefix", "mime_type",
        "filter_uri")

    def __init__(self, *, store: str, uri_prefix: str, mime_type: str | None = None,
                 filter_uri: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store = store
        self.uri_prefix = uri_prefix
        self.mime_type = mime_type
        self.filter_uri = filter_uri

    def submit(self, context: Context) -> str:
        return self.hook.export_dicom_store(self.store, self.uri_prefix,
                                            mime_type=self.mime_type or None,
                                            filter_uri=self.filter_uri or None)

    def store_for_link(self) -> str:
        return self.store

    def summary(self, operation: str, success: int, failure: int) -> dict:
        return {"operation": operation, "success": success, "failure": failure,
                "store": self.store, "uri_prefix": self.uri_prefix}

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage (sent only with a transport configured): the store in, the
        ``gs://`` export prefix out; names from ``dicom_deid_airflow.lineage``."""
        from dicom_deid_airflow.lineage import (
            dicom_store_dataset_id,
            gcs_dataset_id,
            operator_lineage,
        )

        return operator_lineage([dicom_store_dataset_id(self.hook.api_endpoint, self.store)],
                                [gcs_dataset_id(self.uri_prefix)])


class HealthcareImportDicomStoreOperator(HealthcareOperationOperator):
    """Import DICOM files from Cloud Storage into a store with ``dicomStores.import``.

    How a source store gets filled from files a site dropped in a bucket. Files that are
    not DICOM, or lack the UIDs a store needs, count as failures (reasons at the
    operation's ``logsUrl``) and are held against ``max_failures`` like any other
    operation's. Returns ``{"operation", "success", "failure", "store", "uri"}``.

    :param store: the store to import into (templated).
    :param uri: ``gs://bucket/path``; ``*`` matches within a folder level and ``**``
        across levels, as in the API (templated).
    :param max_failures: files allowed to fail (default 0; templated).
    """

    template_fields: Sequence[str] = (
        *HealthcareOperationOperator.template_fields, "store", "uri")

    def __init__(self, *, store: str, uri: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store = store
        self.uri = uri

    def submit(self, context: Context) -> str:
        return self.hook.import_dicom_store(self.store, self.uri)

    def store_for_link(self) -> str:
        return self.store

    def summary(self, operation: str, success: int, failure: int) -> dict:
        return {"operation": operation, "success": success, "failure": failure,
                "store": self.store, "uri": self.uri}

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """OpenLineage (sent only with a transport configured): the ``gs://`` files in
        (a wildcard URI names its folder), the store out; names from
        ``dicom_deid_airflow.lineage``."""
        from dicom_deid_airflow.lineage import (
            dicom_store_dataset_id,
            gcs_dataset_id,
            operator_lineage,
        )

        return operator_lineage([gcs_dataset_id(self.uri)],
                                [dicom_store_dataset_id(self.hook.api_endpoint, self.store)])
