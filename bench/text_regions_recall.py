#!/usr/bin/env python
"""Burned-in text: how much text each redaction mode covers, on the generated corpus.

Run: ``.venv/bin/python bench/text_regions_recall.py [--images 16] [--first 0] [--ocr]``
(``make bench-text``); ``--real [--survey]`` reports on real images instead (below).
For each background of ``dicom_deid.corpus.burned_text``
(flat, gradient, noise, speckle; 640x480 grey; 6 strings of 8-40 px, contrast steps of
30-160 levels) it reports, for the engine's own box finder (``image_redaction.find_boxes``):

* REDACT_ALL_TEXT: the share of strings whose box is fully covered (the issue's recall;
  goal 0.99) and the redacted area outside any string, as a share of the image
  (spurious; goal at most 2%);
* REDACT_SENSITIVE_TEXT, with the corpus instance's own header values as the known
  identifiers: the share of PHI strings fully covered (goal 0.99) and of measurement
  strings left with no pixel redacted (goal 0.9);
* milliseconds per image for each mode.

``--ocr`` adds Tesseract over the whole frame (word boxes grown by 3 px) for comparison.
Seeds ``--first`` to ``--first + --images`` are used; the unit tests use seeds 0-7, so
the default ``--first 100`` reports on images the thresholds were not tuned against.

``--real``: for each real image with burned-in text (the list of
``tests/unit/test_redaction_real_images.py``), de-identified with REDACT_ALL_TEXT: what
each reader reads back (Tesseract words, ``ocr.read_back(ocr.read_all(...))``; RapidOCR
lines, ``ocr_rapid.read_back(ocr_rapid.read_lines(..., upscale=True))``) on the input
and on the output, over the first, middle and last frame, the share of those frames'
pixels painted, and the seconds the de-identification took; the same for real frames
without text (``TEXT_FREE``), where every painted pixel is anatomy lost. ``--survey``
instead reads every file of the real corpus (inputs only, RapidOCR) and lists those
with text: how the list was found. Counts
only: what was read is never printed.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
from pydicom.dataset import Dataset

from dicom_deid.corpus.burned_instances import PHI_VALUES
from dicom_deid.corpus.burned_text import TextRegion, text_image
from dicom_deid.engine.identifiers import known_identifiers
from dicom_deid.engine.image_redaction import find_boxes
from dicom_deid.engine.ocr import find_text
from dicom_deid.engine.pixels.grey import array_grey8
from dicom_deid.engine.plan import ALL_TEXT, SENSITIVE_TEXT, ImagePlan

BACKGROUNDS = ("flat", "gradient", "noise", "speckle")


def known() -> dict[str, str]:
    """The identifiers the corpus instances carry in their headers."""
    ds = Dataset()
    for keyword, value in PHI_VALUES.items():
        setattr(ds, keyword, value)
    return known_identifiers(ds)


def coverage(shape: tuple[int, ...], boxes: list[tuple[int, int, int, int]],
             regions: list[TextRegion]) -> tuple[list[bool], list[bool], float]:
    """Per string: fully covered, touched at all; and the spurious share of the image."""
    mask = np.zeros(shape, bool)
    for left, top, right, bottom in boxes:
        mask[max(0, top):max(0, bottom), max(0, left):max(0, right)] = True
    truth = np.zeros(shape, bool)
    full, touched = [], []
    for r in regions:
        covered = mask[r.box[1]:r.box[3], r.box[0]:r.box[2]]
        truth[r.box[1]:r.box[3], r.box[0]:r.box[2]] = True
        full.append(bool(covered.all()))
        touched.append(bool(covered.any()))
    return full, touched, float((mask & ~truth).mean())


def _read_back(grey: np.ndarray) -> tuple[int, int]:
    from dicom_deid.engine import ocr, ocr_rapid

    words = ocr.read_back(ocr.read_all(grey, min_confidence=ocr.JUDGE_CONFIDENCE), grey)
    lines = ocr_rapid.read_back(ocr_rapid.read_lines(grey, min_confidence=0.3, upscale=True),
                                grey.shape)
    return len(words), len(lines)


#: Real CT and MR frames without burned-in text (the survey's text-free anatomy, among
#: them the files ``tests/unit/test_dcm2niix_utility.py`` converts): what REDACT_ALL_TEXT
#: paints there is anatomy lost.
TEXT_FREE = ("test_files/CT_small.dcm", "test_files/MR_small.dcm", "emri_small.dcm",
             "eCT_Supplemental.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm", "humans/ctbrain1.dcm",
             "test_files/liver_1frame.dcm", "test_files/dicomdirtests/98892003/MR2/4950")


def real(survey: bool) -> None:
    """The ``--real`` report (see the module's docstring)."""
    import io
    import sys
    from pathlib import Path

    from pydicom import dcmread

    from dicom_deid.corpus import realworld
    from dicom_deid.engine import ocr_rapid
    from dicom_deid.engine.instance import deidentify_bytes
    from dicom_deid.engine.pixels.grey import frame_grey8
    from dicom_deid.engine.plan import build_plan

    corpus = realworld.files()
    if survey:
        for f in corpus:
            try:
                ds = dcmread(f.path)
                count = int(ds.get("NumberOfFrames", 1) or 1)
                found = [len(ocr_rapid.read_back(ocr_rapid.read_lines(frame_grey8(ds, i))))
                         for i in sorted({0, count // 2, count - 1})]
            except Exception:  # not an image, or pixels that do not decode
                continue
            if any(found):
                print(f"{f.name}: RapidOCR lines on first/middle/last frame {found}", flush=True)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.unit.test_redaction_real_images import TEXT_BEARING

    plan = build_plan({"image": {"textRedactionMode": "REDACT_ALL_TEXT"}}, b"k" * 32)
    by_name = {f.name: f for f in corpus}
    print("| image | frames read | input: Tesseract words / RapidOCR lines "
          "| output: Tesseract words / RapidOCR lines | painted | redaction s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    totals = np.zeros(4, int)
    for name in (*TEXT_BEARING, *TEXT_FREE):
        if name not in by_name:
            continue
        data = by_name[name].path.read_bytes()
        start = time.perf_counter()
        out, _ = deidentify_bytes(data, plan)
        seconds = time.perf_counter() - start
        source, dest = dcmread(io.BytesIO(data)), dcmread(io.BytesIO(out))
        count = int(source.get("NumberOfFrames", 1) or 1)
        frames = sorted({0, count // 2, count - 1})
        before = np.sum([_read_back(frame_grey8(source, i)) for i in frames], axis=0)
        after = np.sum([_read_back(frame_grey8(dest, i)) for i in frames], axis=0)
        painted = np.mean([(frame_grey8(source, i) != frame_grey8(dest, i)).mean()
                           for i in frames])
        if name in TEXT_BEARING:
            totals += np.concatenate([before, after])
        print(f"| {name}{' (no text)' if name in TEXT_FREE else ''} | {len(frames)} "
              f"| {before[0]} / {before[1]} | {after[0]} / {after[1]} | {painted:.1%} "
              f"| {seconds:.2f} |", flush=True)
    print(f"| total (with text) | | {totals[0]} / {totals[1]} | {totals[2]} / {totals[3]} | | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16, help="per background")
    parser.add_argument("--first", type=int, default=100, help="first seed")
    parser.add_argument("--ocr", action="store_true", help="also Tesseract on whole frames")
    parser.add_argument("--real", action="store_true", help="real images, both readers")
    parser.add_argument("--survey", action="store_true", help="with --real: find them")
    args = parser.parse_args()
    if args.real:
        real(args.survey)
        return
    ids = known()
    print("| background | ALL: strings fully covered | ALL: spurious area | ALL ms "
          "| SENSITIVE: PHI covered | SENSITIVE: measurements intact | SENSITIVE ms |"
          + (" Tesseract whole frame: covered |" if args.ocr else ""))
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" if args.ocr else ""))
    for background in BACKGROUNDS:
        full, spurious, phi, kept, ocr_full = [], [], [], [], []
        seconds = {ALL_TEXT: 0.0, SENSITIVE_TEXT: 0.0}
        for seed in range(args.first, args.first + args.images):
            image, regions = text_image(seed, background=background)
            start = time.perf_counter()
            boxes = find_boxes(image[None], ImagePlan(ALL_TEXT), ids)
            seconds[ALL_TEXT] += time.perf_counter() - start
            covered, _, outside = coverage(image.shape, boxes, regions)
            full += covered
            spurious.append(outside)
            start = time.perf_counter()
            boxes = find_boxes(image[None], ImagePlan(SENSITIVE_TEXT), ids)
            seconds[SENSITIVE_TEXT] += time.perf_counter() - start
            covered, touched, _ = coverage(image.shape, boxes, regions)
            # what identifies in a PHI string must be covered; its label may stay
            values, _, _ = coverage(image.shape, boxes,
                                    [replace(r, box=r.identifying) for r in regions])
            phi += [c for c, r in zip(values, regions, strict=True) if r.phi]
            kept += [not t for t, r in zip(touched, regions, strict=True) if not r.phi]
            if args.ocr:
                words = [(b.left - 3, b.top - 3, b.right + 3, b.bottom + 3)
                         for b in find_text(array_grey8(image))]
                ocr_full += coverage(image.shape, words, regions)[0]
        row = (f"| {background} | {np.mean(full):.3f} ({len(full) - sum(full)} of {len(full)} "
               f"missed) | {np.mean(spurious):.2%} | "
               f"{seconds[ALL_TEXT] / args.images * 1000:.0f} | {np.mean(phi):.3f} "
               f"({len(phi) - sum(phi)} of {len(phi)} missed) | {np.mean(kept):.3f} | "
               f"{seconds[SENSITIVE_TEXT] / args.images * 1000:.0f} |")
        if args.ocr:
            row += f" {np.mean(ocr_full):.2f} |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
