"""The run: draw the sample, pair and check each instance, write and read the table.

This is the package's entry point for the Airflow tasks (``sample_and_verify``) and for
the quality gate (``read_verification_table``); everything a caller needs is exported
here. The CSV holds no PHI: a SHA-256 prefix of the source SOP Instance UID
(``sop_digest``), destination UIDs, modalities, booleans, counts and reasons.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from dicomweb_client.api import DICOMwebClient

from .checks import check_clinical, check_dates, check_phi, check_uids, header_bytes
from .dicomweb import Ref, list_instances, quiet_logs, retrieve, series_modalities
from .errors import VerificationError
from .matching import SourceIndex, match
from .pixel_text import check_pixels, read_dest
from .sampling import draw

__all__ = [
    "CHECKS",
    "COLUMNS",
    "VerificationError",
    "VerificationResult",
    "read_verification_table",
    "sample_and_verify",
    "sop_digest",
]

log = logging.getLogger(__name__)

CHECKS = ("uids_changed", "phi_removed", "dates_ok", "clinical_kept", "pixels_clean")
"""The per-pair checks, in column order."""

COLUMNS = (  # of the verification CSV, in order
    "sample_index", "source_sop_sha256", "dest_sop_uid", "modality", "status", "match",
    *CHECKS, "ocr_words", *(f"{check}_reason" for check in CHECKS),
)

_DIGEST_CHARS = 16


@dataclass(frozen=True)
class VerificationResult:
    """What a verification run found, small enough for XCom and free of PHI.

    ``table_path`` is the CSV (one row per sampled instance). ``passed`` + ``failed`` ==
    ``sampled``; ``failed`` includes ``unmatched``. ``check_failures`` counts the rows
    where each check is False (a row can fail several). ``destination_instances`` is
    the number of instances the sample was drawn from.
    """

    table_path: Path
    sampled: int
    passed: int
    failed: int
    unmatched: int
    destination_instances: int
    check_failures: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (for XCom and the run report)."""
        return {
            # The file's name, beside the report: no server path in XCom.
            "table_file": self.table_path.name, "sampled": self.sampled,
            "passed": self.passed, "failed": self.failed, "unmatched": self.unmatched,
            "destination_instances": self.destination_instances,
            "check_failures": dict(self.check_failures),
        }


def sop_digest(uid: str) -> str:
    """The SHA-256 prefix that stands for a source SOP Instance UID in tables and logs."""
    return hashlib.sha256(uid.encode("ascii", "replace")).hexdigest()[:_DIGEST_CHARS]


def _row(index: int, dest_ref: Ref, modality: str) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(sample_index=index, dest_sop_uid=dest_ref.sop, modality=modality)
    for check in CHECKS:
        row[f"{check}_reason"] = ""
    return row


def _set_check(row: dict[str, Any], check: str, reasons: list[str]) -> None:
    row[check] = not reasons
    row[f"{check}_reason"] = ";".join(reasons)


def _consistency(rows: list[dict[str, Any]], pairs: list[tuple[str, str, str, str]]) -> None:
    """Fail ``uids_changed`` on rows whose source study/series maps to more than one
    destination study/series in the sample, or shares one with another source."""
    for level, (s_at, d_at) in (("study", (0, 1)), ("series", (2, 3))):
        forward: dict[str, set[str]] = defaultdict(set)
        backward: dict[str, set[str]] = defaultdict(set)
        for pair in pairs:
            if pair[0]:
                forward[pair[s_at]].add(pair[d_at])
                backward[pair[d_at]].add(pair[s_at])
        for row, pair in zip(rows, pairs, strict=True):
            if not pair[0]:
                continue
            extra = []
            if len(forward[pair[s_at]]) > 1:
                extra.append(f"{level}_mapping_inconsistent")
            if len(backward[pair[d_at]]) > 1:
                extra.append(f"{level}_mapping_collision")
            if extra:
                reasons = [r for r in row["uids_changed_reason"].split(";") if r] + extra
                _set_check(row, "uids_changed", reasons)


def _redacted(pixel_redaction: bool | Collection[str], modality: str) -> bool:
    if isinstance(pixel_redaction, bool):
        return pixel_redaction
    return modality in {str(m).upper() for m in pixel_redaction}


def sample_and_verify(source: DICOMwebClient, destination: DICOMwebClient, *, size: int,
                      seed: str, pixel_redaction: bool | Collection[str], date_shift: bool,
                      out_dir: Path, all_text: bool = False) -> VerificationResult:
    """Verify a reproducible random sample of a de-identification run; write the table.

    ``size`` destination instances (all of them if there are fewer) are drawn with
    ``random.Random(seed)`` (pass the run id: a rerun of the same run checks the same
    instances), stratified by route when ``pixel_redaction`` names modalities (see
    ``sampling``: a small pixel-redaction route is never left out); each is matched to
    its source instance and checked (see the package docstring). ``pixel_redaction``
    says whether burned-in text was to be removed and so turns on the OCR check: True
    for every instance, or the modalities that were routed to pixel redaction (e.g.
    ``{"US", "SC", "OT"}``; other modalities get an empty ``pixels_clean``, i.e. not
    evaluated). ``date_shift`` says whether dates were to be shifted rather than
    removed. ``all_text`` says the run asked for REDACT_ALL_TEXT: then any word or line
    an OCR reader reads back fails ``pixels_clean``, not only the source's identifying
    values. The table is written to ``out_dir / "verification.csv"``.

    Raises VerificationError (no PHI in its message) when a store cannot be searched or
    an instance cannot be retrieved; a check that cannot be evaluated on one instance
    (undecodable pixels) fails that row instead.
    """
    if size < 1:
        raise ValueError("size must be at least 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table_path = out_dir / "verification.csv"

    with quiet_logs():
        refs = list_instances(destination, "destination")
        route_of = None
        if not isinstance(pixel_redaction, bool):  # two routes: stratify the draw by them
            redacted = {series: _redacted(pixel_redaction, modality) for series, modality
                        in series_modalities(destination, "destination").items()}

            def route_of(ref: Ref) -> bool:
                return redacted.get(ref.series, False)

        picked = draw(refs, size, seed, route_of)
        index = SourceIndex(source)
        rows: list[dict[str, Any]] = []
        pairs: list[tuple[str, str, str, str]] = []
        for n, i in enumerate(picked):
            ref = refs[i]
            dest = retrieve(destination, ref, "destination")
            row = _row(n, ref, str(dest.get("Modality", "") or ""))
            sources, how = match(index, dest)
            row["match"] = how
            if not sources:
                row["status"] = "unmatched"
                rows.append(row)
                pairs.append(("", "", "", ""))
                continue
            src = sources[0]  # twins: the first one for the UID bookkeeping
            row["source_sop_sha256"] = sop_digest(str(src.get("SOPInstanceUID", "")))
            if len(sources) == 1:
                pairs.append((str(src.get("StudyInstanceUID", "")), ref.study,
                              str(src.get("SeriesInstanceUID", "")), ref.series))
            else:  # which twin's study this is is unknown: left out of the mapping check
                pairs.append(("", "", "", ""))
            redacted = _redacted(pixel_redaction, row["modality"])
            try:
                # Twins cannot be told apart: a check passes only if it passes against
                # every one of them.
                found: dict[str, list[str]] = defaultdict(list)
                if redacted:
                    text = read_dest(dest)
                    for one in sources:
                        reasons, row["ocr_words"] = check_pixels(one, text,
                                                                  all_text=all_text)
                        found["pixels_clean"] += reasons
                for one in sources:
                    header = header_bytes(one, dest)
                    found["uids_changed"] += check_uids(one, dest, header)
                    found["phi_removed"] += check_phi(one, dest, header)
                    found["dates_ok"] += check_dates(one, dest, date_shift)
                    found["clinical_kept"] += check_clinical(one, dest, redacted)
                for check in CHECKS:
                    if check != "pixels_clean" or redacted:
                        _set_check(row, check, list(dict.fromkeys(found[check])))
            except VerificationError:
                raise
            except Exception as exc:  # pydicom's messages can quote the value at fault
                raise VerificationError(
                    f"checks of sample {n} failed: {type(exc).__name__}") from None
            rows.append(row)
        _consistency(rows, pairs)

    for row in rows:
        if row["status"] is None:
            ok = all(row[check] is not False for check in CHECKS)
            row["status"] = "ok" if ok else "failed"
    _write_csv(table_path, rows)

    failures = {check: sum(1 for r in rows if r[check] is False) for check in CHECKS}
    unmatched = sum(1 for r in rows if r["status"] == "unmatched")
    passed = sum(1 for r in rows if r["status"] == "ok")
    result = VerificationResult(
        table_path=table_path, sampled=len(rows), passed=passed, failed=len(rows) - passed,
        unmatched=unmatched, destination_instances=len(refs), check_failures=failures)
    log.info("verification: %d of %d destination instances sampled, %d passed, %d failed "
             "(%d unmatched); failures per check: %s", result.sampled,
             result.destination_instances, result.passed, result.failed, unmatched,
             failures)
    return result


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    def cell(value: object) -> object:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return value

    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: cell(row.get(k)) for k in COLUMNS})
    tmp.replace(path)


def read_verification_table(path: Path) -> pd.DataFrame:
    """The verification CSV as a DataFrame with its real types: checks as nullable
    booleans (empty = not evaluated), counts as nullable integers, text as strings, so
    a quality gate sees ``True``/``False``/missing rather than strings."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for check in CHECKS:
        frame[check] = frame[check].map({"true": True, "false": False, "": pd.NA}).astype(
            "boolean")
    for column in ("sample_index", "ocr_words"):
        frame[column] = pd.to_numeric(frame[column].replace("", pd.NA)).astype("Int64")
    return frame
