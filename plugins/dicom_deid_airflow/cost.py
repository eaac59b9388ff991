"""An estimated Google Cloud cost for a run, priced from ``include/configs/pricing.yaml``.

Why estimate at all: the pipeline routes CT/MR (and every modality that rarely has
burned-in text) to metadata-only de-identification because pixel text redaction is the
expensive part, in time here and in money on Google (Cloud DLP image inspection). The
estimate puts a number on that choice for each run, and gives a run's owner an
order of magnitude before the same run goes to Google.

Why a file of prices and not constants: prices change and must be checked, so each
one carries its source page, the date it was read and whether it was read on Google's
page at all (``verified``). The file is validated on load and a wrong entry names its
key: a typo must fail loudly rather than print a wrong total. Free tiers are monthly
and per billing account, so a per-run estimate leaves them out (an upper bound).

Everything here is plain data: :meth:`CostEstimate.to_dict` goes to XCom and the run
report as it is. Sizes come from ``getSeriesMetrics`` (bytes and instance counts from
the store's index; no instance is read), see :meth:`RouteSize.from_series_metrics`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicom_deid_airflow.configs import CONFIGS
from dicom_deid_airflow.routing import ROUTES

__all__ = [
    "DEFAULT_PATH", "UNITS", "CostEstimate", "CostLine", "PriceItem", "Pricing",
    "PricingError", "RouteSize", "estimate", "load_pricing",
]

DEFAULT_PATH = CONFIGS / "pricing.yaml"
GIB = 1 << 30
#: Units a price may be given in. GiB-month is one month of the route's bytes.
UNITS = ("GiB", "GiB-month", "instance", "series")
_TOP_KEYS = {"currency", "read_on", "note", "items", "routes"}
_ITEM_KEYS = {"description", "unit", "unit_price", "source", "read_on", "verified",
              "why_unverified"}
_PIXEL = "pixel"


class PricingError(ValueError):
    """The pricing file is missing, unreadable or has a wrong entry (the message names
    the file and the key)."""


@dataclass(frozen=True)
class PriceItem:
    """One priced item: what it is, its unit price and where that price came from."""

    name: str
    description: str
    unit: str
    unit_price: float
    source: str
    read_on: str
    verified: bool
    why_unverified: str = ""


@dataclass(frozen=True)
class Pricing:
    """The validated pricing table: items, and which items each route pays."""

    currency: str
    read_on: str
    note: str
    items: Mapping[str, PriceItem]
    routes: Mapping[str, tuple[str, ...]]
    path: str

    def unverified(self) -> list[str]:
        """Items whose price was not read on Google's page: the estimate says so, so a
        reader knows which numbers to check first."""
        return [name for name, item in self.items.items() if not item.verified]


@dataclass(frozen=True)
class RouteSize:
    """What one route holds: instance and series counts, bytes, series per modality."""

    instances: int = 0
    bytes: int = 0
    series: int = 0
    modalities: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("instances", "bytes", "series"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"RouteSize.{name} must be an integer >= 0, got {value!r}")
        for modality, count in self.modalities.items():
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(
                    f"RouteSize.modalities[{modality!r}] must be an integer >= 0, got {count!r}")

    @classmethod
    def from_series_metrics(cls, series: Iterable[tuple[str, Mapping[str, Any]]]) -> RouteSize:
        """A route's size from ``(modality, getSeriesMetrics response)`` pairs.

        Built from the API's metrics rather than from retrieved instances so that sizing
        a route costs one small request per series, on Google as here; the int64 fields
        arrive as strings, as in Google's JSON.
        """
        instances = size = count = 0
        modalities: dict[str, int] = {}
        for modality, metrics in series:
            count += 1
            instances += int(metrics.get("instanceCount", 0))
            size += int(metrics.get("blobStorageSizeBytes", 0))
            key = modality or "unknown"
            modalities[key] = modalities.get(key, 0) + 1
        return cls(instances=instances, bytes=size, series=count, modalities=modalities)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RouteSize:
        """The inverse of :meth:`to_dict`, for sizes that travelled through XCom."""
        return cls(instances=int(data.get("instances", 0)), bytes=int(data.get("bytes", 0)),
                   series=int(data.get("series", 0)),
                   modalities={str(k): int(v) for k, v in (data.get("modalities") or {}).items()})

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (XCom)."""
        return {"instances": self.instances, "bytes": self.bytes, "series": self.series,
                "modalities": dict(sorted(self.modalities.items()))}

    def quantity(self, unit: str) -> float:
        """How many ``unit`` this route bills (GiB as Google counts them, 2^30 bytes)."""
        if unit in ("GiB", "GiB-month"):
            return self.bytes / GIB
        if unit == "instance":
            return float(self.instances)
        if unit == "series":
            return float(self.series)
        raise ValueError(f"unknown unit {unit!r}; expected one of {', '.join(UNITS)}")


@dataclass(frozen=True)
class CostLine:
    """One route's charge for one item."""

    route: str
    item: str
    description: str
    quantity: float
    unit: str
    unit_price: float
    cost: float
    verified: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form; quantities and costs rounded to 6 decimals."""
        return {"route": self.route, "item": self.item, "description": self.description,
                "quantity": round(self.quantity, 6), "unit": self.unit,
                "unit_price_usd": self.unit_price, "cost_usd": round(self.cost, 6),
                "verified": self.verified}


@dataclass(frozen=True)
class CostEstimate:
    """The estimate: lines per route and item, totals, what redacting everything would
    cost, and a sentence saying what the routing saved."""

    lines: tuple[CostLine, ...]
    sizes: Mapping[str, RouteSize]
    total: float
    all_pixel_total: float
    savings: float
    summary: str
    pricing: Pricing

    def route_total(self, route: str) -> float:
        """The estimated cost of one route (0 for a route with no lines)."""
        return sum(line.cost for line in self.lines if line.route == route)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form for XCom and the run report: no PHI, only counts,
        bytes, modality codes and prices."""
        routes = {}
        for name, size in self.sizes.items():
            routes[name] = {
                **size.to_dict(),
                "lines": [line.to_dict() for line in self.lines if line.route == name],
                "total_usd": round(self.route_total(name), 6),
            }
        return {
            "currency": "USD",
            "routes": routes,
            "total_usd": round(self.total, 6),
            "all_pixel_total_usd": round(self.all_pixel_total, 6),
            "savings_usd": round(self.savings, 6),
            "summary": self.summary,
            "pricing": {
                "file": Path(self.pricing.path).name,  # no server path in XCom or reports
                "read_on": self.pricing.read_on,
                "note": self.pricing.note,
                "sources": {name: {"source": item.source, "read_on": item.read_on,
                                   "verified": item.verified}
                            for name, item in self.pricing.items.items()},
                "unverified": self.pricing.unverified(),
            },
        }


# -- loading ------------------------------------------------------------------------


def _fail(path: Path | str, key: str, problem: str) -> PricingError:
    return PricingError(f"{path}: {key}: {problem}")


def _date(path: Path | str, key: str, value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise _fail(path, key, f"must be a date YYYY-MM-DD, got {value!r}")


def _text(path: Path | str, key: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, key, f"must be a non-empty string, got {value!r}")
    return " ".join(value.split())


def _mapping(path: Path | str, key: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not value:
        raise _fail(path, key, "must be a non-empty mapping")
    return value


def _check_keys(path: Path | str, where: str, data: Mapping[str, Any],
                allowed: set[str], required: set[str]) -> None:
    for key in data:
        if key not in allowed:
            raise _fail(path, f"{where}{key}", f"unknown key (expected one of "
                        f"{', '.join(sorted(allowed))})")
    for key in sorted(required - set(data)):
        raise _fail(path, f"{where}{key}", "is missing")


def _item(path: Path | str, name: str, raw: object) -> PriceItem:
    where = f"items.{name}"
    data = _mapping(path, where, raw)
    _check_keys(path, f"{where}.", data, _ITEM_KEYS, _ITEM_KEYS - {"why_unverified"})
    unit = data["unit"]
    if unit not in UNITS:
        raise _fail(path, f"{where}.unit", f"must be one of {', '.join(UNITS)}, got {unit!r}")
    price = data["unit_price"]
    if isinstance(price, bool) or not isinstance(price, (int, float)) or price < 0:
        raise _fail(path, f"{where}.unit_price", f"must be a number >= 0, got {price!r}")
    verified = data["verified"]
    if not isinstance(verified, bool):
        raise _fail(path, f"{where}.verified", f"must be true or false, got {verified!r}")
    why = ""
    if not verified:
        if "why_unverified" not in data:
            raise _fail(path, f"{where}.why_unverified",
                        "is missing: an unverified price must say why")
        why = _text(path, f"{where}.why_unverified", data["why_unverified"])
    return PriceItem(
        name=name,
        description=_text(path, f"{where}.description", data["description"]),
        unit=unit, unit_price=float(price),
        source=_text(path, f"{where}.source", data["source"]),
        read_on=_date(path, f"{where}.read_on", data["read_on"]),
        verified=verified, why_unverified=why,
    )


def load_pricing(path: Path | str | None = None) -> Pricing:
    """The pricing table at ``path`` (default ``include/configs/pricing.yaml``, found
    like the other configs, through ``DICOM_DEID_HOME``), validated.

    Raises :class:`PricingError` naming the file and the key for anything wrong, so a
    bad price stops the estimate instead of skewing it.
    """
    import yaml  # on use, as configs.routing() does: importers for a path do not pay

    path = Path(path) if path is not None else DEFAULT_PATH
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PricingError(f"{path}: no pricing file there") from None
    except yaml.YAMLError as exc:
        raise PricingError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, Mapping):
        raise PricingError(f"{path}: must be a mapping with keys "
                           f"{', '.join(sorted(_TOP_KEYS))}")
    _check_keys(path, "", raw, _TOP_KEYS, _TOP_KEYS)
    if raw["currency"] != "USD":
        raise _fail(path, "currency", f"must be USD (the estimate is in USD), "
                    f"got {raw['currency']!r}")
    items = {str(name): _item(path, str(name), value)
             for name, value in _mapping(path, "items", raw["items"]).items()}
    routes: dict[str, tuple[str, ...]] = {}
    for route, names in _mapping(path, "routes", raw["routes"]).items():
        key = f"routes.{route}"
        if route not in ROUTES:
            raise _fail(path, key, f"unknown route (the pipeline's routes are "
                        f"{', '.join(ROUTES)})")
        if not isinstance(names, list) or not names:
            raise _fail(path, key, "must be a non-empty list of item names")
        for name in names:
            if name not in items:
                raise _fail(path, key, f"names {name!r}, which is not under items")
        routes[str(route)] = tuple(names)
    for route in ROUTES:
        if route not in routes:
            raise _fail(path, f"routes.{route}", "is missing")
    return Pricing(currency="USD", read_on=_date(path, "read_on", raw["read_on"]),
                   note=_text(path, "note", raw["note"]), items=items, routes=routes,
                   path=str(path))


# -- estimating ---------------------------------------------------------------------


def _usd(value: float) -> str:
    if value == 0:
        return "$0.00"
    if abs(value) < 0.005:
        return "less than $0.01"
    return f"${value:,.2f}"


def _lines(route: str, size: RouteSize, names: Iterable[str],
           pricing: Pricing) -> list[CostLine]:
    out = []
    for name in names:
        item = pricing.items[name]
        quantity = size.quantity(item.unit)
        out.append(CostLine(route=route, item=name, description=item.description,
                            quantity=quantity, unit=item.unit, unit_price=item.unit_price,
                            cost=quantity * item.unit_price, verified=item.verified))
    return out


def _summary(sizes: Mapping[str, RouteSize], total: float, all_pixel: float,
             savings: float, pricing: Pricing) -> str:
    others = [s for name, s in sizes.items() if name != _PIXEL]
    series = sum(s.series for s in others)
    if series == 0 and savings <= 0:
        sentence = ("Pixel redaction is what costs, and every series in this run is routed "
                    f"to it: routing saves nothing here (estimated {_usd(total)}).")
    else:
        counts: dict[str, int] = {}
        for size in others:
            for modality, count in size.modalities.items():
                counts[modality] = counts.get(modality, 0) + count
        ordered = sorted(counts, key=lambda m: (-counts[m], m))
        label = "/".join(ordered) if ordered else "the metadata-route series"
        gib = sum(s.bytes for s in others) / GIB
        if savings >= 0:
            sentence = (f"Pixel redaction is what costs: routing {label} ({series} series, "
                        f"{gib:,.2f} GiB) to metadata-only saves {_usd(savings)} compared "
                        f"with redacting everything (estimated {_usd(total)} instead of "
                        f"{_usd(all_pixel)}).")
        else:  # only with a pricing file where the metadata route pays more
            sentence = (f"With these prices the metadata-only route costs more: routing "
                        f"{label} ({series} series, {gib:,.2f} GiB) to it costs "
                        f"{_usd(-savings)} more than redacting everything (estimated "
                        f"{_usd(total)} instead of {_usd(all_pixel)}).")
    unverified = pricing.unverified()
    sentence += f" List prices read {pricing.read_on}, to be checked"
    if unverified:
        sentence += (f"; {len(unverified)} of {len(pricing.items)} prices are unverified "
                     f"({', '.join(unverified)})")
    return sentence + "."


def estimate(routes: Mapping[str, RouteSize], pricing: Pricing) -> CostEstimate:
    """Price each route with its items, and compare with sending every route through
    the pixel route's items (what redacting everything would cost).

    ``routes`` maps route names (``pixel``, ``metadata``) to their sizes; a route left
    out costs nothing. Costs are quantity x list price, free tiers not subtracted.
    """
    unknown = [name for name in routes if name not in pricing.routes]
    if unknown:
        raise ValueError(f"no prices for route(s) {', '.join(map(repr, unknown))}; "
                         f"{pricing.path} prices {', '.join(pricing.routes)}")
    sizes = {name: routes.get(name, RouteSize()) for name in pricing.routes}
    lines: list[CostLine] = []
    all_pixel = 0.0
    for name, size in sizes.items():
        lines += _lines(name, size, pricing.routes[name], pricing)
        all_pixel += sum(line.cost for line in
                         _lines(name, size, pricing.routes[_PIXEL], pricing))
    total = sum(line.cost for line in lines)
    savings = all_pixel - total
    return CostEstimate(lines=tuple(lines), sizes=sizes, total=total,
                        all_pixel_total=all_pixel, savings=savings,
                        summary=_summary(sizes, total, all_pixel, savings, pricing),
                        pricing=pricing)
