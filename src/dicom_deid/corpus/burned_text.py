"""Images with text burned into them, and the true box of every string.

Ultrasound, secondary captures and scanned documents carry names and dates in their
pixels. To measure a text finder, the generator draws strings of varied fonts
(Debian's DejaVu family), sizes, contrasts (down to grey on grey) and positions on
backgrounds that make OCR hard (noise, ultrasound-like speckle, gradients) and
records where each string went. Strings are PHI-shaped (names, dates, IDs) or
measurement-shaped (``4.2 cm``, ``HR 72``), so a redactor can be scored on both.
Everything follows from the seed.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_PHI = ("SYNTHETIC^ALPHA", "PHANTOM, BRAVO", "DOB 1961-04-12", "MRN 48213377",
        "ACC A1029384", "ST MARY CLINIC", "03/07/2021 14:22", "ID 7721-3340")
_LABELS = ("DOB ", "MRN ", "ACC ", "ID ")
_MEASURES = ("4.2 cm", "HR 72", "TI 0.4", "MI 1.1", "L 3.18 cm", "R", "L", "5 MHz",
             "GAIN 52", "DR 60")


@dataclass(frozen=True)
class TextRegion:
    """One drawn string: its text, its box (left, top, right, bottom), PHI or not.

    ``value_box`` is the box of what identifies in a PHI string, without its label
    (``DOB``, ``MRN``...): the label is not PHI, and REDACT_SENSITIVE_TEXT may keep it.
    """

    text: str
    box: tuple[int, int, int, int]
    phi: bool
    value_box: tuple[int, int, int, int] | None = None

    @property
    def identifying(self) -> tuple[int, int, int, int]:
        """The box that must be painted when the string is PHI."""
        return self.value_box or self.box


@lru_cache(maxsize=1)
def fonts() -> tuple[str, ...]:
    """TrueType fonts to draw with (Debian fonts-dejavu-core), sans, serif and mono."""
    found = sorted(glob.glob("/usr/share/fonts/truetype/dejavu/DejaVu*.ttf"))
    if not found:
        raise RuntimeError("no DejaVu fonts: install the Debian package fonts-dejavu-core")
    return tuple(found)


def _background(rng: np.random.Generator, kind: str, height: int, width: int) -> np.ndarray:
    if kind == "flat":
        return np.full((height, width), float(rng.integers(0, 60)))
    if kind == "gradient":
        ramp = np.linspace(0, float(rng.integers(60, 140)), width)
        return np.tile(ramp, (height, 1))
    if kind == "speckle":  # Rayleigh-distributed speckle in a fan-like bright region
        speckle = rng.rayleigh(25.0, (height, width))
        yy, xx = np.mgrid[0:height, 0:width]
        fan = np.clip(1.2 - np.hypot((xx - width / 2) / width, yy / height) * 1.4, 0, 1)
        return speckle * fan
    return rng.normal(40.0, 12.0, (height, width))  # "noise"


def _value_box(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont, x: int,
               y: int, box: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
    """The box of ``text`` drawn at (x, y) without its leading label, if it has one."""
    label = next((p for p in _LABELS if text.startswith(p)), None)
    if label is None:
        return None
    left, top, right, bottom = draw.textbbox((x + draw.textlength(label, font=font), y),
                                             text[len(label):], font=font)
    return (max(box[0], int(left)), max(box[1], int(top)),
            min(box[2], int(np.ceil(right))), min(box[3], int(np.ceil(bottom))))


def text_image(seed: int, width: int = 640, height: int = 480, *,
               background: str = "noise", strings: int = 6,
               sizes: tuple[int, int] = (8, 40),
               contrast: tuple[int, int] = (30, 160)) -> tuple[np.ndarray, list[TextRegion]]:
    """An 8-bit grey image with ``strings`` non-overlapping strings, and their boxes."""
    rng = np.random.default_rng(seed)
    base = _background(rng, background, height, width)
    canvas = Image.new("L", (width, height), 0)  # one string's coverage at a time
    draw = ImageDraw.Draw(canvas)
    regions: list[TextRegion] = []
    attempts = 0
    while len(regions) < strings and attempts < strings * 40:
        attempts += 1
        phi = bool(rng.random() < 0.6)
        text = str(rng.choice(_PHI if phi else _MEASURES))
        font = ImageFont.truetype(str(rng.choice(fonts())),
                                  int(rng.integers(sizes[0], sizes[1] + 1)))
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        w, h = right - left, bottom - top
        if w >= width - 4 or h >= height - 4:
            continue
        x = int(rng.integers(2, width - w - 2)) - left
        y = int(rng.integers(2, height - h - 2)) - top
        box = (x + left, y + top, x + right, y + bottom)
        if any(box[0] < r.box[2] + 4 and r.box[0] < box[2] + 4 and box[1] < r.box[3] + 4
               and r.box[1] < box[3] + 4 for r in regions):
            continue
        draw.text((x, y), text, fill=255, font=font)
        layer = np.asarray(canvas, dtype=np.float32) / 255.0
        canvas.paste(0, (0, 0, width, height))
        # Text is its background plus (or minus, on bright ground) a contrast: "low
        # contrast" means a small step over whatever is under it, never invisible.
        delta = float(rng.integers(contrast[0], contrast[1] + 1))
        under = float(base[box[1]:box[3], box[0]:box[2]].mean())
        if under + delta > 255 or (under > 128 and rng.random() < 0.5):
            delta = -delta
        base = base + layer * delta
        regions.append(TextRegion(text, box, phi, _value_box(draw, text, font, x, y, box)))
    return np.clip(base, 0, 255).astype(np.uint8), regions
