"""The run cost estimate: the shipped pricing table, the arithmetic, the savings sentence
and the errors a bad pricing file gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from dicom_deid_airflow.configs import CONFIGS
from dicom_deid_airflow.cost import (
    DEFAULT_PATH,
    GIB,
    PricingError,
    RouteSize,
    estimate,
    load_pricing,
)
from dicom_deid_airflow.routing import ROUTES

PIXEL = RouteSize(instances=200, bytes=3 * GIB, series=4, modalities={"US": 3, "XA": 1})
METADATA = RouteSize(instances=3000, bytes=40 * GIB, series=20, modalities={"CT": 12, "MR": 8})


@pytest.fixture(scope="module")
def pricing():
    return load_pricing()


@pytest.fixture
def raw() -> dict:
    """The shipped file as data, for tests that break one entry of it."""
    return yaml.safe_load(DEFAULT_PATH.read_text())


def _load(tmp_path: Path, data: dict | str):
    path = tmp_path / "pricing.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return load_pricing(path)


def _error(tmp_path: Path, data: dict | str) -> str:
    with pytest.raises(PricingError) as info:
        _load(tmp_path, data)
    return str(info.value)


# -- the shipped table ----------------------------------------------------------------


def test_default_file_is_the_shipped_one(pricing):
    assert DEFAULT_PATH == CONFIGS / "pricing.yaml"
    assert pricing.path == str(DEFAULT_PATH)
    assert pricing.currency == "USD"
    assert "to be checked" in pricing.note


def test_every_price_says_where_it_came_from(pricing):
    assert set(pricing.routes) == set(ROUTES)
    assert {"deidentify", "pixel_redaction", "export", "storage_month"} <= set(pricing.items)
    for item in pricing.items.values():
        assert item.source and item.read_on and item.description
        assert item.unit_price >= 0
        if not item.verified:
            assert len(item.why_unverified) > 40, item.name
    # Blob Storage is listed per GiB-hour; the file's GiB-month price is that x 730 h.
    storage = pricing.items["storage_month"]
    assert storage.verified and storage.unit == "GiB-month"
    assert storage.unit_price == pytest.approx(0.000027397 * 730, abs=1e-4)
    assert pricing.unverified() == [n for n, i in pricing.items.items() if not i.verified]


def test_the_routes_differ_by_pixel_redaction_only(pricing):
    assert set(pricing.routes["pixel"]) - set(pricing.routes["metadata"]) == {"pixel_redaction"}
    assert set(pricing.routes["metadata"]) <= set(pricing.routes["pixel"])


# -- arithmetic -----------------------------------------------------------------------


def test_each_line_is_quantity_times_list_price(pricing):
    est = estimate({"pixel": PIXEL, "metadata": METADATA}, pricing)
    for line in est.lines:
        item = pricing.items[line.item]
        size = PIXEL if line.route == "pixel" else METADATA
        assert line.quantity == size.bytes / GIB  # every shipped item is per GiB(-month)
        assert line.unit_price == item.unit_price
        assert line.cost == pytest.approx(line.quantity * item.unit_price)
        assert line.verified is item.verified
    assert [(line.route, line.item) for line in est.lines] == (
        [("pixel", n) for n in pricing.routes["pixel"]]
        + [("metadata", n) for n in pricing.routes["metadata"]])

    per_gib = {route: sum(pricing.items[n].unit_price for n in names)
               for route, names in pricing.routes.items()}
    assert est.route_total("pixel") == pytest.approx(3 * per_gib["pixel"])
    assert est.route_total("metadata") == pytest.approx(40 * per_gib["metadata"])
    assert est.total == pytest.approx(3 * per_gib["pixel"] + 40 * per_gib["metadata"])
    assert est.all_pixel_total == pytest.approx(43 * per_gib["pixel"])
    # What routing saves is exactly the pixel redaction the metadata route skipped.
    assert est.savings == pytest.approx(40 * pricing.items["pixel_redaction"].unit_price)
    assert est.savings == pytest.approx(est.all_pixel_total - est.total)


def test_a_missing_route_costs_nothing(pricing):
    est = estimate({"pixel": PIXEL}, pricing)
    assert est.route_total("metadata") == 0
    assert est.total == pytest.approx(est.all_pixel_total) == pytest.approx(
        est.route_total("pixel"))
    assert est.savings == pytest.approx(0)


def test_per_instance_and_per_series_units(tmp_path, raw):
    raw["items"]["deidentify"].update(unit="instance", unit_price=0.001)
    raw["items"]["export"].update(unit="series", unit_price=0.5)
    est = estimate({"pixel": PIXEL, "metadata": METADATA}, _load(tmp_path, raw))
    by = {(line.route, line.item): line for line in est.lines}
    assert by["metadata", "deidentify"].quantity == 3000
    assert by["metadata", "deidentify"].cost == pytest.approx(3.0)
    assert by["pixel", "export"].quantity == 4
    assert by["pixel", "export"].cost == pytest.approx(2.0)


def test_unknown_route_is_refused(pricing):
    with pytest.raises(ValueError, match="'archive'"):
        estimate({"archive": PIXEL}, pricing)


# -- what goes to XCom and the sentence -------------------------------------------------


def test_to_dict_is_json_and_carries_sources(pricing):
    est = estimate({"pixel": PIXEL, "metadata": METADATA}, pricing)
    out = est.to_dict()
    assert json.loads(json.dumps(out)) == out
    assert out["currency"] == "USD"
    assert out["total_usd"] == pytest.approx(est.total)
    assert out["savings_usd"] == pytest.approx(est.savings)
    assert out["routes"]["metadata"]["modalities"] == {"CT": 12, "MR": 8}
    assert out["routes"]["pixel"]["bytes"] == 3 * GIB
    line = out["routes"]["pixel"]["lines"][0]
    assert set(line) == {"route", "item", "description", "quantity", "unit",
                         "unit_price_usd", "cost_usd", "verified"}
    assert out["pricing"]["read_on"] == pricing.read_on
    assert set(out["pricing"]["sources"]) == set(pricing.items)
    assert out["pricing"]["unverified"] == pricing.unverified()
    assert sum(r["total_usd"] for r in out["routes"].values()) == pytest.approx(
        out["total_usd"])


def test_the_savings_sentence(pricing):
    est = estimate({"pixel": PIXEL, "metadata": METADATA}, pricing)
    saved = 40 * pricing.items["pixel_redaction"].unit_price
    assert est.summary.startswith(
        "Pixel redaction is what costs: routing CT/MR (20 series, 40.00 GiB) to "
        f"metadata-only saves ${saved:,.2f} compared with redacting everything")
    assert f"instead of ${est.all_pixel_total:,.2f}" in est.summary
    assert f"read {pricing.read_on}, to be checked" in est.summary
    unverified = pricing.unverified()
    assert f"{len(unverified)} of {len(pricing.items)} prices are unverified" in est.summary


def test_sentence_when_everything_needs_pixel_redaction(pricing):
    est = estimate({"pixel": PIXEL, "metadata": RouteSize()}, pricing)
    assert "every series in this run is routed to it: routing saves nothing" in est.summary


def test_sentence_for_a_tiny_run(pricing):
    tiny = RouteSize(instances=2, bytes=1024 * 1024, series=1, modalities={"CT": 1})
    est = estimate({"pixel": RouteSize(), "metadata": tiny}, pricing)
    assert "saves less than $0.01" in est.summary


def test_sentence_without_unverified_prices(tmp_path, raw):
    for item in raw["items"].values():
        item["verified"] = True
        item.pop("why_unverified", None)
    est = estimate({"pixel": PIXEL, "metadata": METADATA}, _load(tmp_path, raw))
    assert "unverified" not in est.summary
    assert est.summary.endswith("to be checked.")


# -- sizes ------------------------------------------------------------------------------


def test_route_size_from_series_metrics():
    """getSeriesMetrics answers int64 as strings, as Google's JSON does."""
    size = RouteSize.from_series_metrics([
        ("CT", {"instanceCount": "120", "blobStorageSizeBytes": "63000000"}),
        ("CT", {"instanceCount": "3", "blobStorageSizeBytes": "1500"}),
        ("MR", {"instanceCount": "40", "blobStorageSizeBytes": "9000000"}),
        ("", {"instanceCount": "1", "blobStorageSizeBytes": "10"}),
    ])
    assert (size.series, size.instances, size.bytes) == (4, 164, 72001510)
    assert size.modalities == {"CT": 2, "MR": 1, "unknown": 1}
    assert RouteSize.from_dict(json.loads(json.dumps(size.to_dict()))) == size


@pytest.mark.parametrize("field,value", [("bytes", -1), ("instances", 1.5), ("series", True)])
def test_route_size_refuses_bad_counts(field, value):
    with pytest.raises(ValueError, match=f"RouteSize.{field}"):
        RouteSize(**{field: value})


# -- bad pricing files ----------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(PricingError, match="no pricing file"):
        load_pricing(tmp_path / "absent.yaml")


def test_not_yaml(tmp_path):
    assert "not valid YAML" in _error(tmp_path, "items: [unclosed\n")


def test_not_a_mapping(tmp_path):
    assert "must be a mapping" in _error(tmp_path, "- a\n- b\n")


@pytest.mark.parametrize("mutate,key,problem", [
    (lambda d: d.pop("read_on"), "read_on", "is missing"),
    (lambda d: d.update(currency="EUR"), "currency", "must be USD"),
    (lambda d: d.update(colour="blue"), "colour", "unknown key"),
    (lambda d: d.update(read_on="last week"), "read_on", "must be a date"),
    (lambda d: d.update(items={}), "items", "non-empty mapping"),
    (lambda d: d["items"]["export"].update(unit_price=-0.1),
     "items.export.unit_price", "must be a number >= 0"),
    (lambda d: d["items"]["export"].update(unit_price="ten"),
     "items.export.unit_price", "must be a number >= 0"),
    (lambda d: d["items"]["export"].update(unit="TB"), "items.export.unit", "must be one of"),
    (lambda d: d["items"]["export"].pop("source"), "items.export.source", "is missing"),
    (lambda d: d["items"]["export"].update(source=""), "items.export.source", "non-empty"),
    (lambda d: d["items"]["export"].update(unit_prize=1), "items.export.unit_prize",
     "unknown key"),
    (lambda d: d["items"]["export"].update(verified="yes please"),
     "items.export.verified", "true or false"),
    (lambda d: d["items"]["export"].pop("why_unverified"),
     "items.export.why_unverified", "must say why"),
    (lambda d: d["items"]["storage_month"].update(read_on="2026-13-01"),
     "items.storage_month.read_on", "must be a date"),
    (lambda d: d["routes"]["pixel"].append("ocr"), "routes.pixel", "'ocr'"),
    (lambda d: d["routes"].pop("metadata"), "routes.metadata", "is missing"),
    (lambda d: d["routes"].update(archive=["export"]), "routes.archive", "unknown route"),
    (lambda d: d["routes"].update(pixel=[]), "routes.pixel", "non-empty list"),
])
def test_bad_entries_name_their_key(tmp_path, raw, mutate, key, problem):
    mutate(raw)
    message = _error(tmp_path, raw)
    assert f": {key}: " in message, message
    assert problem in message, message
    assert "pricing.yaml" in message
