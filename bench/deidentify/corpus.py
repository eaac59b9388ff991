"""The benchmark corpus on disk: synthetic CT, MR and Enhanced MR, mixed, from one seed.

Layout ``ROOT/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``, the way a
store is usually exported: nested (so every tool has to recurse) and with unique base
names (so a tool that flattens its output does not overwrite files).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

from pydicom.uid import CTImageStorage, EnhancedMRImageStorage, MRImageStorage

from dicom_deid.corpus.ct import CTInstance, iter_ct_corpus
from dicom_deid.corpus.mr import iter_mr_corpus
from dicom_deid.corpus.multiframe import iter_multiframe_corpus

KINDS = ("ct", "mr", "mf")
KIND_LABEL = {"ct": "CT 512x512x16", "mr": "MR 256x256x16",
              "mf": "Enhanced MR 30-60 frames 256x256x16"}
SOP_CLASS_KIND = {CTImageStorage: "ct", MRImageStorage: "mr", EnhancedMRImageStorage: "mf"}


def split(total: int, mix: tuple[float, float, float]) -> dict[str, int]:
    """Instances of each kind for ``total``; multi-frame takes the rounding remainder,
    and every kind gets at least one instance when ``total`` allows it."""
    ct = max(1, round(total * mix[0])) if total >= 3 else total
    mr = max(1, round(total * mix[1])) if total >= 3 else 0
    return {"ct": ct, "mr": mr, "mf": max(total - ct - mr, 0)}


def instances(kind: str, count: int, seed: int) -> Iterator[CTInstance]:
    """``count`` instances of one kind, spread over enough studies that series lengths
    stay plausible: CT 2 series of ~70 slices a study, MR 3 series of ~13, multi-frame
    ~20 single-instance series a study."""
    studies = max(1, (count // 140) if kind == "ct" else (count // 40 if kind == "mr"
                                                          else count // 20))
    studies = min(studies, max(count, 1))
    if kind == "ct":
        return iter_ct_corpus(count, seed, studies=studies)
    if kind == "mr":
        return iter_mr_corpus(count, seed, studies=studies)
    return iter_multiframe_corpus(count, seed, studies=studies)


def write_corpus(root: Path, total: int, seed: int,
                 mix: tuple[float, float, float] = (0.7, 0.2, 0.1)) -> dict:
    """Write the corpus under ``root``; return its manifest (also saved beside it)."""
    t0 = time.perf_counter()
    counts = split(total, mix)
    out: dict = {"instances": 0, "bytes": 0, "seed": seed, "mix": list(mix), "kinds": {}}
    for kind in KINDS:
        n = b = 0
        for inst in instances(kind, counts[kind], seed) if counts[kind] else ():
            d = root / inst.study_uid / inst.series_uid
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{inst.sop_uid}.dcm").write_bytes(inst.data)
            n, b = n + 1, b + len(inst.data)
        out["kinds"][kind] = {"instances": n, "bytes": b, "label": KIND_LABEL[kind]}
        out["instances"] += n
        out["bytes"] += b
    out["generate_s"] = round(time.perf_counter() - t0, 1)
    (root.parent / f"{root.name}.manifest.json").write_text(json.dumps(out, indent=2))
    return out


def one_of_each(root: Path, seed: int) -> dict[str, Path]:
    """One small directory per kind holding a single instance: the audit inputs."""
    dirs = {}
    for kind in KINDS:
        inst = next(iter(instances(kind, 1, seed)))
        d = root / kind
        d.mkdir(parents=True)
        (d / f"{inst.sop_uid}.dcm").write_bytes(inst.data)
        dirs[kind] = d
    return dirs
