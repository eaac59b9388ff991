"""Real DICOM files that registry packages ship: the conformance corpus.

Nobody on this project wrote these files; modalities, vendors' toolkits and other
projects' test suites did, with the quirks that come with them. Each package is a
development dependency (``pyproject.toml``, extra ``dev``):

==================  ===============================================================
source              what it holds
==================  ===============================================================
``pydicom``         pydicom's own test files and character-set files (in the wheel)
``pydicom-data``    pydicom's larger test files (``data_store/data``): RLE, JPEG,
                    JPEG-LS, JPEG 2000, big endian, palette, YBR, US, MR, CT
``deid-data``       the ``deid`` project's test data: ultrasounds with burned-in
                    text (greyscale and RGB, still and cine), CT brains, animals,
                    the "dicom-cookies" set
``nibabel``         nibabel's DICOM test data (Siemens MR with CSA headers)
==================  ===============================================================

Files inside zip archives (deid-data's cines) are extracted once into a cache
folder. A source whose package is not installed yields nothing; :func:`files`
says which sources it found so a test can insist on all of them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import util
from pathlib import Path

SOURCES = ("pydicom", "pydicom-data", "deid-data", "nibabel")

#: Files larger than this are kept out of the default corpus (deid-data's 100 MB RGB
#: cine); ``files(large=True)`` includes them.
LARGE_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class CorpusFile:
    """One real file: where it comes from and a short name that is unique."""

    source: str
    name: str
    path: Path

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def _package_dir(module: str) -> Path | None:
    spec = util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _is_dicom_candidate(path: Path) -> bool:
    if not path.is_file() or path.suffix in (".py", ".pyc", ".md", ".txt", ".json", ".zip",
                                              ".gz", ".bz2", ".xz", ".bin", ".PAR", ".REC"):
        return False
    return path.suffix.lower() in (".dcm", ".dicom", "") or path.name.startswith("IM")


def _cache_dir() -> Path:
    root = os.environ.get("DICOM_DEID_CORPUS_CACHE") or os.path.join(
        tempfile.gettempdir(), "dicom-deid-corpus")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _extracted(archive: Path) -> list[Path]:
    """The DICOM members of ``archive``, extracted once (keyed by the archive's digest)."""
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()[:16]
    folder = _cache_dir() / f"{archive.stem}-{digest}"
    out = []
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if info.is_dir() or not info.filename.lower().endswith(".dcm"):
                continue
            target = folder / Path(info.filename).name
            if not target.exists() or target.stat().st_size != info.file_size:
                folder.mkdir(parents=True, exist_ok=True)
                tmp = target.with_suffix(".part")
                with zf.open(info) as src, open(tmp, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
                os.replace(tmp, target)
            out.append(target)
    return out


def _pydicom() -> list[tuple[str, Path]]:
    # The wheel's folders, globbed: pydicom.data.get_testdata_files() also tries to
    # download the files its online index lists (warning when it cannot).
    base = _package_dir("pydicom")
    if base is None:
        return []
    data = base / "data"
    paths = sorted(p for folder in ("test_files", "charset_files")
                   for p in (data / folder).rglob("*") if p.is_file()
                   and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts)
    return [(str(p.relative_to(data)), p) for p in paths]


def _pydicom_data() -> list[tuple[str, Path]]:
    base = _package_dir("data_store")
    if base is None or not (base / "data").is_dir():
        return []
    return [(p.name, p) for p in sorted((base / "data").iterdir()) if _is_dicom_candidate(p)]


def _deid_data() -> list[tuple[str, Path]]:
    base = _package_dir("deid_data")
    if base is None:
        return []
    out = []
    for p in sorted((base / "data").rglob("*")):
        rel = p.relative_to(base / "data")
        if p.suffix == ".zip":
            out += [(f"{rel.parent}/{m.name}", m) for m in _extracted(p)]
        elif _is_dicom_candidate(p) and p.suffix == ".dcm":
            out.append((str(rel), p))
    return out


def _nibabel() -> list[tuple[str, Path]]:
    base = _package_dir("nibabel")
    if base is None:
        return []
    return [(str(p.relative_to(base)), p) for p in sorted(base.rglob("*.dcm"))]


_FINDERS = {"pydicom": _pydicom, "pydicom-data": _pydicom_data, "deid-data": _deid_data,
            "nibabel": _nibabel}


def files(*, large: bool = False, sources: tuple[str, ...] = SOURCES) -> list[CorpusFile]:
    """Every real file of the installed sources, smallest-first within a source."""
    out = []
    for source in sources:
        found = [CorpusFile(source, name, path) for name, path in _FINDERS[source]()]
        out += [f for f in found if large or f.size <= LARGE_BYTES]
    return out


def found_sources(corpus: list[CorpusFile]) -> set[str]:
    return {f.source for f in corpus}
