"""Resource names and the API's ID rules.

IDs follow the Cloud Healthcare API: 1-256 characters from letters, digits, ``_``, ``-``
and ``.``. Everything else is refused before it reaches the disk or the database, which
is also what keeps path traversal out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import invalid

_ID = re.compile(r"[\w\-.]{1,256}")
# UIDs as they appear in DICOMweb paths: digits and dots, at most 64 characters.
_UID = re.compile(r"[0-9.]{1,64}")


def check_id(value: str | None, what: str) -> str:
    """Return ``value`` if it is a valid resource ID, else raise INVALID_ARGUMENT."""
    if not value:
        raise invalid(f"{what} is required")
    if not _ID.fullmatch(value) or value in {".", ".."}:
        raise invalid(
            f"invalid {what}: IDs must be 1-256 characters of letters, digits, "
            "'_', '-' and '.'"
        )
    return value


def check_uid(value: str, what: str) -> str:
    if not _UID.fullmatch(value):
        raise invalid(f"invalid {what}: a DICOM UID is up to 64 digits and dots")
    return value


@dataclass(frozen=True)
class DatasetName:
    project: str
    location: str
    dataset: str

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    def __str__(self) -> str:
        return f"{self.parent}/datasets/{self.dataset}"


@dataclass(frozen=True)
class StoreName:
    dataset: DatasetName
    store: str

    def __str__(self) -> str:
        return f"{self.dataset}/dicomStores/{self.store}"


def location(project: str, loc: str) -> str:
    check_id(project, "project ID")
    check_id(loc, "location ID")
    return f"projects/{project}/locations/{loc}"


def dataset_name(project: str, loc: str, dataset: str) -> DatasetName:
    check_id(project, "project ID")
    check_id(loc, "location ID")
    check_id(dataset, "dataset ID")
    return DatasetName(project, loc, dataset)


def store_name(project: str, loc: str, dataset: str, store: str) -> StoreName:
    check_id(store, "DICOM store ID")
    return StoreName(dataset_name(project, loc, dataset), store)
