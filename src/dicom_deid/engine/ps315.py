"""PS3.15 Annex E Table E.1-1 (Basic Application Level Confidentiality Profile) as data.

Each row says what the Basic Profile does to one attribute (``D`` dummy, ``Z`` zero
or dummy, ``X`` remove, ``K`` keep, ``C`` clean, ``U`` new UID, or a combined form
such as ``X/Z/D``) and what each profile option changes. Three rows are wildcards
(``(50xx,xxxx)`` curves, ``(60xx,3000)`` overlay data, ``(60xx,4000)`` overlay
comments); they match whole repeating groups. One row covers every private attribute
(``(gggg,eeee) where gggg is odd``).

The table ships with the package (copied from the project's ``shared/reference``),
so the engine never depends on a checkout layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

ACTIONS = frozenset({"D", "Z", "X", "K", "C", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"})

# Option columns of the table, in the order their actions take precedence when a
# caller selects several: retaining something beats cleaning it.
OPTIONS = (
    "rtnSafePrivOpt", "rtnUIDsOpt", "rtnDevIdOpt", "rtnInstIdOpt", "rtnPatCharsOpt",
    "rtnLongFullDatesOpt", "rtnLongModifDatesOpt", "cleanDescOpt", "cleanStructContOpt",
    "cleanGraphOpt",
)


@dataclass(frozen=True)
class Rule:
    """One row of the table."""

    name: str
    tag: str  # as printed, e.g. "(0010,0010)" or "(50XX,XXXX)"
    basic: str
    in_composite_iod: bool
    options: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    def action(self, selected: tuple[str, ...] = ()) -> str:
        """The action under the Basic Profile with the ``selected`` options applied."""
        for option in OPTIONS:
            if option in selected and option in self.options:
                return self.options[option]
        return self.basic


def _mask(tag: str) -> tuple[int, int]:
    """(mask, value) such that ``tag_int & mask == value`` for every tag the row covers."""
    digits = tag.strip("()").replace(",", "").upper()
    if len(digits) != 8:
        raise ValueError(f"not a tag pattern: {tag}")
    mask = value = 0
    for ch in digits:
        mask <<= 4
        value <<= 4
        if ch != "X":
            mask |= 0xF
            value |= int(ch, 16)
    return mask, value


class ConfidentialityTable:
    """Lookup of the table's rule for any tag, wildcard rows included."""

    def __init__(self, rows: list[dict]) -> None:
        self.rules: list[Rule] = []
        self._exact: dict[int, Rule] = {}
        self._wild: list[tuple[int, int, Rule]] = []
        self.private: Rule | None = None
        for row in rows:
            if row["basicProfile"] not in ACTIONS:
                raise ValueError(f"unknown action {row['basicProfile']!r} for {row['tag']}")
            rule = Rule(
                name=row["name"], tag=row["tag"].upper(), basic=row["basicProfile"],
                in_composite_iod=row.get("stdCompIOD") == "Y",
                options={k: row[k] for k in OPTIONS if k in row},
            )
            self.rules.append(rule)
            if rule.tag.endswith("WHERE GGGG IS ODD"):
                self.private = rule
                continue
            mask, value = _mask(rule.tag)
            if mask == 0xFFFFFFFF:
                self._exact[value] = rule
            else:
                self._wild.append((mask, value, rule))

    def __len__(self) -> int:
        return len(self.rules)

    @property
    def wildcard_rules(self) -> list[Rule]:
        return [rule for _, _, rule in self._wild]

    def rule(self, tag: int) -> Rule | None:
        """The row that governs ``tag``: exact rows, private groups, repeating groups."""
        found = self._exact.get(tag)
        if found is not None:
            return found
        if (tag >> 16) % 2 == 1:
            return self.private
        for mask, value, rule in self._wild:
            # Repeating groups are the even groups 5000-501E / 6000-601E only.
            if tag & mask == value and (tag >> 16) % 2 == 0:
                return rule
        return None


@lru_cache(maxsize=1)
def table() -> ConfidentialityTable:
    """The table shipped with the package (PS3.15 2024e, 621 rows)."""
    text = resources.files(__package__).joinpath("data/ps3.15-table-e1-1.json").read_text()
    return ConfidentialityTable(json.loads(text))
