"""Private elements: removed, except the safe ones when Retain Safe Private is on."""

from __future__ import annotations

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

from . import siemens_csa
from .decisions import Context
from .safe_private import is_safe


def remove_private(ds: Dataset, tags: list[int], ctx: Context) -> bool:
    """Remove the private elements ``tags`` of ``ds``, keeping the safe ones when the
    option is on; returns whether anything was removed.

    A private creator (``gggg,0010-00FF``) stays only while an element of its block
    stays, so no orphaned reservation is left behind.
    """
    keep_blocks: set[int] = {(t & 0xFFFF0000) | ((t & 0xFFFF) >> 8) for t in ctx.plan.keep
                             if t >> 16 & 1 and t & 0xFFFF >= 0x1000 and t in ds}
    creators: list[int] = []
    changed = False
    for tag in tags:
        element = tag & 0xFFFF
        if 0x0010 <= element <= 0x00FF:
            creators.append(tag)
            continue
        block = (tag & 0xFFFF0000) | (element >> 8)
        keep = False
        if ctx.plan.retain_safe_private and element >= 0x1000:
            creator = ds.get_item(block)
            if creator is not None:
                name = creator_name(creator)
                keep = is_safe(name, tag >> 16, element & 0xFF) or _csa_geometry(
                    ds, tag, name)
        if keep:
            keep_blocks.add(block)
        else:
            del ds[tag]
            changed = True
    for tag in creators:
        if tag not in keep_blocks and tag not in ctx.plan.keep:
            del ds[tag]
            changed = True
    return changed


def _csa_geometry(ds: Dataset, tag: int, creator: str) -> bool:
    """Replace a Siemens CSA header by its geometry entries (:mod:`.siemens_csa`);
    whether there was anything to keep."""
    if creator != siemens_csa.CREATOR or tag >> 16 != 0x0029 or (
            tag & 0xFF) not in siemens_csa.OFFSETS:
        return False
    value = ds.get_item(tag).value
    kept = siemens_csa.keep_geometry(value) if isinstance(value, bytes) else None
    if kept is None:
        return False
    ds[tag] = DataElement(tag, "OB", kept)
    return True


def creator_name(elem: DataElement | RawDataElement) -> str:
    """A private creator's name, raw or decoded, without padding."""
    value = elem.value
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace")
    return str(value or "").strip(" \x00")
