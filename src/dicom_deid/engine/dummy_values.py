"""The value a ``D`` (dummy) action puts in a text element, by VR.

Valid for the VR and visibly not real (``data/dummy-values.json``). Its own module
because the dataset path, the sequence rewriter and the byte path all write them,
and the byte path runs without pydicom.
"""

from __future__ import annotations

import json
from importlib import resources


def _dummy_values() -> dict[str, str]:
    path = resources.files(__package__).joinpath("data/dummy-values.json")
    return {vr: value for vr, value in json.loads(path.read_text()).items()
            if not vr.startswith("_")}


#: VR -> the value ``D`` puts in a string element.
DUMMY: dict[str, str] = _dummy_values()
