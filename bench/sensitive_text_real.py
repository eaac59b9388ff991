"""REDACT_SENSITIVE_TEXT on real images: how much PHI survives, how much else is kept.

The images are the real-world corpus (``dicom_deid.corpus.realworld``) frames on which
a reader finds text. Each word read on the input (Tesseract words, read hard, and the
words of RapidOCR's lines) is labelled:

* PHI: it is, holds or is a piece of one of the instance's own identifying values
  (names, IDs, the birth date in the usual written forms: ``engine.identifiers``), it
  holds a date (``7/5/1995``, ``1995-07-05``, ``05.07.1995``, ``05-JUL-1995``, also
  glued to a time as RapidOCR reads ``03/02/201705:24:57PM``), or a run of six digits
  or more (an ID, whether or not the header holds it);
* other: everything else (measurements, labels, vendor text, orientation markers).

After de-identification with the basic profile and ``REDACT_SENSITIVE_TEXT`` the same
frame is read again with both readers: a PHI word read back (letters and digits
compared, one misread character in six forgiven) is a leak; an other word read back
was kept. Reported: PHI words surviving, and the share of other words kept.

    .venv/bin/python bench/sensitive_text_real.py [--frames 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from pydicom import dcmread

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from dicom_deid.corpus import realworld  # noqa: E402
from dicom_deid.engine import ocr, ocr_rapid  # noqa: E402
from dicom_deid.engine.fuzzy import fuzzy_in  # noqa: E402
from dicom_deid.engine.identifiers import known_identifiers  # noqa: E402
from dicom_deid.engine.instance import deidentify_bytes  # noqa: E402
from dicom_deid.engine.pixels.grey import frame_grey8  # noqa: E402
from dicom_deid.engine.plan import build_plan  # noqa: E402

DATE = re.compile(r"(?<!\d)(\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}|\d{4}[/.\-]\d{1,2}[/.\-]\d{1,2}"
                  r"|\d{1,2}[\-\s]?(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)"
                  r"[A-Z]*[\-\s]?\d{2,4})", re.IGNORECASE)
ID = re.compile(r"\d{6,}")
CONFIG = {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"},
          "image": {"textRedactionMode": "REDACT_SENSITIVE_TEXT"}}


def _alnum(text: str) -> str:
    return "".join(c for c in text.upper() if c.isalnum())


def _words(grey: np.ndarray) -> list[str]:
    """Words both readers read (each word once), letters or digits in it."""
    words = [w.text for w in ocr.read_back(ocr.read_all(grey))]
    for line in ocr_rapid.read_back(ocr_rapid.read_lines(grey, upscale=True), grey.shape):
        words += line.text.split()
    seen, out = set(), []
    for w in words:
        key = _alnum(w)
        if len(key) >= 2 and key not in seen:
            seen.add(key)
            out.append(w)
    return out


def _is_phi(word: str, known: dict[str, str]) -> bool:
    if DATE.search(word) or ID.search(word):
        return True
    flat = _alnum(word)
    return any(len(v) >= 3 and (flat == v or (len(flat) >= 4 and fuzzy_in(flat, v, 0))
                                or (len(v) >= 4 and v in flat))
               for v in {_alnum(k) for k in known})


def _read_back(word: str, text: str) -> bool:
    flat = _alnum(word)
    return fuzzy_in(flat, text, max(0, len(flat) // 6))


def _frames(ds: object, count: int) -> list[int]:
    n = int(getattr(ds, "NumberOfFrames", 1) or 1)
    return sorted({0, n // 2, n - 1})[:count] if n > 1 else [0]


def run(frames_per_file: int) -> dict:
    plan = build_plan(CONFIG, b"bench-sensitive-key-0123456789ab")
    rows, started = [], time.perf_counter()
    for f in realworld.files():
        data = f.path.read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                before = dcmread(io.BytesIO(data))
                if "PixelData" not in before:
                    continue
                known = known_identifiers(before)
                indices = _frames(before, frames_per_file)
                inputs = {i: frame_grey8(before, i) for i in indices}
            except Exception:
                continue
            words = {i: _words(g) for i, g in inputs.items()}
            if not any(words.values()):
                continue
            try:
                out, _ = deidentify_bytes(data, plan)
            except Exception as exc:
                rows.append({"file": f"{f.source}:{f.name}", "error": type(exc).__name__})
                continue
            after = dcmread(io.BytesIO(out))
            for i, ws in words.items():
                text = _alnum(" ".join(_words(frame_grey8(after, i))))
                for w in ws:
                    phi = _is_phi(w, known)
                    rows.append({"file": f"{f.source}:{f.name}", "frame": i, "phi": phi,
                                 "survived": _read_back(w, text),
                                 "word": "" if phi else w})
    words = [r for r in rows if "error" not in r]
    phi = [r for r in words if r["phi"]]
    other = [r for r in words if not r["phi"]]
    return {
        "files": len({r["file"] for r in rows}),
        "phi_words": len(phi),
        "phi_surviving": sum(r["survived"] for r in phi),
        "phi_surviving_in": sorted({r["file"] for r in phi if r["survived"]}),
        "other_words": len(other),
        "other_kept": sum(r["survived"] for r in other),
        "other_kept_share": round(sum(r["survived"] for r in other) / max(1, len(other)), 3),
        "errors": [r for r in rows if "error" in r],
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3, help="frames read per multi-frame file")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    result = run(args.frames)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
