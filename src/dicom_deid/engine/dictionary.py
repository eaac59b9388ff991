"""The DICOM data dictionary (VR and keyword of each standard tag), without pydicom.

Importing pydicom costs about a quarter of a second (it imports numpy and its pixel
handlers), which is most of what the command line used to spend before its first
file. The byte path (:mod:`.instance_bytes`) needs only the dictionary, so this
module loads pydicom's own generated dictionary module, ``pydicom/_dicom_dict.py`` (a
plain dict literal, about 4 ms), by its file, without running ``pydicom/__init__``.
The entries are pydicom's, never a copy: a pydicom upgrade updates both paths, and a
test checks every lookup here against ``pydicom.datadict``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from functools import lru_cache
from types import ModuleType

#: (VR, VM, name, retired, keyword) per tag, and the same per "60xx3000"-style mask.
Entry = tuple[str, str, str, str, str]


@lru_cache(maxsize=1)
def _module() -> ModuleType:
    loaded = sys.modules.get("pydicom._dicom_dict")
    if loaded is not None:
        return loaded
    spec = importlib.util.find_spec("pydicom")  # locates the package, runs nothing
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("pydicom is not installed")
    path = os.path.join(list(spec.submodule_search_locations)[0], "_dicom_dict.py")
    # A private name: pydicom's own import of the module stays independent of this one.
    own = importlib.util.spec_from_file_location("dicom_deid._pydicom_dicom_dict", path)
    if own is None or own.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(own)
    own.loader.exec_module(module)
    return module


def _entries() -> dict[int, Entry]:
    return _module().DicomDictionary


@lru_cache(maxsize=1)
def _masks() -> tuple[tuple[int, int, Entry], ...]:
    """(value, care-bits, entry) per repeating-group row, as pydicom's ``mask_match``."""
    out = []
    for mask_x, entry in _module().RepeatersDictionary.items():
        value = int(mask_x.replace("x", "0"), 16)
        care = int("".join("0" if c == "x" else "F" for c in mask_x), 16)
        out.append((value, care, entry))
    return tuple(out)


@lru_cache(maxsize=8192)
def entry(tag: int) -> Entry | None:
    """The dictionary's row for ``tag`` (repeating groups included), None if none."""
    found = _entries().get(tag)
    if found is not None:
        return found
    if (tag >> 16) % 2 == 0:
        for value, care, row in _masks():
            if (tag ^ value) & care == 0:
                return row
    return None


def vr(tag: int) -> str:
    """The dictionary VR of ``tag`` (``"US or SS"`` style for ambiguous ones); KeyError
    for private and unknown tags, as ``pydicom.datadict.dictionary_VR``."""
    found = entry(tag)
    if found is None:
        raise KeyError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) is not in the DICOM dictionary")
    return found[0]


def vr_or_un(tag: int) -> str:
    """The dictionary VR of ``tag``, or ``UN`` for one the dictionary lacks."""
    found = entry(tag)
    return "UN" if found is None else found[0]


def keyword(tag: int) -> str:
    """The keyword of ``tag``, or "" (as ``pydicom.datadict.keyword_for_tag``)."""
    found = entry(tag)
    return "" if found is None else found[4]


@lru_cache(maxsize=1)
def _keywords() -> dict[str, int]:
    return {row[4]: tag for tag, row in _entries().items()}


def tag_for_keyword(name: str) -> int | None:
    """The tag of a standard keyword, or None (as ``pydicom.datadict.tag_for_keyword``)."""
    return _keywords().get(name)
