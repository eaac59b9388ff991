"""Checking and storing uploaded instances (shared by STOW-RS and GCS import).

An upload arrives as temp files; each is parsed with pydicom, checked for the
attributes a store needs, then moved into place and indexed. Each instance succeeds
or fails alone, with a DICOM failure code and a reason that never quotes a value
from the file.
"""

from __future__ import annotations

import filecmp
import logging
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from ..engine import dataset_bytes
from ..engine.reading import (
    REQUIRED_UIDS,
    InstanceTooLarge,
    UnreadableInstance,
    read,
    valid_uid,
)
from ..engine.writing import file_meta
from .attributes import extract
from .state import ServerState

log = logging.getLogger("dicom_deid.server.ingest")

# FailureReason codes (PS3.18 Table I.2-1, PS3.7 Annex C).
PROCESSING_FAILURE = 0x0110
DUPLICATE = 0x0111
OUT_OF_RESOURCES = 0xA700  # "Refused: Out of Resources": a deflated body past the limit
DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000



@dataclass
class Outcome:
    """What happened to one uploaded part."""

    temp_path: str
    sop_class_uid: str | None = None
    sop_uid: str | None = None
    study_uid: str | None = None
    row: dict = field(default_factory=dict)
    failure_code: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure_code is None

    def fail(self, code: int, reason: str) -> Outcome:
        self.failure_code, self.reason = code, reason
        return self



def inspect(temp_path: str, study_uid: str | None = None) -> Outcome:
    """Parse one candidate instance; the outcome says whether it may be stored."""
    out = Outcome(temp_path)
    if os.path.getsize(temp_path) == 0:
        return out.fail(CANNOT_UNDERSTAND, "empty part: no DICOM data")
    try:
        # The engine's reader: it repairs what real writers get wrong (stray delimiters)
        # and names the element when it cannot; the bytes stored are still the upload's.
        ds = read(temp_path)
    except InstanceTooLarge as exc:
        # Refused, not misunderstood: storing it would let every later read inflate it
        # again, so it is turned away here, where its cost is first known.
        return out.fail(OUT_OF_RESOURCES, str(exc))
    except UnreadableInstance as exc:
        return out.fail(CANNOT_UNDERSTAND, str(exc))
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    uids: dict[str, str] = {}
    for keyword in REQUIRED_UIDS:
        try:
            value = ds.get(keyword)
        except Exception:
            value = None
        if not valid_uid(value):
            # Name the instance in its failure item when its own UIDs were readable.
            out.sop_class_uid, out.sop_uid = uids.get("SOPClassUID"), uids.get("SOPInstanceUID")
            return out.fail(DOES_NOT_MATCH, f"missing or invalid {keyword}")
        uids[keyword] = str(value)
    out.sop_class_uid = str(ds.SOPClassUID)
    out.sop_uid = str(ds.SOPInstanceUID)
    out.study_uid = str(ds.StudyInstanceUID)
    if study_uid is not None and out.study_uid != study_uid:
        return out.fail(DOES_NOT_MATCH, "StudyInstanceUID does not match the study in the URL")
    try:
        out.row = extract(ds)
    except Exception as exc:
        return out.fail(CANNOT_UNDERSTAND, f"unreadable indexed attribute ({type(exc).__name__})")
    if not ts:
        ts = _add_file_meta(temp_path, ds)
    out.row["transfer_syntax"] = str(ts)
    return out


def _add_file_meta(temp_path: str, ds: Dataset) -> str:
    """Give a bare dataset (or one whose meta lacks a Transfer Syntax UID) a Part 10 meta.

    Old writers and some archives send datasets without the preamble and meta that
    PS3.10 requires; DCMTK and pydicom read them, so the store keeps them, as Part 10
    files every client can read back: the dataset's bytes are kept as they came, after
    a meta naming the encoding they are in. Returns that Transfer Syntax UID.
    """
    data = Path(temp_path).read_bytes()
    start = dataset_bytes.body_offset(data)
    implicit = dataset_bytes.looks_implicit(data, start)
    little = ds.original_encoding[1] is not False
    syntax = (ImplicitVRLittleEndian if implicit else
              ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    meta = file_meta(ds.SOPClassUID, ds.SOPInstanceUID, syntax)
    buf = DicomBytesIO()
    buf.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(buf, meta, enforce_standard=True)
    with open(temp_path, "wb") as f:
        f.write(buf.getvalue())
        f.write(memoryview(data)[start:])
    return syntax


def prepare(state: ServerState, temp_path: str, study_uid: str | None = None) -> Outcome:
    """Inspect one upload and, if it may be stored, flush it to disk.

    Runs per part while the rest of a request is still arriving, so that parsing
    and fsync overlap the network instead of following it.
    """
    out = inspect(temp_path, study_uid)
    if out.ok:
        try:
            out.row["size"] = state.blobs.fsync(temp_path)
        except OSError as exc:
            out.fail(PROCESSING_FAILURE, f"could not write the instance ({exc.strerror})")
    return out


def _same_as_stored(state: ServerState, db: object, store_pk: int, out: Outcome,
                    rel: str) -> bool:
    """Whether an upload is byte for byte the instance stored under its SOP Instance
    UID: storing the same bytes again succeeds, as on Google (whose own sample test
    stores one file into one store in every test); other bytes are a conflict, and the
    stored instance is never replaced."""
    held = db.execute("SELECT path, size FROM instances WHERE store=? AND sop_uid=?",
                      (store_pk, out.sop_uid)).fetchone()
    if held is None or held["size"] != out.row["size"]:
        return False
    try:
        return filecmp.cmp(state.blobs.path(held["path"]), state.blobs.path(rel),
                           shallow=False)
    except OSError:
        return False


def store(state: ServerState, store_pk: int, outcomes: list[Outcome],
          then: Callable[[sqlite3.Connection], None] | None = None) -> list[Outcome]:
    """Move the prepared parts into place and index them in one transaction.

    ``then`` runs last inside that transaction, with every outcome decided: a caller
    that counts what was stored (an operation's counters) commits with it or not at all.

    Parts that failed inspection, and duplicates, are deleted; the index is the
    last thing written, so an acknowledged instance is one that is fully on disk. A
    part byte-identical to the instance already stored under its SOP Instance UID
    succeeds without a second copy; a different one fails as a duplicate.
    """
    ready = [out for out in outcomes if out.ok]
    placed: list[tuple[Outcome, str]] = []
    results = state.blobs.place([o.temp_path for o in ready], store_pk) if ready else []
    for out, result in zip(ready, results, strict=True):
        if isinstance(result, OSError):
            out.fail(PROCESSING_FAILURE, f"could not write the instance ({result.strerror})")
            continue
        out.row.update(store=store_pk, path=result)
        placed.append((out, result))
    duplicates: list[str] = []
    with state.catalog.write() as db:
        for out, rel in placed:
            if not state.catalog.insert_instance(db, out.row):
                duplicates.append(rel)
                # Compared inside the transaction, so no delete can remove the stored
                # file meanwhile (deletes unlink after their own commit).
                if not _same_as_stored(state, db, store_pk, out, rel):
                    out.fail(DUPLICATE, "an instance with this SOPInstanceUID is already "
                             "stored")
        if then is not None:
            then(db)
    state.blobs.remove(duplicates)
    for out in outcomes:
        if not out.ok and os.path.exists(out.temp_path):
            os.unlink(out.temp_path)
    return outcomes
