"""Modality routing: which series get pixel text redaction, and with which config.

Burned-in text is common in some modalities (ultrasound, screen captures...) and rare in
CT/MR, where OCR would only cost time; ``include/configs/routing.yaml`` says which are
which. The ``route`` step turns a store's series into one filter per route.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable

from dicom_deid_airflow.configs import routing

ROUTES = ("pixel", "metadata")


def pixel_prone_modalities() -> set[str]:
    """Modalities routed to pixel text redaction."""
    return set(routing()["modalities"])


def route(source_rows: Iterable[dict], study_uids: Collection[str],
          prone: Collection[str]) -> dict[str, list[str]]:
    """Series paths for each route (``pixel`` / ``metadata``) from QIDO series rows.

    A series whose modality is in ``prone`` goes to ``pixel``; with study UIDs given (an
    ad-hoc run) other studies are left out.
    """
    studies = set(study_uids)
    out: dict[str, list[str]] = {name: [] for name in ROUTES}
    for row in source_rows:
        study = row.get("0020000D", {}).get("Value", [""])[0]
        series = row.get("0020000E", {}).get("Value", [""])[0]
        modality = (row.get("00080060", {}).get("Value") or [""])[0]
        if studies and study not in studies:
            continue
        key = "pixel" if modality in prone else "metadata"
        out[key].append(f"/studies/{study}/series/{series}")
    return out


def route_config(config: dict, pixel: bool) -> dict:
    """The run's config, with pixel text redaction added for the pixel route (unless the
    profile already chose a mode)."""
    config = copy.deepcopy(config)
    if pixel and not (config.get("image") or {}).get("textRedactionMode"):
        config["image"] = {**(config.get("image") or {}),
                           "textRedactionMode": routing()["text_redaction_mode"]}
    return config


def redacts_all_text(config: dict) -> bool:
    """Whether the pixels the run redacts were to lose all their text (the profile's own
    mode, else the pixel route's): then the verification counts any word read back."""
    mode = (config.get("image") or {}).get("textRedactionMode", "")
    if mode in ("REDACT_ALL_TEXT", "REDACT_SENSITIVE_TEXT"):
        return mode == "REDACT_ALL_TEXT"
    return routing()["text_redaction_mode"] == "REDACT_ALL_TEXT"


def redacted_modalities(config: dict) -> bool | set[str]:
    """Where the verification sample should find no text: everywhere (True) when the
    profile itself redacts pixels, else in the modalities routed to pixel redaction."""
    mode = (config.get("image") or {}).get("textRedactionMode", "")
    if mode in ("REDACT_ALL_TEXT", "REDACT_SENSITIVE_TEXT"):
        return True
    return pixel_prone_modalities()
