"""Vendor the attribute types of each IOD from the DICOM standard tables highdicom ships.

Writes ``src/dicom_deid/engine/data/iod-attribute-types.json`` from the installed
``highdicom``'s copy of PS3.3 as data (``highdicom/_standard/sop_class_iod_map.json``,
``iod_module_map.json``, ``module_attribute_map.json``): the SOP Class -> IOD map, each
IOD's modules, and per module the attributes that are Type 1, 1C, 2 or 2C with their
strongest type (1 > 1C > 2 > 2C), at the top level (``modules``) and inside its
sequences (``nested``, by keyword: the strongest type at any sequence path). The
engine (``dicom_deid.engine.iod_types``) takes the strongest type over an IOD's modules
so that an action that would remove or empty an attribute the instance's IOD requires
gives a dummy value (Type 1) or an empty one (Type 2) instead.

To keep the file small (modules are shared by IODs, so they are listed once) only
attributes a profile could remove or empty are kept: at the top level, the ones
PS3.15 Table E.1-1 removes or empties under some option, the dates, times and ages
(which the tag-contents profile may empty), and every attribute the minimal keep list
does not keep (the minimal profile removes them), and the Type 3 top-level sequences
the table has no row for (the minimal profile keeps them, cleaned inside: they hold
the content of IODs its list was not written for, such as an RT Structure Set's ROIs,
which older editions of PS3.3, dciodvfy's among them, make Type 1); inside sequences,
the ones the table removes or empties and the Type 1 dates and times (the top-level
attributes of a module with a Content Sequence count there too: SR content is
recursive). Repeating
groups (overlays, curves) are left out: a profile removes such a plane whole, which
leaves a valid instance.

A few retired SOP Classes that real files still carry are mapped to the IOD that
replaced them (``RETIRED``): their modules are the same for what matters here.

Run it after upgrading highdicom (``tests/unit/test_iod_types_vendored.py`` says when)::

    .venv/bin/python tools/vendor_iod_types.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import highdicom
from pydicom.datadict import dictionary_VR, tag_for_keyword

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from dicom_deid.engine import iod_types  # noqa: E402
from dicom_deid.engine.decisions import _exact_tag, minimal_keep_list  # noqa: E402
from dicom_deid.engine.ps315 import table  # noqa: E402

STANDARD = Path(highdicom.__file__).parent / "_standard"
TARGET = ROOT / "src" / "dicom_deid" / "engine" / iod_types.VENDORED

#: Strongest first.
TYPES = ("1", "1C", "2", "2C")
#: VRs whose values the tag-contents profile (and, inside replaced sequences, the basic
#: profile) may empty rather than remove.
DATED = frozenset({"DA", "DT", "TM", "AS"})

#: Modules about the patient and the study rather than the IOD's content: their Type 3
#: sequences are not kept by the minimal profile.
IDENTITY_MODULES = frozenset({"patient", "patient-study", "general-study",
                              "clinical-trial-subject", "clinical-trial-study",
                              "clinical-trial-series"})

#: Retired SOP Classes (PS3.6 Annex A) -> the SOP Class whose IOD replaced theirs.
RETIRED = {
    "1.2.840.10008.5.1.4.1.1.3": "1.2.840.10008.5.1.4.1.1.3.1",  # US Multi-frame (Retired)
    "1.2.840.10008.5.1.4.1.1.5": "1.2.840.10008.5.1.4.1.1.20",  # NM Image (Retired)
    "1.2.840.10008.5.1.4.1.1.6": "1.2.840.10008.5.1.4.1.1.6.1",  # US Image (Retired)
}


def _removable() -> set[int]:
    """Exact tags of the table's rows whose action, under some option, removes or empties."""
    out = set()
    for rule in table().rules:
        digits = rule.tag.strip("()").replace(",", "")
        try:
            tag = int(digits, 16)
        except ValueError:  # wildcard and private rows
            continue
        if any("X" in action or "Z" in action for action in (rule.basic, *rule.options.values())):
            out.add(tag)
    return out


def _ruled() -> set[int]:
    """Exact tags the table has a row for (whatever its action)."""
    return {tag for rule in table().rules if (tag := _exact_tag(rule.tag)) is not None}


def _repeating(tag: int) -> bool:
    """Whether ``tag`` is in a curve or overlay group (50xx, 60xx: even, up to xx=1E)."""
    group = tag >> 16
    return (group & 0xFF00) in (0x5000, 0x6000) and group & 0xFF <= 0x1E and not group & 1


def _vr(tag: int) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


def _module(attributes: list[dict], removable: set[int], kept: dict[int, str],
            ruled: set[int], content: bool = True) -> tuple[dict[str, str], dict[str, str]]:
    """(top-level, nested) keyword -> strongest type of one module's candidates
    (``content``: whether the module's Type 3 sequences are candidates)."""
    top: dict[str, str] = {}
    nested: dict[str, str] = {}
    # The Document Content Macro is recursive (PS3.3 C.17.3): the items of a top-level
    # Content Sequence hold the root's attributes again, which the tables do not repeat.
    recursive = any(a["keyword"] == "ContentSequence" and not a["path"] for a in attributes)
    for attribute in attributes:
        kind, keyword = attribute["type"], attribute["keyword"]
        tag = tag_for_keyword(keyword)
        if tag is None or _repeating(tag):
            continue  # not in pydicom's dictionary; curves and overlays
        if kind == "3" and content and not attribute["path"] and _vr(tag) == "SQ" and (
                tag not in kept and tag not in ruled):
            top.setdefault(keyword, "3")  # a sequence of the IOD's content (see above)
        if kind not in TYPES:
            continue
        dated = _vr(tag) in DATED
        places = []
        if not attribute["path"] and (tag in removable or dated or tag not in kept):
            places.append(top)
        if (attribute["path"] or recursive) and (
                tag in removable or (dated and kind in ("1", "1C"))):
            places.append(nested)
        for into in places:
            order = iod_types.TYPES
            if keyword not in into or order.index(kind) < order.index(into[keyword]):
                into[keyword] = kind
    return dict(sorted(top.items())), dict(sorted(nested.items()))


def derive(standard: Path = STANDARD, version: str = highdicom.__version__) -> dict:
    """The vendored document, from highdicom's copies of the standard's tables."""
    sop_classes = json.loads((standard / "sop_class_iod_map.json").read_text())
    iod_modules = json.loads((standard / "iod_module_map.json").read_text())
    module_attributes = json.loads((standard / "module_attribute_map.json").read_text())
    removable, kept, ruled = _removable(), minimal_keep_list(), _ruled()
    modules: dict[str, dict[str, str]] = {}
    nested: dict[str, dict[str, str]] = {}
    iods: dict[str, list[str]] = {}
    for iod in sorted(set(sop_classes.values())):
        listed = []
        for key in dict.fromkeys(m["key"] for m in iod_modules.get(iod, ())):
            if key not in modules and key not in nested and key in module_attributes:
                top, inside = _module(module_attributes[key], removable, kept, ruled,
                                      content=key not in IDENTITY_MODULES)
                if top:
                    modules[key] = top
                if inside:
                    nested[key] = inside
            if key in modules or key in nested:
                listed.append(key)
        if listed:
            iods[iod] = listed
    mapped = {uid: iod for uid, iod in sop_classes.items() if iod in iods}
    for retired, current in RETIRED.items():
        if retired not in mapped and current in mapped:
            mapped[retired] = mapped[current]
    return {
        "_about": ("PS3.3 attribute types for the engine's profiles: SOP Class UID -> IOD, "
                   "IOD -> its modules, module -> keyword -> strongest type (1, 1C, 2, 2C) "
                   "at the top level (modules) and at any depth of its sequences (nested), "
                   "limited to attributes a profile could remove or empty. Generated by "
                   "tools/vendor_iod_types.py from the installed highdicom's standard "
                   "tables; do not edit."),
        "highdicom": version,
        "sopClasses": dict(sorted(mapped.items())),
        "iods": iods,
        "modules": dict(sorted(modules.items())),
        "nested": dict(sorted(nested.items())),
    }


def dumps(document: dict) -> str:
    """The file's text: one line per SOP Class, IOD and module, so diffs stay readable."""
    lines = ["{"]
    items = list(document.items())
    for i, (key, value) in enumerate(items):
        end = "," if i < len(items) - 1 else ""
        if not isinstance(value, dict):
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}{end}")
            continue
        lines.append(f" {json.dumps(key)}: {{")
        rows = list(value.items())
        for j, (name, entry) in enumerate(rows):
            comma = "," if j < len(rows) - 1 else ""
            lines.append(f"  {json.dumps(name)}: {json.dumps(entry, separators=(',', ':'))}"
                         f"{comma}")
        lines.append(f" }}{end}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> None:
    document = derive()
    TARGET.write_text(dumps(document))
    print(f"{TARGET.relative_to(ROOT)}: {len(document['sopClasses'])} SOP classes, "
          f"{len(document['iods'])} IODs, {len(document['modules'])} + "
          f"{len(document['nested'])} modules, highdicom {document['highdicom']}, "
          f"{TARGET.stat().st_size} bytes")


if __name__ == "__main__":
    main()
