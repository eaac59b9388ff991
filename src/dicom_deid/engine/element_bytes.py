"""Element headers in little endian: the one encoding both writers share.

The dataset writer (:mod:`.writing`), the sequence rewriter (:mod:`.sequence_bytes`)
and the byte path (:mod:`.instance_bytes`) build the same headers; here they have
one home that needs no pydicom, so the byte path starts without importing it.
"""

from __future__ import annotations

import struct

UNDEFINED = 0xFFFFFFFF
LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV",
                      "UV"})
_IMPLICIT = struct.Struct("<HHL")
_SHORT = struct.Struct("<HH2sH")
_LONG_HEADER = struct.Struct("<HH2sHL")
ITEM = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
ITEM_END = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
SEQUENCE_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def header(tag: int, vr: str, length: int, implicit: bool) -> bytes | None:
    """An element header in little endian; None if ``length`` does not fit a short one."""
    group, element = tag >> 16, tag & 0xFFFF
    if implicit:
        return _IMPLICIT.pack(group, element, length)
    if vr in LONG_VRS:
        return _LONG_HEADER.pack(group, element, vr.encode(), 0, length)
    if length > 0xFFFF:
        return None
    return _SHORT.pack(group, element, vr.encode(), length)


def padded(text: str, vr: str) -> bytes:
    """An ASCII value padded to even length as PS3.5 6.2 says: NUL for UI, else space."""
    data = text.encode("ascii")
    return data + (b"\0" if vr == "UI" else b" ") * (len(data) % 2)
