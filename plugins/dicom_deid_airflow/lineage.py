"""OpenLineage names for what the pipeline reads and writes, and the manifest's lineage.

The Healthcare operators report their inputs and outputs through Airflow's OpenLineage
provider (``get_openlineage_facets_on_complete``), and the manifest step through Airflow's
hook lineage collector, which the provider reads for Python tasks. Both name datasets
here, in one place, so that the export prefix an export task writes and the same prefix
the manifest task reads are one dataset in a lineage graph, and a de-identified store is
the same node whether a de-identification wrote it or an export read it.

Naming follows OpenLineage's spec (https://openlineage.io/docs/spec/naming):

- Cloud Storage: namespace ``gs://<bucket>``, name the object path or prefix without a
  leading slash (``/`` for the bucket root), as the Google provider names GCS datasets.
- Cloud Healthcare API (no entry in the spec): namespace ``healthcare://<api host>``
  (``healthcare.googleapis.com``, or the local server's ``host:port``), name the full
  resource name ``projects/P/locations/L/datasets/D/dicomStores/S``, which is unique per
  endpoint, like a table's ``database.schema.table``.

Nothing here sends anything: the provider's listener does, and only when an
``[openlineage]`` transport is configured. Without one the provider's plugin is disabled,
no hook lineage reader is registered, and :func:`report_manifest_lineage` returns at once.
The module imports without the provider; only the functions building OpenLineage objects
need it, and they import it when called.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk.lineage import HookLineageCollector, LineageContext
    from openlineage.client.event_v2 import Dataset

log = logging.getLogger(__name__)

#: Namespace scheme of Cloud Healthcare API resources (not in the OpenLineage spec).
HEALTHCARE_SCHEME = "healthcare"
#: Wildcards of ``dicomStores.import`` URIs (``*`` within a folder, ``**`` across levels).
_WILDCARD = "*"


class DatasetId(NamedTuple):
    """An OpenLineage dataset's identity: what a lineage backend keys its nodes on."""

    namespace: str
    name: str


def gcs_dataset_id(uri: str) -> DatasetId:
    """``gs://bucket/a/b/`` -> ``("gs://bucket", "a/b")``; the bucket root is ``/``.

    Why: the spec names a GCS dataset by bucket and path with no leading slash; trailing
    slashes are dropped too so that a prefix written as ``gs://b/p`` or ``gs://b/p/`` is
    one dataset. A wildcard URI (an import's ``gs://b/dir/**.dcm``) names the folder that
    holds the matches (``dir``): a dataset is a location, not a pattern.
    """
    if not uri.startswith("gs://"):
        raise ValueError("a Cloud Storage URI must start with gs://")
    bucket, _, path = uri[len("gs://"):].partition("/")
    if not bucket:
        raise ValueError("a Cloud Storage URI must name a bucket (gs://bucket/path)")
    if _WILDCARD in path:
        path = path.split(_WILDCARD, 1)[0].rpartition("/")[0]
    return DatasetId(f"gs://{bucket}", path.strip("/") or "/")


def healthcare_namespace(api_endpoint: str) -> str:
    """``https://healthcare.googleapis.com`` -> ``healthcare://healthcare.googleapis.com``.

    Why: a store's resource name is unique only per API endpoint (Google's, or a local
    server's), so the endpoint's ``host[:port]`` is the namespace, the way the spec puts a
    database server's host and port in its namespace. No credentials or path are kept.
    """
    text = api_endpoint.strip()
    parts = urlsplit(text if "//" in text else f"//{text}")
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError("the API endpoint must name a host")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{HEALTHCARE_SCHEME}://{host}" + (f":{parts.port}" if parts.port else "")


def dicom_store_dataset_id(api_endpoint: str, store: str) -> DatasetId:
    """A DICOM store: ``(healthcare://<host>, projects/P/locations/L/datasets/D/dicomStores/S)``.

    Why: the full resource name, not the store ID alone, so that stores of the same ID in
    other datasets, locations or projects stay distinct nodes.
    """
    name = store.strip().strip("/")
    if "/dicomStores/" not in name:
        raise ValueError("a DICOM store is named projects/P/locations/L/datasets/D/"
                         "dicomStores/S")
    return DatasetId(healthcare_namespace(api_endpoint), name)


def openlineage_dataset(dataset: DatasetId) -> Dataset:
    """The OpenLineage client's ``Dataset`` for ``dataset`` (needs the provider)."""
    from openlineage.client.event_v2 import Dataset

    return Dataset(namespace=dataset.namespace, name=dataset.name)


def operator_lineage(inputs: Sequence[DatasetId],
                     outputs: Sequence[DatasetId]) -> OperatorLineage:
    """What an operator's ``get_openlineage_facets_on_complete`` returns.

    Imported here, when the listener asks, so that the operators' module imports (and the
    DAGs parse) where the OpenLineage provider is not installed.
    """
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage(inputs=[openlineage_dataset(d) for d in inputs],
                           outputs=[openlineage_dataset(d) for d in outputs])


def _hook_lineage_collector() -> HookLineageCollector | None:
    """Airflow's hook lineage collector, or None when no plugin reads it.

    Why the check first: without a reader (no OpenLineage transport configured) Airflow
    hands out a collector that drops everything, and building even that one loads every
    provider's asset factories; so nothing is built when nobody would read it.
    """
    try:
        from airflow.sdk import plugins_manager
        from airflow.sdk.lineage import get_hook_lineage_collector
    except ImportError:  # not on Airflow 3.x's task SDK
        return None
    if not plugins_manager.get_hook_lineage_readers_plugins():
        return None
    return get_hook_lineage_collector()


def _gcs_uri(dataset: DatasetId) -> str:
    """The ``gs://`` URI of a dataset named by :func:`gcs_dataset_id` (normalized)."""
    return dataset.namespace if dataset.name == "/" else f"{dataset.namespace}/{dataset.name}"


def report_manifest_lineage(manifest_uri: str, export_prefix: str | None = None,
                            context: LineageContext | None = None) -> None:
    """Report the manifest as an output (and the export it lists as an input) of the
    running task, through Airflow's hook lineage collector.

    Why the collector: the manifest is written by a ``@task`` function, which has no
    ``get_openlineage_facets_on_complete``; the OpenLineage provider reads the collector
    for such tasks and names ``gs://`` assets as :func:`gcs_dataset_id` does. ``context``
    is what did the reading and writing (a hook; None is accepted), which Airflow records
    beside each asset. Lineage is best effort: a failure here is logged, never raised,
    so that it cannot fail the run. Prefixes are passed without a trailing slash, so that
    the export prefix is the same dataset as the export task's output.
    """
    try:
        collector = _hook_lineage_collector()
        if collector is None:
            return
        collector.add_output_asset(context, uri=_gcs_uri(gcs_dataset_id(manifest_uri)))
        if export_prefix:
            collector.add_input_asset(context, uri=_gcs_uri(gcs_dataset_id(export_prefix)))
    except Exception as exc:  # lineage must never fail the task
        log.warning("Could not report the manifest's lineage: %s", exc)
