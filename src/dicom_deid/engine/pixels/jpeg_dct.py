"""JPEG baseline frames painted in the DCT domain: only the blocks under a box change.

A JPEG baseline frame is 8x8 blocks of quantised DCT coefficients. A block whose AC
coefficients are all zero decodes to one flat value set by its DC coefficient, so a box
is painted black by giving every block that covers it (the box grown to the MCU grid)
a DC that decodes to black and no AC. Every other block keeps its coefficients: the
frame is entropy-coded again (libjpeg-turbo's lossless ``tjTransform`` with a custom
filter, through ``ctypes``), not decoded and compressed again, so there is no second
generation of loss outside the painted blocks, the frame stays JPEG baseline, and
frames that need no paint keep their compressed bytes.

What black is, per component: the lowest sample (MONOCHROME2, RGB coded without a
colour transform, and Y of YCbCr), the highest (MONOCHROME1), or the middle (Cb and Cr,
so that Y=0 is black, not green). The DC chosen lies a little beyond the range so that
every decoder clamps it to the range's end: the blocks decode to exactly 0 or 255.

Where chroma is subsampled, a decoder's upsampling blends one chroma sample across a
block edge: a ring one chroma sample wide (two pixels at 4:2:0) inside and outside the
painted blocks may change colour a little. The box is grown by that ring before it is
grown to the MCU grid, so every pixel of the box itself decodes to black.

Nothing is passed on unchecked: every painted frame is decoded again and must hold the
fill inside every box and the input's own decoded pixels everywhere outside the painted
blocks and their ring; otherwise (and whenever libturbojpeg, the frame layout or the
markers are not what this module handles) it raises :class:`Unfit` and the caller takes
the general path (decode, paint, write native).

libturbojpeg is Debian's ``libturbojpeg0`` (libjpeg-turbo's TurboJPEG API, 2.0 or
later); without it :func:`available` is false.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import JPEGBaseline8Bit

from .decode import check_decoded_size

__all__ = ["JpegFrames", "Unfit", "available"]

Box = tuple[int, int, int, int]  # left, top, right, bottom (exclusive), pixels


class Unfit(Exception):
    """This instance or frame is not one the DCT route handles: take the general path."""


# ------------------------------------------------------------------ libturbojpeg


class _Region(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("w", ctypes.c_int),
                ("h", ctypes.c_int)]


class _Transform(ctypes.Structure):
    pass


_FILTER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), _Region, _Region,
                           ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Transform))
_Transform._fields_ = [("r", _Region), ("op", ctypes.c_int), ("options", ctypes.c_int),
                       ("data", ctypes.c_void_p), ("customFilter", _FILTER)]

_TJPF_RGB, _TJPF_GRAY = 0, 6
_TJCS_RGB, _TJCS_YCBCR, _TJCS_GRAY = 0, 1, 2
_TJFLAG_STOPONWARNING = 8192  # a frame with anything odd goes the general way
_TJXOP_NONE = 0

_lib_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_lib_loaded = False
_local = threading.local()


def _load() -> ctypes.CDLL | None:
    global _lib, _lib_loaded
    with _lib_lock:
        if _lib_loaded:
            return _lib
        _lib_loaded = True
        name = ctypes.util.find_library("turbojpeg") or "libturbojpeg.so.0"
        try:
            lib = ctypes.CDLL(name)
            lib.tjInitTransform.restype = ctypes.c_void_p
            lib.tjInitDecompress.restype = ctypes.c_void_p
            lib.tjGetErrorStr2.restype = ctypes.c_char_p
            lib.tjGetErrorStr2.argtypes = [ctypes.c_void_p]
            lib.tjDecompressHeader3.argtypes = [
                ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ulong,
                *[ctypes.POINTER(ctypes.c_int)] * 4]
            lib.tjDecompress2.argtypes = [
                ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p,
                ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int]
            lib.tjTransform.argtypes = [
                ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_int,
                ctypes.POINTER(ctypes.POINTER(ctypes.c_ubyte)),
                ctypes.POINTER(ctypes.c_ulong), ctypes.POINTER(_Transform), ctypes.c_int]
            lib.tjFree.argtypes = [ctypes.c_void_p]
        except (OSError, AttributeError):  # not installed, or older than TurboJPEG 2.0
            lib = None
        _lib = lib
        return lib


def available() -> bool:
    """Whether libturbojpeg (TurboJPEG API 2.0+) can be loaded."""
    return _load() is not None


def _handles(lib: ctypes.CDLL) -> tuple[int, int]:
    """This thread's (decompressor, transformer): TurboJPEG handles are not shared."""
    handles = getattr(_local, "handles", None)
    if handles is None:
        decompress, transform = lib.tjInitDecompress(), lib.tjInitTransform()
        if not decompress or not transform:
            raise Unfit("libturbojpeg could not make a handle")
        handles = _local.handles = (decompress, transform)
    return handles


# ------------------------------------------------------------------ frame headers


@dataclass(frozen=True)
class _Layout:
    """What a frame's markers say, as far as painting needs it."""

    width: int
    height: int
    sampling: tuple[tuple[int, int], ...]  # (h, v) per component, in SOF order
    dc_quant: tuple[int, ...]  # the DC step of each component's quantisation table

    @property
    def unit(self) -> tuple[int, int]:
        """The grid (pixels) on which every component's block edges fall."""
        hmax = max(h for h, _ in self.sampling)
        vmax = max(v for _, v in self.sampling)
        return (8 * hmax // min(h for h, _ in self.sampling),
                8 * vmax // min(v for _, v in self.sampling))

    @property
    def ring(self) -> int:
        """Pixels one chroma sample spans (0 without subsampling): how far upsampling
        carries a painted block's colour, and the box is grown by before painting."""
        hmax = max(h for h, _ in self.sampling)
        vmax = max(v for _, v in self.sampling)
        return max(max(hmax // h, vmax // v) for h, v in self.sampling) \
            if len(self.sampling) > 1 and len(set(self.sampling)) > 1 else 0


def _layout(frame: bytes) -> _Layout:
    """The SOF and the quantisation tables before the first scan (Unfit if not a
    Huffman sequential 8-bit frame)."""
    if frame[:2] != b"\xff\xd8":
        raise Unfit("no SOI")
    tables: dict[int, int] = {}
    sof: tuple[int, int, list[tuple[int, int, int]]] | None = None
    i, end = 2, len(frame)
    while i + 4 <= end:
        if frame[i] != 0xFF:
            raise Unfit("marker expected")
        marker = frame[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):
            i += 2
            continue
        length = int.from_bytes(frame[i + 2:i + 4], "big")
        body = frame[i + 4:i + 2 + length]
        if length < 2 or len(body) != length - 2:
            raise Unfit("truncated marker segment")
        if marker == 0xDB:  # DQT: one or more tables
            j = 0
            while j < len(body):
                precision, index = body[j] >> 4, body[j] & 15
                size = 128 if precision else 64
                if j + 1 + size > len(body):
                    raise Unfit("truncated DQT")
                tables[index] = (int.from_bytes(body[j + 1:j + 3], "big") if precision
                                 else body[j + 1])
                j += 1 + size
        elif marker in (0xC0, 0xC1):  # baseline / extended Huffman sequential
            if len(body) < 6 or body[0] != 8:
                raise Unfit("not 8-bit")
            height, width, count = (int.from_bytes(body[1:3], "big"),
                                    int.from_bytes(body[3:5], "big"), body[5])
            if count not in (1, 3) or len(body) < 6 + 3 * count:
                raise Unfit("component count")
            comps = [(body[6 + 3 * k + 1] >> 4, body[6 + 3 * k + 1] & 15, body[6 + 3 * k + 2])
                     for k in range(count)]
            sof = (width, height, comps)
        elif 0xC2 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            raise Unfit("not Huffman sequential")
        elif marker == 0xDA:
            break
        i += 2 + length
    else:
        raise Unfit("no scan")
    if sof is None:
        raise Unfit("no SOF")
    width, height, comps = sof
    hmax, vmax = max(c[0] for c in comps), max(c[1] for c in comps)
    if (not width or not height or any(not (1 <= h <= 4 and 1 <= v <= 4) for h, v, _ in comps)
            or any(hmax % h or vmax % v for h, v, _ in comps)
            or any(t not in tables or not tables[t] for _, _, t in comps)):
        raise Unfit("sampling or tables")
    return _Layout(width, height, tuple((h, v) for h, v, _ in comps),
                   tuple(tables[t] for _, _, t in comps))


# ------------------------------------------------------------------ painting


def _dc(kind: str, quant: int) -> int:
    """The DC coefficient of a flat block at black for this component.

    Sample = 128 + DC * quant / 8. 'low' and 'high' aim two levels past the range so
    any decoder clamps to 0 / 255; at quant 1 that would make a DC difference beyond
    what baseline codes (11 bits) next to a white block, so it stays at 1027 there.
    """
    if kind == "mid":
        return 0
    size = min(-(-(130 * 8) // quant), 1027)
    return -size if kind == "low" else size


@dataclass(frozen=True)
class _Plan:
    """Blocks to paint in one frame layout: per component, block rows to (from, to)
    column ranges, and the DC each gets; where decoded pixels may change (the blocks'
    pixels grown by the upsampling ring), and rectangles tiling the rest."""

    rows: tuple[dict[int, list[tuple[int, int]]], ...]
    dcs: tuple[int, ...]
    reach: tuple[Box, ...]
    outside: tuple[Box, ...]


def _complement(boxes: list[Box], width: int, height: int) -> tuple[Box, ...]:
    """Rectangles that tile the frame outside ``boxes``: bands between the boxes' top
    and bottom edges, and in each band the spans no box covers."""
    cuts = sorted({0, height, *(y for _, t, _, b in boxes for y in (t, b))})
    out: list[Box] = []
    for top, bottom in zip(cuts, cuts[1:], strict=False):
        spans = sorted((left, right) for left, t, right, b in boxes if t < bottom and b > top)
        x = 0
        for left, right in spans:
            if left > x:
                out.append((x, top, left, bottom))
            x = max(x, right)
        if x < width:
            out.append((x, top, width, bottom))
    return tuple(out)


def _plan(layout: _Layout, boxes: list[Box], kinds: tuple[str, ...]) -> _Plan:
    ux, uy = layout.unit
    ring = layout.ring
    hmax = max(h for h, _ in layout.sampling)
    vmax = max(v for _, v in layout.sampling)
    rows: list[dict[int, list[tuple[int, int]]]] = [{} for _ in layout.sampling]
    reach = []
    for left, top, right, bottom in boxes:
        left, top = max(0, left - ring), max(0, top - ring)
        right, bottom = min(layout.width, right + ring), min(layout.height, bottom + ring)
        if right <= left or bottom <= top:
            continue
        x0, y0 = left // ux * ux, top // uy * uy
        x1, y1 = -(-right // ux) * ux, -(-bottom // uy) * uy
        reach.append((max(0, x0 - ring), max(0, y0 - ring), min(x1 + ring, layout.width),
                      min(y1 + ring, layout.height)))
        for c, (h, v) in enumerate(layout.sampling):
            # pixels -> this component's samples -> blocks (exact: the grid divides)
            c0, c1 = x0 * h // hmax // 8, x1 * h // hmax // 8
            r0, r1 = y0 * v // vmax // 8, y1 * v // vmax // 8
            for r in range(r0, r1):
                rows[c].setdefault(r, []).append((c0, c1))
    dcs = tuple(_dc(kind, q) for kind, q in zip(kinds, layout.dc_quant, strict=True))
    return _Plan(tuple(rows), dcs, tuple(reach), _complement(reach, layout.width,
                                                            layout.height))


class JpegFrames:
    """The frames of a JPEG baseline instance, decoded and painted with libturbojpeg.

    ``open`` returns None where this route does not apply (another syntax, no
    libturbojpeg, a photometric or layout it does not paint); every later step raises
    :class:`Unfit` when a frame turns out not to fit.
    """

    def __init__(self, ds: Dataset, lib: ctypes.CDLL, frames: list[bytes], samples: int,
                 kinds: tuple[str, ...], fill: tuple[int, ...]) -> None:
        self.ds, self.lib, self.frames = ds, lib, frames
        self.rows, self.columns, self.samples = int(ds.Rows), int(ds.Columns), samples
        self.kinds, self.fill = kinds, np.array(fill, dtype=np.uint8)
        self.spaces: list[int] = []  # each frame's colour space, as decode() found it

    @classmethod
    def open(cls, ds: Dataset) -> JpegFrames | None:
        meta = getattr(ds, "file_meta", None)
        if meta is None or meta.get("TransferSyntaxUID") != JPEGBaseline8Bit:
            return None
        pi = str(ds.get("PhotometricInterpretation") or "").strip().upper()
        try:
            samples = int(ds.get("SamplesPerPixel") or 0)
            shape = (int(ds.get("NumberOfFrames") or 1), int(ds.Rows), int(ds.Columns))
            bits = (int(ds.BitsAllocated), int(ds.get("BitsStored") or ds.BitsAllocated),
                    int(ds.get("PixelRepresentation") or 0))
        except (AttributeError, TypeError, ValueError):
            return None
        colour = pi in ("RGB", "YBR_FULL", "YBR_FULL_422")
        if not ((samples == 3 and colour) or (samples == 1 and pi in ("MONOCHROME1",
                                                                        "MONOCHROME2"))):
            return None
        if bits != (8, 8, 0) or min(shape) < 1:
            return None
        lib = _load()
        if lib is None or not isinstance(ds.PixelData, bytes | bytearray):
            return None
        try:
            frames = list(generate_frames(ds.PixelData, number_of_frames=shape[0]))
        except Exception:  # noqa: BLE001 - the general path names what is wrong
            return None
        if len(frames) != shape[0]:
            return None
        if samples == 3:
            kinds, fill = ("low", "low", "low"), (0, 0, 0)  # per colour space: decode()
        elif pi == "MONOCHROME1":
            kinds, fill = ("high",), (255,)
        else:
            kinds, fill = ("low",), (0,)
        return cls(ds, lib, frames, samples, kinds, fill)

    # -------------------------------------------------------------- decoding

    def _decode_into(self, frame: bytes, out: np.ndarray) -> int:
        """Decode one frame into ``out`` (rows, columns, samples); its colour space."""
        decompress, _ = _handles(self.lib)
        width, height, subsamp, space = (ctypes.c_int() for _ in range(4))
        if self.lib.tjDecompressHeader3(decompress, frame, len(frame), ctypes.byref(width),
                                        ctypes.byref(height), ctypes.byref(subsamp),
                                        ctypes.byref(space)) != 0:
            raise Unfit("header")
        if (width.value, height.value) != (self.columns, self.rows):
            raise Unfit("frame size differs from Rows/Columns")
        if space.value not in ((_TJCS_GRAY,) if self.samples == 1 else (_TJCS_RGB,
                                                                       _TJCS_YCBCR)):
            raise Unfit("colour space")
        pixel_format = _TJPF_GRAY if self.samples == 1 else _TJPF_RGB
        if self.lib.tjDecompress2(decompress, frame, len(frame), out.ctypes.data,
                                  self.columns, self.columns * self.samples, self.rows,
                                  pixel_format, _TJFLAG_STOPONWARNING) != 0:
            raise Unfit("decode")
        return space.value

    def decode(self) -> np.ndarray:
        """Every frame as (frames, rows, columns, samples) uint8, RGB or grey (Unfit
        if any frame does not decode cleanly)."""
        check_decoded_size(self.ds)  # the same limit as every decode
        out = np.empty((len(self.frames), self.rows, self.columns, self.samples), np.uint8)
        self.spaces = [self._decode_into(frame, out[i]) for i, frame in enumerate(self.frames)]
        return out

    # -------------------------------------------------------------- painting

    def footprint(self, boxes: list[Box]) -> list[Box]:
        """The pixels painting ``boxes`` makes black: each box grown by the chroma ring
        and to the block grid of the first frame (``boxes`` if it has no usable
        layout: then it is not painted this way)."""
        try:
            layout = _layout(self.frames[0])
        except Unfit:
            return list(boxes)
        (ux, uy), ring = layout.unit, layout.ring
        out = []
        for left, top, right, bottom in boxes:
            left, top = max(0, left - ring) // ux * ux, max(0, top - ring) // uy * uy
            right = min(-(-(right + ring) // ux) * ux, layout.width)
            bottom = min(-(-(bottom + ring) // uy) * uy, layout.height)
            out.append((left, top, right, bottom))
        return out

    def _transform(self, frame: bytes, plan: _Plan) -> bytes:
        _, transformer = _handles(self.lib)
        failed: list[BaseException] = []

        blocks = [np.zeros(64, np.int16) for _ in plan.dcs]  # one flat block each
        for block, dc in zip(blocks, plan.dcs, strict=True):
            block[0] = dc
        flat = [block.tobytes() for block in blocks]

        def paint(coeffs: ctypes._Pointer, array_region: _Region, _plane: _Region,
                  component: int, _index: int, _transform: ctypes._Pointer) -> int:
            # ``coeffs``: one row of this component's blocks, 64 coefficients each in
            # natural order (DC first), ``array_region.w // 8`` blocks long
            try:
                spans = plan.rows[component].get(array_region.y // 8)
                if spans:
                    row = ctypes.cast(coeffs, ctypes.c_void_p).value
                    width = array_region.w // 8
                    for c0, c1 in spans:
                        c1 = min(c1, width)
                        if c1 > c0:
                            ctypes.memmove(row + c0 * 128, flat[component] * (c1 - c0),
                                           (c1 - c0) * 128)
                return 0
            except BaseException as exc:  # noqa: BLE001 - reported after the call
                failed.append(exc)
                return -1

        callback = _FILTER(paint)
        transform = _Transform()
        transform.op, transform.options, transform.customFilter = _TJXOP_NONE, 0, callback
        out = ctypes.POINTER(ctypes.c_ubyte)()
        size = ctypes.c_ulong(0)
        status = self.lib.tjTransform(transformer, frame, len(frame), 1, ctypes.byref(out),
                                      ctypes.byref(size), ctypes.byref(transform),
                                      _TJFLAG_STOPONWARNING)
        try:
            if status != 0 or failed or not out:
                raise Unfit("transform")
            return ctypes.string_at(out, size.value)
        finally:
            if out:
                self.lib.tjFree(out)

    def paint(self, boxes: list[Box], decoded: np.ndarray) -> list[bytes]:
        """Every frame with ``boxes`` painted black in the DCT domain, checked by
        decoding it again; a frame whose boxes already hold the fill keeps its bytes.

        ``decoded`` is what :meth:`decode` gave (the check compares with it).
        """
        if len(self.spaces) != len(self.frames):
            raise Unfit("paint() before decode()")
        plans: dict[tuple[_Layout, int], _Plan] = {}
        scratch = np.empty((self.rows, self.columns, self.samples), np.uint8)
        out: list[bytes] = []
        for i, frame in enumerate(self.frames):
            if all((decoded[i, t:b, left:r] == self.fill).all()
                   for left, t, r, b in boxes):
                out.append(frame)  # nothing to paint: its own bytes
                continue
            layout = _layout(frame)
            if len(layout.sampling) != self.samples or (layout.width, layout.height) != (
                    self.columns, self.rows):
                raise Unfit("layout")
            space = self.spaces[i]
            plan = plans.get((layout, space))
            if plan is None:
                kinds = ("low", "mid", "mid") if space == _TJCS_YCBCR else self.kinds
                plan = plans[layout, space] = _plan(layout, boxes, kinds)
            painted = self._transform(frame, plan)
            self._check(painted, plan, boxes, decoded[i], scratch)
            out.append(painted)
        return out

    def _check(self, painted: bytes, plan: _Plan, boxes: list[Box], before: np.ndarray,
               scratch: np.ndarray) -> None:
        """Unfit unless ``painted`` decodes to the fill in every box and to ``before``
        outside the painted blocks and their ring."""
        self._decode_into(painted, scratch)
        for left, top, right, bottom in boxes:
            if not (scratch[top:bottom, left:right] == self.fill).all():
                raise Unfit("a box does not decode to the fill")
        for left, top, right, bottom in plan.outside:
            if not np.array_equal(scratch[top:bottom, left:right],
                                  before[top:bottom, left:right]):
                raise Unfit("pixels outside the painted blocks changed")

    def write(self, frames: list[bytes]) -> None:
        """Put ``frames`` back as the instance's encapsulated Pixel Data (one fragment
        per frame; a Basic Offset Table if the input had one; no Extended Offset
        Table), and record the lossy compression the frames carry."""
        had_table = _has_offset_table(self.ds.PixelData)
        for tag in (0x7FE00001, 0x7FE00002):
            if tag in self.ds:
                del self.ds[tag]
        self.ds.PixelData = encapsulate(frames, has_bot=had_table)
        self.ds["PixelData"].is_undefined_length = True
        self.ds.LossyImageCompression = "01"
        if "LossyImageCompressionMethod" not in self.ds:
            self.ds.LossyImageCompressionMethod = "ISO_10918_1"


def _has_offset_table(data: bytes) -> bool:
    """Whether encapsulated Pixel Data opens with a non-empty Basic Offset Table."""
    return (len(data) >= 8 and data[:4] == b"\xfe\xff\x00\xe0"
            and int.from_bytes(data[4:8], "little") > 0)
