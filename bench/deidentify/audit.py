"""What each tool actually does to a file: a probe of PHI-shaped values, in and out.

Each tool is run (untimed) on one instance of each kind, alone in its input directory
so the single output file is its counterpart whatever the tool names it. For every
probe the output value is compared with the input's: ``kept`` (identical -- for PHI,
a leak), ``changed`` (replaced by another value), ``emptied`` (present, zero length),
``removed`` (absent). Probes cover the top level, nested sequence items, the private
block and the functional groups of the multi-frame object, plus whether the pixel
data and the SOP class survived and whether the file still parses.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from deidentify.runner import run_measured
from deidentify.tools import Context, Tool
from dicom_deid.corpus.mr import PRIVATE_CREATOR, PRIVATE_GROUP

# (label, kind of instance it is read from, path). A path step is a keyword, a
# (sequence keyword, item index) pair, or "private" for the vendor-like OB element.
Step = str | tuple[str, int]
PROBES: tuple[tuple[str, str, tuple[Step, ...]], ...] = (
    ("PatientName", "ct", ("PatientName",)),
    ("PatientID", "ct", ("PatientID",)),
    ("PatientBirthDate", "ct", ("PatientBirthDate",)),
    ("PatientSex", "ct", ("PatientSex",)),
    ("PatientAge", "ct", ("PatientAge",)),
    ("PatientWeight (MR)", "mr", ("PatientWeight",)),
    ("AccessionNumber", "ct", ("AccessionNumber",)),
    ("StudyID", "ct", ("StudyID",)),
    ("StudyDate", "ct", ("StudyDate",)),
    ("StudyTime", "ct", ("StudyTime",)),
    ("AcquisitionDateTime (MF)", "mf", ("AcquisitionDateTime",)),
    ("InstitutionName", "ct", ("InstitutionName",)),
    ("ReferringPhysicianName", "ct", ("ReferringPhysicianName",)),
    ("OperatorsName", "ct", ("OperatorsName",)),
    ("StationName", "ct", ("StationName",)),
    ("DeviceSerialNumber", "ct", ("DeviceSerialNumber",)),
    ("StudyDescription", "ct", ("StudyDescription",)),
    ("ImageComments (MF, quotes the name)", "mf", ("ImageComments",)),
    ("StudyInstanceUID", "ct", ("StudyInstanceUID",)),
    ("SeriesInstanceUID", "ct", ("SeriesInstanceUID",)),
    ("SOPInstanceUID", "ct", ("SOPInstanceUID",)),
    ("FrameOfReferenceUID", "ct", ("FrameOfReferenceUID",)),
    ("SOPClassUID (must be kept)", "ct", ("SOPClassUID",)),
    ("nested: RequestAttributesSeq > AccessionNumber (MR)", "mr",
     (("RequestAttributesSequence", 0), "AccessionNumber")),
    ("nested: RequestAttributesSeq > RequestedProcedureID (MR)", "mr",
     (("RequestAttributesSequence", 0), "RequestedProcedureID")),
    ("nested: ReferencedImageSeq > ReferencedSOPInstanceUID (MR)", "mr",
     (("ReferencedImageSequence", 0), "ReferencedSOPInstanceUID")),
    ("private block quoting the patient (MR)", "mr", ("private",)),
    ("MF: PerFrameFunctionalGroupsSeq (whole)", "mf", ("PerFrameFunctionalGroupsSequence",)),
    ("MF: per-frame FrameAcquisitionDateTime", "mf",
     (("PerFrameFunctionalGroupsSequence", 0), ("FrameContentSequence", 0),
      "FrameAcquisitionDateTime")),
    ("MF: shared ReferencedImageSeq > UID", "mf",
     (("SharedFunctionalGroupsSequence", 0), ("ReferencedImageSequence", 0),
      "ReferencedSOPInstanceUID")),
    ("MF: DimensionOrganizationUID", "mf",
     (("DimensionOrganizationSequence", 0), "DimensionOrganizationUID")),
)

MISSING = object()


def _get(ds: Dataset, path: tuple[Step, ...]) -> object:
    node: object = ds
    for step in path:
        if not isinstance(node, Dataset):
            return MISSING
        if step == "private":
            try:
                node = node.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)[0x10].value
            except KeyError:
                return MISSING
        elif isinstance(step, tuple):
            if step[0] not in node:
                return MISSING
            seq = node[step[0]].value
            if seq is None or len(seq) <= step[1]:
                return None
            node = seq[step[1]]
        else:
            if step not in node:
                return MISSING
            node = node[step].value
    return node


def _status(before: object, after: object) -> str:
    if after is MISSING:
        return "removed"
    if after in (None, "", b"") or (hasattr(after, "__len__") and len(after) == 0):
        return "emptied"
    if before == after:
        return "kept"
    return "changed"


def _pixels(ds: Dataset) -> str | None:
    if "PixelData" not in ds:
        return None
    return hashlib.sha256(ds["PixelData"].value).hexdigest()


def compare(src: Path, out: Path) -> dict[str, str]:
    a = pydicom.dcmread(src)
    try:
        b = pydicom.dcmread(out)
    except Exception as exc:  # noqa: BLE001 - a broken output is a result
        return {"_file": f"unreadable ({type(exc).__name__})"}
    res = {"_file": "ok"}
    for label, _, path in PROBES:
        before = _get(a, path)
        if before is MISSING:
            continue
        res[label] = _status(before, _get(b, path))
    res["pixel data"] = "kept" if _pixels(a) == _pixels(b) else (
        "removed" if "PixelData" not in b else "changed")
    res["PatientIdentityRemoved"] = str(b.get("PatientIdentityRemoved", "absent"))
    method = b.get("DeidentificationMethod")
    res["DeidentificationMethod"] = str(method) if method is not None else "absent"
    if "PixelData" in b:
        try:
            b.pixel_array  # noqa: B018 - decodes: Rows/Columns/Bits still consistent
        except Exception as exc:  # noqa: BLE001
            res["_file"] = f"pixels do not decode ({type(exc).__name__})"
    return res


def audit_tool(tool: Tool, ctx: Context, inputs: dict[str, Path], scratch: Path) -> dict:
    """Run ``tool`` once per kind on its single-file input; the per-probe statuses."""
    per_kind: dict[str, dict[str, str]] = {}
    for kind, src_dir in inputs.items():
        dst = scratch / f"{tool.name}-{kind}"
        log = scratch / f"{tool.name}-{kind}.log"
        run = run_measured(tool.argv(ctx, src_dir, dst), log, 600)
        outs = [p for p in dst.rglob("*") if p.is_file()] if dst.exists() else []
        if len(outs) != 1:
            per_kind[kind] = {"_file": f"{len(outs)} output files (exit {run['returncode']})"}
        else:
            per_kind[kind] = compare(next(src_dir.iterdir()), outs[0])
        shutil.rmtree(dst, ignore_errors=True)
    merged: dict[str, str] = {}
    for label, kind, _ in PROBES:
        r = per_kind.get(kind, {})
        merged[label] = r.get(label, "no output" if r.get("_file") != "ok" else "n/a")
    for key in ("pixel data", "PatientIdentityRemoved", "DeidentificationMethod"):
        vals = {k: r[key] for k, r in per_kind.items() if key in r}
        merged[key] = " / ".join(sorted(set(vals.values()))) or "no output"
    merged["output file"] = "; ".join(f"{k}: {r.get('_file')}" for k, r in per_kind.items())
    return merged
