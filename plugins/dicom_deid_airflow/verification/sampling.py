"""Which destination instances the verification sample checks.

Why not a uniform draw: a run routes a few modalities (ultrasound, secondary capture)
to burned-in text redaction, and they are often a small share of a store. At 2% of
the instances, a uniform sample of 20 misses all of them two runs in three, and the
gate passes without ever reading a redacted image. So the sample is stratified by
route: each route with instances gets at least a quarter of the sample each (at least
one instance, at most all it has); the rest is drawn uniformly from what is left.
Seeded by the run id, so a rerun of a run checks the same instances.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["draw"]

_T = TypeVar("_T")


def draw(items: Sequence[_T], size: int, seed: str,
         stratum: Callable[[_T], object] | None = None) -> list[int]:
    """Indexes into ``items`` of a sample of ``min(size, len(items))``, reproducible for
    ``seed`` and ``items``' order. ``stratum`` names each item's stratum (the route);
    each non-empty stratum gets ``max(1, size // (2 * strata))`` of them, or all it has
    if fewer, before the rest is drawn uniformly."""
    rng = random.Random(seed)
    n = min(size, len(items))
    if stratum is None:
        return rng.sample(range(len(items)), n)
    strata: dict[object, list[int]] = {}
    for i, item in enumerate(items):
        strata.setdefault(stratum(item), []).append(i)
    floor = max(1, n // (2 * len(strata))) if strata else 0
    picked: list[int] = []
    for key in sorted(strata, key=repr):  # a stable order, whatever the items
        members = strata[key]
        picked += rng.sample(members, min(floor, len(members), n - len(picked)))
    chosen = set(picked)
    rest = [i for i in range(len(items)) if i not in chosen]
    picked += rng.sample(rest, n - len(picked))
    return picked
