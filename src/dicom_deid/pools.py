"""The Airflow pool that bounds concurrent Cloud Healthcare API operations.

A de-identification or export operation runs for minutes on the API's side while its
task waits deferred. Without a bound, a backfill or several DAGs at once start as many
operations as there are runs and meet the API's quota (on Google, concurrent
long-running operations per project) or, locally, a server whose worker pools share
the same cores. Every operation task of the DAGs takes a slot of this pool, and the pool
counts deferred tasks (``include_deferred``), so a slot is held while the operation
runs, not only while it is submitted.

Kept here, in the library, because ``make up`` (``dicom_deid.up``) creates the pool and
the DAGs' plugins name it: one home for both.
"""

from __future__ import annotations

HEALTHCARE_POOL = "healthcare_api"
HEALTHCARE_POOL_SLOTS = 4
HEALTHCARE_POOL_DESCRIPTION = ("Concurrent Cloud Healthcare API operations "
                               "(de-identify, export, import); deferred tasks count")


def pool_command(airflow: str = "airflow") -> list[str]:
    """``airflow pools set ...``: creates the pool, or sets it back to these values."""
    return [airflow, "pools", "set", HEALTHCARE_POOL, str(HEALTHCARE_POOL_SLOTS),
            HEALTHCARE_POOL_DESCRIPTION, "--include-deferred"]
