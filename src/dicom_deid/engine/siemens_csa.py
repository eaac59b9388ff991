"""Siemens CSA headers cut down to the acquisition geometry, for Retain Safe Private.

Siemens MR stores what research tools need to rebuild a volume in two private
elements of the ``SIEMENS CSA HEADER`` block, (0029,xx10) image and (0029,xx20)
series: the number of images in a mosaic, the slice normal, slice timing, b-values
and diffusion directions. dcm2niix cannot split a mosaic into slices without them.
The same headers also hold free text (protocol and coil names, the whole scanner
protocol) and patient characteristics (``UsedPatientWeight``), so CTP's dictionary
rightly marks them unsafe as a whole.

Under the Retain Safe Private Option the headers are kept with only the named
entries of :data:`KEEP` (numbers describing geometry, timing and diffusion
encoding), copied byte for byte; everything else in them is dropped. Only the CSA2
layout (``SV10``) is read; a header in any other layout, or one that does not parse
within its own bounds, is removed as before.
"""

from __future__ import annotations

import struct

CREATOR = "SIEMENS CSA HEADER"
OFFSETS = (0x10, 0x20)  # (0029,xx10) image header, (0029,xx20) series header

#: CSA entries kept: what dcm2niix and diffusion tools read to rebuild geometry,
#: slice timing and gradient encoding. Numbers only, none about the patient.
KEEP = frozenset({
    "NumberOfImagesInMosaic", "SliceNormalVector", "MosaicRefAcqTimes",
    "SliceMeasurementDuration", "B_value", "B_matrix", "DiffusionGradientDirection",
    "DiffusionDirectionality", "PhaseEncodingDirectionPositive",
    "BandwidthPerPixelPhaseEncode", "RealDwellTime", "ProtocolSliceNumber",
    "EchoLinePosition", "EchoColumnPosition", "EchoPartitionPosition",
    "SliceResolution", "NonPlanarImage", "TimeAfterStart",
})

_HEAD = struct.Struct("<4s4sII")  # "SV10", 4 bytes, number of entries, check (77)
_ENTRY = struct.Struct("<64si4s3i")  # name, VM, VR, SyngoDT, number of items, check
_ITEM = struct.Struct("<4i")
_MAX = 1000  # entries per header, items per entry (as nibabel bounds them)


def keep_geometry(value: bytes) -> bytes | None:
    """``value`` with only the :data:`KEEP` entries, or None if it is not a CSA2 header
    that parses within its bounds (the caller then removes it)."""
    if len(value) < _HEAD.size:
        return None
    magic, unused, count, check = _HEAD.unpack_from(value, 0)
    if magic != b"SV10" or not 0 < count <= _MAX:
        return None
    pos, kept = _HEAD.size, []
    for _ in range(count):
        start = pos
        if pos + _ENTRY.size > len(value):
            return None
        name, _vm, _vr, _dt, items, _check = _ENTRY.unpack_from(value, pos)
        if not 0 <= items <= _MAX:
            return None
        pos += _ENTRY.size
        for _ in range(items):
            if pos + _ITEM.size > len(value):
                return None
            length = _ITEM.unpack_from(value, pos)[1]
            pos += _ITEM.size
            if length < 0 or pos + length > len(value):
                return None
            pos += length + (-length % 4)
        if name.split(b"\0", 1)[0].decode("latin-1") in KEEP:
            kept.append(value[start:min(pos, len(value))])
    if not kept:
        return None
    out = _HEAD.pack(magic, unused, len(kept), check) + b"".join(kept)
    return out + b"\0" * (len(out) % 2)
