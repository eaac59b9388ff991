"""The verification sample's draw (``verification.sampling.draw``)."""

from __future__ import annotations

import random

import pytest
from dicom_deid_airflow.verification.sampling import draw

#: A store as the scaling bench builds it: 2% ultrasound (pixel route), 98% CT.
ITEMS = ["US" if i % 50 == 0 else "CT" for i in range(2000)]


def test_a_small_route_is_always_in_the_sample() -> None:
    """At 2% a uniform sample of 20 misses the pixel route in about two runs of three;
    stratified, every run checks at least a quarter of its sample on each route."""
    missed_uniform = 0
    for run in range(200):
        seed = f"manual__2026-12-07T{run:05d}"
        picked = draw(ITEMS, 20, seed, stratum=lambda m: m)
        assert sum(ITEMS[i] == "US" for i in picked) >= 5
        assert sum(ITEMS[i] == "CT" for i in picked) >= 5
        uniform = draw(ITEMS, 20, seed)
        missed_uniform += not any(ITEMS[i] == "US" for i in uniform)
    assert missed_uniform > 100  # what the stratified draw fixes


@pytest.mark.parametrize("size", [1, 2, 3, 20, 1999, 2000, 5000])
def test_size_distinct_items_reproducible_from_the_seed(size: int) -> None:
    picked = draw(ITEMS, size, "run-1", stratum=lambda m: m)
    assert len(picked) == len(set(picked)) == min(size, len(ITEMS))
    assert picked == draw(ITEMS, size, "run-1", stratum=lambda m: m)
    assert picked != draw(ITEMS, size, "run-2", stratum=lambda m: m) or size >= len(ITEMS)


def test_a_route_smaller_than_its_share_is_taken_whole() -> None:
    items = ["US", "US"] + ["CT"] * 98
    picked = draw(items, 20, "seed", stratum=lambda m: m)
    assert sorted(items[i] for i in picked).count("US") == 2 and len(picked) == 20


def test_without_strata_the_draw_is_uniform_as_before() -> None:
    """One route (all or no modalities redacted): the draw a run made before."""
    assert draw(ITEMS, 20, "run-1") == random.Random("run-1").sample(range(2000), 20)


def test_an_empty_store_draws_nothing() -> None:
    assert draw([], 20, "run-1", stratum=lambda m: m) == []
