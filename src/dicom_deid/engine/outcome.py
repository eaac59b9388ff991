"""What de-identifying one instance gives: its new identity, or a reason it failed.

Both paths (:mod:`.instance_bytes` without pydicom, :mod:`.instance_dataset` with it)
return and raise the same types, so callers (the CLI's workers, the server's) never
know which path took an instance.
"""

from __future__ import annotations

from dataclasses import dataclass


class UnreadableInstance(ValueError):
    """An input that cannot be processed; the message is safe to log and report."""


class InstanceTooLarge(UnreadableInstance):
    """A deflated instance that inflates beyond the process's limit (the message names
    the limit): refused for what reading it would cost, not for being malformed."""


class DeidentifyError(ValueError):
    """De-identification of one instance failed; the message is safe to log."""


@dataclass(frozen=True)
class Outcome:
    """The de-identified instance's identity (its new UIDs) and where it went."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    size: int
