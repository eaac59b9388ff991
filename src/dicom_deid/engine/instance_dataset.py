"""The dataset path: one instance read into a pydicom ``Dataset``, de-identified, written.

It takes every instance the byte path (:mod:`.instance_bytes`) does not: image
redaction, the tag-contents and minimal profiles, keep and remove lists, big-endian,
deflated and malformed files (it reads defensively and repairs what it can,
:mod:`.reading`). It reads, applies the plan, marks the result, rebuilds the file
meta and writes. The output keeps the input's transfer syntax so pixel data is
copied byte for byte; a file with no meta is written with the encoding it was read
in. Failures raise :class:`~.outcome.UnreadableInstance` or
:class:`~.outcome.DeidentifyError` with a message that names the step and the
element (:mod:`.failures`) and never quotes a value of the file.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import BinaryIO

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from . import identity, writing
from .dates import shift_days
from .decisions import Context, pointed_to
from .failures import PIXEL_DECODE, PROFILE, WRITING, ElementFailure, tag_label
from .filter_profile import apply_profile
from .identifiers import known_identifiers
from .outcome import DeidentifyError, Outcome, UnreadableInstance
from .plan import KEEP_LIST, MINIMAL, TAG_CONTENTS, Plan
from .reading import read, required_uids

# pydicom logs (as well as warns) about odd values, quoting them: no value of an
# input may reach a log, so only its errors are let through.
logging.getLogger("pydicom").setLevel(logging.ERROR)


#: Pixel Data, Float Pixel Data, Double Float Pixel Data: where an image's pixels are.
PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)


def _transfer_syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts:
        return str(ts)
    implicit, little = ds.original_encoding
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _redact_pixels(ds: Dataset, plan: Plan) -> None:
    """Burned-in text, before the profile removes the values it is recognised by."""
    from .image_redaction import redact_pixels
    from .pixels.messages import PixelError

    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = _transfer_syntax(ds)
    known = known_identifiers(ds)
    pixels = next((t for t in PIXEL_TAGS if t in ds), None)
    if pixels is None or not ds.get_item(pixels).value:
        return  # no pixels (or an empty Pixel Data): no text burned into them
    where = tag_label(pixels)
    try:
        redact_pixels(ds, plan.image, known)
    except PixelError as exc:
        raise DeidentifyError(f"{exc.step} failed at {where}: {exc}") from None
    except Exception as exc:  # a codec's or OpenCV's own error: its kind, not its text
        raise DeidentifyError(f"{PIXEL_DECODE} failed at {where}: "
                              f"{type(exc).__name__}") from None


def deidentify_dataset(ds: Dataset, plan: Plan) -> Dataset:
    """Apply ``plan`` to ``ds`` in place and give it a consistent file meta."""
    uids = required_uids(ds)
    if plan.image.redacts:
        _redact_pixels(ds, plan)
    ts = _transfer_syntax(ds)
    days = None
    if plan.date_key is not None:
        patient = str(ds.get("PatientID", "") or "").strip()
        days = shift_days(patient or uids["StudyInstanceUID"], plan.date_key)
    ctx = Context(plan, days, decisions=plan.decisions, sop_class=uids["SOPClassUID"])
    if plan.profile in (TAG_CONTENTS, MINIMAL):
        ctx.known = known_identifiers(ds)
    if plan.profile == MINIMAL and "FrameIncrementPointer" in ds:
        with contextlib.suppress(Exception):  # a pointer pydicom cannot parse: none
            ctx.keep = pointed_to(ds["FrameIncrementPointer"].value)
    apply_profile(ds, ctx)
    identity.mark(ds, plan, identity.temporal(plan, days))
    for keyword in ("SOPClassUID", "SOPInstanceUID"):
        if keyword not in ds:  # a remove list may not take what the file meta needs
            raise DeidentifyError(f"{keyword} was removed; it is required in every instance")
    if plan.profile == KEEP_LIST:
        missing = [k for k in ("StudyInstanceUID", "SeriesInstanceUID") if k not in ds]
        if missing:
            raise DeidentifyError(
                f"config.dicom.keepList does not list {' and '.join(missing)}: a keepList "
                "keeps only the tags it lists (and the SOP Class and Instance UIDs), and a "
                "DICOM store cannot hold an instance without them; add them to "
                "keepList.tags")
    ds.file_meta = writing.file_meta(ds.SOPClassUID, ds.SOPInstanceUID, ts)
    ds.preamble = b"\0" * 128
    return ds


def _write(ds: Dataset, out: BinaryIO) -> None:
    ts = ds.file_meta.TransferSyntaxUID
    if any(isinstance(e, RawDataElement) and e.is_implicit_VR != ts.is_implicit_VR
           for e in ds.elements()):
        # The body is not encoded as its meta says (an implicit body under an explicit
        # syntax is common): decode every element so it is written as the syntax says.
        ds.walk(lambda _ds, _elem: None)
    writing.write(ds, out)


def run(source: bytes | str | BinaryIO, plan: Plan, out: BinaryIO) -> Outcome:
    """De-identify ``source`` (bytes, a path or a binary file) and write it to ``out``."""
    with warnings.catch_warnings():
        # pydicom's warnings quote values from the file; none may reach a log.
        warnings.simplefilter("ignore")
        if isinstance(source, bytes):
            source = io.BytesIO(source)
        ds = read(source)
        step = PROFILE
        try:
            deidentify_dataset(ds, plan)
            step = WRITING
            start = out.tell()
            _write(ds, out)
            size = out.tell() - start
        except (UnreadableInstance, DeidentifyError):
            raise
        except ElementFailure as exc:
            raise DeidentifyError(str(exc)) from None
        except Exception as exc:  # report the step and the kind of failure, never the data
            raise DeidentifyError(f"{step} failed ({type(exc).__name__})") from None
    return Outcome(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID),
                   str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID), size)


