"""The Retain Safe Private Option: private elements judged safe by RSNA's CTP.

CTP's private-attribute dictionary (shipped with the package) marks each known
vendor element ``K`` (safe to keep: acquisition parameters and the like) or ``X``.
An element is identified by its private creator, its group and its offset in the
creator's block, never by its absolute element number, which varies between files.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def safe_elements() -> frozenset[tuple[str, int, int]]:
    """(creator lower-case, group, offset) of every element CTP marks safe."""
    path = resources.files(__package__).joinpath("data/ctp-private-tag-dictionary.xml")
    root = ET.fromstring(path.read_bytes())
    out = set()
    for el in root.iter("element"):
        if el.get("code") != "K":
            continue
        try:
            out.add((el.get("cr", "").strip().lower(), int(el.get("gp", ""), 16),
                     int(el.get("el", ""), 16)))
        except ValueError:
            continue
    return frozenset(out)


def is_safe(creator: str, group: int, offset: int) -> bool:
    """True if the element at ``offset`` of ``creator``'s block in ``group`` is safe."""
    return (creator.strip().lower(), group, offset) in safe_elements()
