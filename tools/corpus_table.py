"""The README's real-world corpus tables: files per source by modality and by transfer
syntax, as the headers say (pydicom, forced, without pixel data).

    .venv/bin/python tools/corpus_table.py

A file pydicom cannot parse at all counts as "unreadable"; one without a Modality or
a file meta Transfer Syntax counts under "none".
"""

from __future__ import annotations

import io
import sys
import warnings
from collections import Counter
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import UID

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from dicom_deid.corpus import quirks, realworld  # noqa: E402


def _header(data_or_path: object) -> tuple[str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = dcmread(data_or_path, force=True, stop_before_pixels=True)
        except Exception:
            return "unreadable", "unreadable"
        modality = str(ds.get("Modality", "") or "none").strip() or "none"
        meta = getattr(ds, "file_meta", None)
        syntax = meta.get("TransferSyntaxUID") if meta is not None else None
        name = UID(str(syntax)).name if syntax else "none"
        return modality, name


def _table(counts: dict[str, Counter], title: str) -> list[str]:
    columns = sorted({k for c in counts.values() for k in c},
                     key=lambda k: (-sum(c[k] for c in counts.values()), k))
    lines = [f"| {title} | " + " | ".join(counts) + " | all |",
             "| --- | " + " | ".join("---:" for _ in counts) + " | ---: |"]
    for key in columns:
        row = [counts[s][key] for s in counts]
        lines.append(f"| {key} | " + " | ".join(str(v or "") for v in row) +
                     f" | {sum(row)} |")
    return lines


def main() -> None:
    modalities: dict[str, Counter] = {s: Counter() for s in (*realworld.SOURCES, "quirks")}
    syntaxes: dict[str, Counter] = {s: Counter() for s in modalities}
    for f in realworld.files():
        modality, syntax = _header(str(f.path))
        modalities[f.source][modality] += 1
        syntaxes[f.source][syntax] += 1
    for q in quirks.quirks():
        modality, syntax = _header(io.BytesIO(q.build()))
        modalities["quirks"][modality] += 1
        syntaxes["quirks"][syntax] += 1
    print("\n".join(_table(modalities, "modality")))
    print()
    print("\n".join(_table(syntaxes, "transfer syntax")))


if __name__ == "__main__":
    main()
