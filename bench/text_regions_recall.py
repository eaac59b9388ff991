#!/usr/bin/env python
"""Burned-in text: recall and spurious area of the text finders on the generated corpus.

Run: ``.venv/bin/python bench/text_regions_recall.py [--images 8] [--ocr]``. For each
background of ``dicom_deid.corpus.burned_text`` (flat, gradient, noise, speckle;
640x480, strings 8-40 px, contrast steps 30-160) it reports the share of strings whose
box is fully covered by the found regions (the issue's recall), the share of text
pixels covered, the redacted area outside any string as a share of the image
(spurious), and milliseconds per image. ``--ocr`` adds Tesseract over the whole frame
(word boxes grown by 3 px) for comparison.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from dicom_deid.corpus.burned_text import text_image
from dicom_deid.engine.ocr import find_text, to_grey8
from dicom_deid.engine.text_regions import text_boxes

Finder = Callable[[np.ndarray], list[tuple[int, int, int, int]]]


def _ocr_boxes(image: np.ndarray) -> list[tuple[int, int, int, int]]:
    return [(b.left - 3, b.top - 3, b.right + 3, b.bottom + 3)
            for b in find_text(to_grey8(image))]


def score(finder: Finder, background: str, images: int) -> tuple[float, float, float, float]:
    full = pixels = total = 0.0
    spurious, seconds = [], 0.0
    for seed in range(images):
        image, regions = text_image(seed, background=background)
        start = time.perf_counter()
        boxes = finder(image)
        seconds += time.perf_counter() - start
        mask = np.zeros(image.shape, bool)
        for left, top, right, bottom in boxes:
            mask[max(0, top):max(0, bottom), max(0, left):max(0, right)] = True
        truth = np.zeros(image.shape, bool)
        for r in regions:
            covered = mask[r.box[1]:r.box[3], r.box[0]:r.box[2]]
            truth[r.box[1]:r.box[3], r.box[0]:r.box[2]] = True
            full += covered.all()
            pixels += covered.mean()
            total += 1
        spurious.append((mask & ~truth).mean())
    return full / total, pixels / total, float(np.mean(spurious)), seconds / images * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="per background")
    parser.add_argument("--ocr", action="store_true", help="also Tesseract on whole frames")
    args = parser.parse_args()
    finders: dict[str, Finder] = {"shape finder": text_boxes}
    if args.ocr:
        finders["Tesseract, whole frame"] = _ocr_boxes
    print("| finder | background | strings fully covered | text pixels covered "
          "| spurious area | ms/image |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name, finder in finders.items():
        for background in ("flat", "gradient", "noise", "speckle"):
            full, pixels, spurious, ms = score(finder, background, args.images)
            print(f"| {name} | {background} | {full:.2f} | {pixels:.2f} | {spurious:.1%} "
                  f"| {ms:.0f} |")


if __name__ == "__main__":
    main()
