"""Deterministic UID replacement.

A replaced UID is ``2.25.<decimal of 128 bits of HMAC-SHA256(key, original)>``: the
same original and key always give the same UID (a study stays a study across
instances, series and runs, and references stay resolvable), different keys give
unrelated UIDs, and nobody without the key can map one back. ``2.25`` is the
UUID-derived root, which needs no registration (PS3.5 B.2) and keeps every UID
within 64 characters.
"""

from __future__ import annotations

import hashlib
import hmac
import re

ROOT = "2.25."
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")


def valid_uid(value: object) -> bool:
    """A UID as PS3.5 9.1 allows it: dot-separated numbers without leading zeros, at
    most 64 characters."""
    return isinstance(value, str) and 0 < len(value) <= 64 and bool(_UID.fullmatch(value))


def new_uid(original: str, key: bytes) -> str:
    """The replacement for ``original`` under ``key``."""
    digest = hmac.new(key, original.strip().encode("ascii", "replace"), hashlib.sha256).digest()
    return ROOT + str(int.from_bytes(digest[:16], "big"))
