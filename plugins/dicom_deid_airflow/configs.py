"""The project's configuration files, found through ``DICOM_DEID_HOME``.

Profiles (Cloud Healthcare API DeidentifyConfigs), quality suites and the modality
routing live in ``include/configs/`` of the checkout, or of ``$DICOM_DEID_HOME`` when the
plugins are deployed apart from it (a Composer bucket, an image). Params, routing and
gates read them through here, so a deployment moves them in one place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ROOT = Path(os.environ.get("DICOM_DEID_HOME", Path(__file__).resolve().parents[2]))
CONFIGS = ROOT / "include" / "configs"
#: Great Expectations suites (``quality/*.json``) the gates run.
SUITES = CONFIGS / "quality"


def profiles() -> list[str]:
    """The de-identification profiles users may pick: ``include/configs/deid/*.json``."""
    return sorted(p.stem for p in (CONFIGS / "deid").glob("*.json"))


def profile_descriptions() -> dict[str, str]:
    """Profile -> what it does, in one plain line (``deid/profiles.yaml``), for the
    trigger form; a profile without a line shows its name only."""
    import yaml

    lines = yaml.safe_load((CONFIGS / "deid" / "profiles.yaml").read_text()) or {}
    return {name: f"{name}: {' '.join(str(lines[name]).split())}" if name in lines else name
            for name in profiles()}


def load_profile(name: str) -> dict:
    """A profile's DeidentifyConfig (the caller checks ``name`` is one of :func:`profiles`)."""
    return json.loads((CONFIGS / "deid" / f"{name}.json").read_text())


def routing() -> dict[str, Any]:
    """Which modalities get pixel text redaction (``include/configs/routing.yaml``).

    yaml is imported here, on use, so that what imports this module for a path (the
    report app in the API server) does not pay for it.
    """
    import yaml

    return yaml.safe_load((CONFIGS / "routing.yaml").read_text())["pixel_redaction"]
