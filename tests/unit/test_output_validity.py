"""De-identified outputs are as valid as their inputs, for every real file and profile.

Each file of the real-world corpus (``dicom_deid.corpus.realworld``) is de-identified
with each filter profile; ``dciodvfy -new`` (dicom3tools) checks input and output
against the IOD, and the output may have no "Error" the input did not have (values
and private creators are normalised out of the messages: de-identification changes
them). ``dcmdump +E`` (DCMTK) must parse every output without an error.

Files the engine refuses to read are another test's concern: outputs are only
compared where there are outputs. ``test_every_readable_file_is_deidentified`` fails
on every file the engine refuses that pydicom or dcmdump can read, unless the reason
is true of the file: it lacks a UID every stored instance needs, or it is cut short.

The work (about 280 files x 4 profiles) runs in a process pool, one task per file, so
each input is checked once.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dicom_deid.corpus import realworld
from dicom_deid.engine.instance import DeidentifyError, deidentify_bytes
from dicom_deid.engine.plan import BASIC, KEEP_ALL, MINIMAL, TAG_CONTENTS, build_plan
from dicom_deid.engine.reading import UnreadableInstance

PROFILES = (KEEP_ALL, MINIMAL, BASIC, TAG_CONTENTS)
KEY = b"k" * 32
TOOLS = ("dciodvfy", "dcmdump")

pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in TOOLS),
    reason="dciodvfy (dicom3tools) and dcmdump (DCMTK) are needed: make setup")

_VALUE = re.compile(r" = <[^>]*>|=\s*'[^']*'\s*\(0x[0-9a-fA-F]+\)|\(\d+\)$")
_CREATOR = re.compile(r',"[^"]*"\)')
_ITEM = re.compile(r"\[\d+\]")


def normalise(line: str) -> str:
    """An error line without what de-identification legitimately changes: values,
    private creators, item numbers."""
    line = _VALUE.sub("", line.strip())
    line = _CREATOR.sub(")", line)
    return _ITEM.sub("[]", line).rstrip(" -")


def dciodvfy_errors(path: Path) -> tuple[frozenset[str], bool]:
    """(normalised error lines, whether dciodvfy could read the file at all)."""
    proc = subprocess.run(["dciodvfy", "-new", str(path)], capture_output=True, timeout=300)
    text = (proc.stderr + proc.stdout).decode("utf-8", errors="replace")
    # split on newlines only: values quoted in messages may hold a carriage return
    lines = text.split("\n")
    errors = frozenset(normalise(line) for line in lines if line.startswith("Error"))
    readable = proc.returncode >= 0 and "Error - Dicom dataset read failed" not in errors
    return errors, readable


def dcmdump_error(path: Path) -> str | None:
    proc = subprocess.run(["dcmdump", "+E", "-q", str(path)], capture_output=True, timeout=300)
    text = proc.stderr.decode("utf-8", errors="replace")
    lines = [line for line in text.splitlines() if line.startswith(("E:", "F:"))]
    if proc.returncode != 0 or lines:
        return "; ".join(lines[:3]) or f"exit status {proc.returncode}"
    return None


def input_readable(path: Path) -> tuple[bool, bool]:
    """Whether pydicom and dcmdump read the input. pydicom is forced (a bare dataset is
    DICOM too) and must find at least one standard element: forced, it takes any text
    file for a dataset of nonsense tags."""
    import warnings

    import pydicom
    from pydicom.datadict import dictionary_has_tag

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True)
            ds.walk(lambda _ds, _elem: None)
        by_pydicom = any(dictionary_has_tag(elem.tag) for elem in ds)
    except Exception:
        by_pydicom = False
    return by_pydicom, dcmdump_error(path) is None


@dataclass
class FileResult:
    name: str
    input_checked: bool = True  # dciodvfy could read the input
    new_errors: dict[str, list[str]] = field(default_factory=dict)  # profile -> errors
    dcmdump: dict[str, str] = field(default_factory=dict)  # profile -> dcmdump's error
    refused: dict[str, str] = field(default_factory=dict)  # profile -> engine's reason
    readable: tuple[bool, bool] = (True, True)  # input by pydicom, by dcmdump


def check_file(name: str, path: Path, profiles: tuple[str, ...] = PROFILES) -> FileResult:
    """De-identify one file with each profile and compare dciodvfy's errors."""
    result = FileResult(name)
    before, result.input_checked = dciodvfy_errors(path)
    data = path.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        for profile in profiles:
            plan = build_plan({"dicom": {"filterProfile": profile}}, KEY)
            try:
                out, _ = deidentify_bytes(data, plan)
            except (UnreadableInstance, DeidentifyError) as exc:
                result.refused[profile] = str(exc)
                continue
            target = Path(tmp) / f"{profile}.dcm"
            target.write_bytes(out)
            error = dcmdump_error(target)
            if error is not None:
                result.dcmdump[profile] = error
            if result.input_checked:
                after, _ = dciodvfy_errors(target)
                new = sorted(after - before)
                if new:
                    result.new_errors[profile] = new
    if result.refused:
        result.readable = input_readable(path)
    return result


def _check(args: tuple[str, str]) -> FileResult:
    return check_file(args[0], Path(args[1]))


def check_corpus(files: list[realworld.CorpusFile], workers: int | None = None
                 ) -> list[FileResult]:
    # biggest first, so the pool does not end waiting on one large file
    jobs = [(f.name, str(f.path)) for f in sorted(files, key=lambda f: -f.size)]
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
        return list(pool.map(_check, jobs))


@pytest.fixture(scope="module")
def results() -> list[FileResult]:
    files = realworld.files()
    if not files:
        pytest.skip("no real-world corpus installed (pip install -e '.[dev]')")
    return check_corpus(files)


@pytest.mark.parametrize("profile", PROFILES)
def test_outputs_have_no_error_their_input_did_not_have(results: list[FileResult],
                                                        profile: str) -> None:
    problems = [f"{r.name}: {error}" for r in results for error in r.new_errors.get(profile, ())]
    checked = sum(1 for r in results if r.input_checked and profile not in r.refused)
    assert checked > 0
    assert not problems, (f"{len(problems)} new dciodvfy errors in {checked} outputs of "
                          f"{profile}:\n" + "\n".join(problems))


def test_dcmdump_reads_every_output(results: list[FileResult]) -> None:
    problems = [f"{r.name} [{profile}]: {error}"
                for r in results for profile, error in r.dcmdump.items()]
    assert not problems, "dcmdump +E fails on outputs:\n" + "\n".join(problems)


_MISSING_UID = re.compile(r"missing or invalid (SOPClassUID|SOPInstanceUID|StudyInstanceUID|"
                          r"SeriesInstanceUID)$")


def explained(path: Path, reasons: set[str], readable: tuple[bool, bool]) -> bool:
    """Whether the engine's one reason for refusing a readable file is true of it: a UID
    that every stored instance needs (and the file lacks or spoils), or a file cut short
    (which dcmdump refuses as well)."""
    if len(reasons) != 1:
        return False
    (reason,) = reasons
    if reason.startswith("truncated: "):
        return not readable[1]
    match = _MISSING_UID.match(reason)
    if match is None:
        return False
    import warnings

    import pydicom
    from pydicom.uid import UID

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the invalid UID itself, which is the point
        ds = pydicom.dcmread(path, force=True)
        value = ds.get(match.group(1))
        return value is None or not UID(str(value)).is_valid


def test_every_readable_file_is_deidentified(results: list[FileResult]) -> None:
    failures, unreadable, refused = [], [], []
    paths = {f.name: f.path for f in realworld.files()}
    for r in results:
        if not r.refused:
            continue
        reasons = "; ".join(sorted({f"{p}: {why}" for p, why in r.refused.items()}))
        if r.readable == (False, False):
            unreadable.append(f"{r.name} ({reasons})")
        elif explained(paths[r.name], set(r.refused.values()), r.readable):
            refused.append(r.name)
        else:
            failures.append(f"{r.name} (pydicom reads it: {r.readable[0]}, dcmdump: "
                            f"{r.readable[1]}) {reasons}")
    assert not failures, (f"{len(failures)} readable files the engine refuses:\n"
                          + "\n".join(failures))
    assert len(refused) + len(unreadable) < len(results) / 4, "most of the corpus refused"
    # every file is accounted for: de-identified under every profile, refused for a
    # reason true of it, or read by neither pydicom nor dcmdump
    through = sum(1 for r in results if not r.refused)
    assert through + len(refused) + len(unreadable) == len(results)
