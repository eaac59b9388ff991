"""QIDO-RS searches translated to SQL over the instance index.

Matching follows PS3.18 §8.3.4: single values, UID lists, ``*``/``?`` wildcards, date
and time ranges, and universal matching with an empty value. Studies and series are
aggregates of their instances; counts and ModalitiesInStudy are computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import errors
from .attributes import (
    BY_KEYWORD,
    COMPUTED,
    DEFAULT_RETURN,
    INDEXED,
    json_value,
    resolve_key,
)
from .catalog import Catalog
from .paging import INT64_MAX, parse_int

DEFAULT_LIMIT = {"study": 100, "series": 100, "instance": 100}
MAX_LIMIT = {"study": 5000, "series": 5000, "instance": 50000}
_RESERVED = {"limit", "offset", "includefield", "fuzzymatching"}
_RANGED = {"DA", "TM", "DT"}
#: Google's documented maximum QIDO offset.
MAX_OFFSET = 1_000_000
#: The values an integer VR can hold (PS3.5 6.2: IS is a signed 32-bit integer in
#: DICOM's range), so a match outside them is a wrong request, not a search for nothing.
INT_RANGES = {"US": (0, 2**16 - 1), "SS": (-(2**15), 2**15 - 1), "UL": (0, 2**32 - 1),
              "SL": (-(2**31), 2**31 - 1), "IS": (-(2**31), 2**31 - 1)}
#: Bounds on the SQL one search builds: each matching key is a clause and each listed UID
#: a parameter, and SQLite refuses past 1,000 nested clauses or 32,766 parameters. No
#: real search comes near: there are 26 matchable attributes.
MAX_MATCH_KEYS = 64
MAX_LISTED_UIDS = 1000


@dataclass
class Query:
    level: str
    store: int
    study_uid: str | None = None
    series_uid: str | None = None
    where: list[str] = field(default_factory=list)
    args: list = field(default_factory=list)
    returned: list[str] = field(default_factory=list)  # keywords to include
    extra_tags: list[int] = field(default_factory=list)  # non-indexed includefields
    include_all: bool = False
    limit: int = 100
    offset: int = 0


def _glob(value: str) -> str:
    return value.replace("[", "[[]")


def _match(q: Query, keyword: str, value: str) -> None:
    if keyword == "ModalitiesInStudy":
        keyword = "Modality"
    attr = BY_KEYWORD.get(keyword)
    if attr is None:
        raise errors.invalid(f"matching on {keyword} is not supported")
    if keyword not in q.returned:
        q.returned.append(keyword)
    if value == "":
        return  # universal matching: return the attribute, filter nothing
    col = attr.column
    if attr.vr == "UI":
        uids = [u for u in value.replace("\\", ",").split(",") if u]
        if len(q.args) + len(uids) > MAX_LISTED_UIDS:  # counted over all the keys
            raise errors.invalid(f"a search may list at most {MAX_LISTED_UIDS} UIDs")
        q.where.append(f"{col} IN ({','.join('?' * len(uids))})")
        q.args.extend(uids)
    elif attr.vr in _RANGED and "-" in value:
        lo, _, hi = value.partition("-")
        if lo:
            q.where.append(f"{col} >= ?")
            q.args.append(lo)
        if hi:
            q.where.append(f"{col} <= ?")
            q.args.append(hi if attr.vr == "DA" else hi + "\uffff")
    elif attr.vr in INT_RANGES:
        q.args.append(parse_int(value.strip(), keyword, *INT_RANGES[attr.vr]))
        q.where.append(f"{col} = ?")
    elif attr.vr == "PN":
        q.where.append(f"wildcard_ci({col}, ?)")
        q.args.append(value)
    elif "*" in value or "?" in value:
        q.where.append(f"{col} GLOB ?")
        q.args.append(_glob(value))
    else:
        q.where.append(f"{col} = ?")
        q.args.append(value)


def parse(
    level: str, store: int, params: list[tuple[str, str]],
    study_uid: str | None = None, series_uid: str | None = None,
) -> Query:
    q = Query(level=level, store=store, study_uid=study_uid, series_uid=series_uid)
    q.limit = DEFAULT_LIMIT[level]
    levels = {"study": ["study"], "series": ["series"], "instance": ["series", "instance"]}
    if level != "study" and study_uid is None:
        levels[level] = ["study", *levels[level]]
    for lv in levels[level]:
        q.returned.extend(DEFAULT_RETURN[lv])
    extra: set[int] = set()
    matched = 0
    for key, value in params:
        if key == "limit":
            # Past the maximum, the maximum (as Google caps it); past 64 bits, an error.
            n = parse_int(value, key, 0, INT64_MAX)
            q.limit = min(n, MAX_LIMIT[level]) if n else DEFAULT_LIMIT[level]
        elif key == "offset":
            q.offset = parse_int(value, key, 0, MAX_OFFSET)
        elif key == "includefield":
            for item in value.split(","):
                item = item.strip()
                if item == "all":
                    q.include_all = True
                elif item:
                    try:
                        tag, keyword = resolve_key(item)
                    except KeyError:
                        raise errors.invalid("unknown attribute in includefield: "
                                             f"{errors.quote(item)}") from None
                    if keyword in BY_KEYWORD or keyword in COMPUTED:
                        if keyword not in q.returned:
                            q.returned.append(keyword)
                    elif tag not in extra:  # a set: a long list of repeats stays linear
                        extra.add(tag)
                        q.extra_tags.append(tag)
        elif key in _RESERVED:
            continue
        else:
            matched += 1
            if matched > MAX_MATCH_KEYS:
                raise errors.invalid(f"a search may have at most {MAX_MATCH_KEYS} matching keys")
            try:
                _tag, keyword = resolve_key(key)
            except KeyError:
                raise errors.invalid(f"unknown query attribute: {errors.quote(key)}") from None
            _match(q, keyword, value)
    if q.include_all:
        for lv in levels[level]:
            q.returned.extend(a.keyword for a in INDEXED if a.level == lv
                              and a.keyword not in q.returned)
    return q


def _scope(q: Query, alias: str = "") -> tuple[str, list]:
    p = f"{alias}." if alias else ""
    clauses = [f"{p}store = ?"]
    args: list = [q.store]
    if q.study_uid:
        clauses.append(f"{p}study_uid = ?")
        args.append(q.study_uid)
    if q.series_uid:
        clauses.append(f"{p}series_uid = ?")
        args.append(q.series_uid)
    return " AND ".join(clauses), args


def run(catalog: Catalog, q: Query) -> tuple[list[dict], list[str], bool]:
    """Rows as DICOM JSON, the file paths of each row's first instance, and "more"."""
    scope, scope_args = _scope(q)
    where = " AND ".join([scope, *q.where])
    args = scope_args + q.args
    page = (q.limit + 1, q.offset)
    if q.level == "instance":
        rows = catalog.read(
            f"SELECT *, 0 AS n_series, 0 AS n_inst, '' AS mods FROM instances WHERE {where}"
            " ORDER BY pk LIMIT ? OFFSET ?", [*args, *page]
        )
    else:
        key = "study_uid" if q.level == "study" else "study_uid, series_uid"
        scope_i, scope_i_args = _scope(q, "i")
        join = " AND ".join(f"i.{k.strip()} = m.{k.strip()}" for k in key.split(","))
        rows = catalog.read(
            f"""WITH matched AS (SELECT DISTINCT {key} FROM instances WHERE {where}),
            agg AS (
                SELECT MIN(i.pk) AS first, COUNT(DISTINCT i.series_uid) AS n_series,
                       COUNT(*) AS n_inst,
                       GROUP_CONCAT(DISTINCT i.modality) AS mods
                FROM instances i JOIN matched m ON {join}
                WHERE {scope_i}
                GROUP BY {', '.join('i.' + k.strip() for k in key.split(','))})
            SELECT f.*, agg.n_series, agg.n_inst, agg.mods FROM agg
            JOIN instances f ON f.pk = agg.first ORDER BY agg.first LIMIT ? OFFSET ?""",
            [*args, *scope_i_args, *page],
        )
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    return [_render(q, r) for r in rows], [r["path"] for r in rows], more


def _render(q: Query, row: object) -> dict:
    out: dict[str, dict] = {}
    for keyword in q.returned:
        attr = BY_KEYWORD.get(keyword)
        if attr is not None:
            out[f"{attr.tag:08X}"] = json_value(attr.vr, row[attr.column])
    # Always identify the row, whatever was asked.
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")[
        : {"study": 1, "series": 2, "instance": 3}[q.level]
    ]:
        attr = BY_KEYWORD[keyword]
        out[f"{attr.tag:08X}"] = json_value("UI", row[attr.column])
    if q.level == "study":
        mods = sorted({m for m in (row["mods"] or "").split(",") if m})
        out["00080061"] = {"vr": "CS", "Value": mods} if mods else {"vr": "CS"}
        out["00201206"] = {"vr": "IS", "Value": [row["n_series"]]}
        out["00201208"] = {"vr": "IS", "Value": [row["n_inst"]]}
    elif q.level == "series":
        out["00201209"] = {"vr": "IS", "Value": [row["n_inst"]]}
    else:
        out["00083002"] = json_value("UI", row["transfer_syntax"])
    return dict(sorted(out.items()))
