"""The tools compared: ours, the peers and the ``cp -r`` floor -- found, installed, invoked.

Each :class:`Tool` turns (source dir, fresh output dir) into an argv. Peers never enter
the project's lock: the Python ones live in their own venv (``bench/.peers-venv``),
GDCM comes from Debian (``libgdcm-tools``); ``--install-peers`` creates / installs
them, otherwise a missing peer is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PEERS_VENV = ROOT / "bench" / ".peers-venv"
PEERS_PY = PEERS_VENV / "bin" / "python"
# Pinned so that a figure can be reproduced (the versions measured; bump deliberately).
PEER_PACKAGES = ("dicognito==0.19.0", "deid==0.4.13", "dcmanon==0.3.1")
DEID_DRIVER = Path(__file__).resolve().parent / "peer_deid.py"
DCMANON_DRIVER = Path(__file__).resolve().parent / "peer_dcmanon.py"
BASIC_PROFILE_CONFIG = {"dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE"}}

# gdcmanon --dumb has no built-in list: it does exactly what it is told. This is a
# plausible hand-written list (the obvious patient/study/staff identifiers), i.e. what
# a "tag list" de-identification typically is. Type 2 attributes are emptied, the rest
# removed. It touches no UID, no date, no sequence item and no private tag.
GDCM_DUMB_EMPTY = ("0010,0010", "0010,0020", "0010,0030", "0008,0050", "0008,0090",
                   "0020,0010")
GDCM_DUMB_REMOVE = ("0008,0080", "0008,0081", "0008,1010", "0008,1040", "0008,1050",
                    "0008,1070", "0010,1010", "0010,1020", "0010,1030", "0018,1000",
                    "0020,4000")


@dataclass
class Context:
    """What the tools need besides their input and output: paths, workers, key pair."""

    work: Path
    our_exe: str | None
    workers: int = 1
    key: Path | None = None
    cert: Path | None = None
    config: Path | None = None
    dcmanon_actions: Path | None = None
    reports: list[Path] = field(default_factory=list)


@dataclass
class Tool:
    name: str
    kind: str  # "ours" | "peer" | "floor"
    describe: str
    argv: Callable[[Context, Path, Path], list[str]]
    missing: Callable[[Context], str | None]
    version: Callable[[Context], str]
    single_process: bool = True


def _run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def _first_line(argv: list[str]) -> str:
    try:
        r = _run(argv)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"? ({type(exc).__name__})"
    return ((r.stdout or r.stderr).strip().splitlines() or ["?"])[0]


# -- ours --------------------------------------------------------------------------

def our_exe() -> str | None:
    exe = Path(sys.executable).parent / "dicom-deid"
    return str(exe) if exe.exists() else shutil.which("dicom-deid")


def _ours_missing(ctx: Context) -> str | None:
    if ctx.our_exe is None:
        return "no dicom-deid executable next to this Python or on PATH"
    try:
        r = _run([ctx.our_exe, "deidentify", "--help"])
    except (OSError, subprocess.SubprocessError) as exc:
        return f"dicom-deid deidentify --help failed ({type(exc).__name__})"
    if r.returncode != 0:
        return "dicom-deid has no 'deidentify' command yet"
    return None


def _ours_argv(ctx: Context, src: Path, dst: Path) -> list[str]:
    assert ctx.config is not None and ctx.our_exe is not None
    report = ctx.work / f"ours-report-{len(ctx.reports) + 1}.json"
    ctx.reports.append(report)
    return [ctx.our_exe, "deidentify", "--config", str(ctx.config), str(src), str(dst),
            "--workers", str(ctx.workers), "--report", str(report), "--no-progress"]


def _ours_version(ctx: Context) -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src/dicom_deid"],
                               cwd=ROOT, capture_output=True, text=True,
                               timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "?", ""
    return f"dicom-deid @ {commit}" + (" + uncommitted changes in src/dicom_deid" if dirty
                                       else "")


# -- Python peers (own venv) ---------------------------------------------------------

def _peer_module_missing(module: str) -> Callable[[Context], str | None]:
    def missing(ctx: Context) -> str | None:
        if not PEERS_PY.exists():
            return f"{PEERS_VENV.relative_to(ROOT)} does not exist (pass --install-peers)"
        r = _run([str(PEERS_PY), "-c", f"import {module}"])
        if r.returncode != 0:
            return f"{module} is not importable in {PEERS_VENV.relative_to(ROOT)} " \
                   "(pass --install-peers)"
        return None
    return missing


def _peer_version(dist: str) -> Callable[[Context], str]:
    def version(ctx: Context) -> str:
        return f"{dist} " + _first_line([
            str(PEERS_PY), "-c",
            f"import importlib.metadata as m; print(m.version('{dist}'), "
            "'/ pydicom', m.version('pydicom'))"])
    return version


def _dicognito_argv(ctx: Context, src: Path, dst: Path) -> list[str]:
    # `python -m dicognito`: the console script of 0.19.0 calls main() without its
    # required argument and dies with a TypeError.
    return [str(PEERS_PY), "-m", "dicognito", "--output-directory", str(dst), "--quiet",
            str(src)]


def _deid_argv(ctx: Context, src: Path, dst: Path) -> list[str]:
    return [str(PEERS_PY), str(DEID_DRIVER), str(src), str(dst)]


def _dcmanon_argv(equal: bool) -> Callable[[Context, Path, Path], list[str]]:
    # One process per core, as dcmanon's own benchmark runs it: the library works on
    # one file per call in the caller's thread.
    def argv(ctx: Context, src: Path, dst: Path) -> list[str]:
        out = [str(PEERS_PY), str(DCMANON_DRIVER), str(src), str(dst), "--workers",
               str(os.cpu_count() or 1)]
        if equal:
            assert ctx.dcmanon_actions is not None
            out += ["--tag-actions", str(ctx.dcmanon_actions)]
        return out
    return argv


# -- GDCM ---------------------------------------------------------------------------

def _gdcm_missing(ctx: Context) -> str | None:
    if shutil.which("gdcmanon") is None:
        return "gdcmanon not found (Debian package libgdcm-tools; pass --install-peers)"
    return None


def _gdcm_basic_missing(ctx: Context) -> str | None:
    if reason := _gdcm_missing(ctx):
        return reason
    if ctx.key is None or ctx.cert is None:
        return "no RSA key / certificate (openssl could not make one)"
    return None


def _gdcm_dumb_argv(ctx: Context, src: Path, dst: Path) -> list[str]:
    argv = ["gdcmanon", "--dumb", "--recursive", "--continue"]
    for tag in GDCM_DUMB_EMPTY:
        argv += ["--empty", tag]
    for tag in GDCM_DUMB_REMOVE:
        argv += ["--remove", tag]
    return argv + ["--input", str(src), "--output", str(dst)]


def _gdcm_basic_argv(ctx: Context, src: Path, dst: Path) -> list[str]:
    return ["gdcmanon", "--de-identify", "--key", str(ctx.key), "--certificate",
            str(ctx.cert), "--recursive", "--continue", "--input", str(src), "--output",
            str(dst)]


def make_keypair(work: Path) -> tuple[Path, Path] | None:
    """A throw-away RSA key and self-signed certificate for gdcmanon's basic profile,
    which encrypts the original values into EncryptedAttributesSequence."""
    key, cert = work / "gdcm-key.pem", work / "gdcm-cert.pem"
    try:
        r = _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                  str(key), "-out", str(cert), "-days", "30", "-subj", "/CN=dicom-deid-bench"])
    except (OSError, subprocess.SubprocessError):
        return None
    return (key, cert) if r.returncode == 0 else None


# -- the floor ------------------------------------------------------------------------

def _cp_argv(ctx: Context, src: Path, dst: Path) -> list[str]:
    return ["cp", "-r", str(src), str(dst)]


TOOLS: dict[str, Tool] = {t.name: t for t in (
    Tool("ours", "ours", "dicom-deid deidentify, basic profile config",
         _ours_argv, _ours_missing, _ours_version, single_process=False),
    Tool("dicognito", "peer", "python -m dicognito -o DST (its defaults)",
         _dicognito_argv, _peer_module_missing("dicognito"), _peer_version("dicognito")),
    Tool("deid", "peer", "pydicom/deid get_identifiers + replace_identifiers, "
         "default recipe", _deid_argv, _peer_module_missing("deid.dicom"),
         _peer_version("deid")),
    Tool("dcmanon", "peer", "dcmanon (Rust) Anonymizer(), its defaults, one process per "
         "core", _dcmanon_argv(False), _peer_module_missing("dcmanon"),
         _peer_version("dcmanon"), single_process=False),
    Tool("dcmanon-equal", "peer", "dcmanon (Rust), tag actions doing our basic profile's "
         "work (deidentify/dcmanon_config.py), one process per core", _dcmanon_argv(True),
         _peer_module_missing("dcmanon"), _peer_version("dcmanon"), single_process=False),
    Tool("gdcmanon-dumb", "peer", f"gdcmanon --dumb, {len(GDCM_DUMB_EMPTY)} tags emptied + "
         f"{len(GDCM_DUMB_REMOVE)} removed",
         _gdcm_dumb_argv, _gdcm_missing, lambda ctx: _first_line(["gdcmanon", "--version"])),
    Tool("gdcmanon-basic", "peer", "gdcmanon -e (PS3.15 basic profile, AES-256 to "
         "EncryptedAttributesSequence)", _gdcm_basic_argv, _gdcm_basic_missing,
         lambda ctx: _first_line(["gdcmanon", "--version"])),
    Tool("cp", "floor", "cp -r (I/O floor)", _cp_argv, lambda ctx: None,
         lambda ctx: _first_line(["cp", "--version"])),
)}


# -- installing --------------------------------------------------------------------------

def install_python_peers(packages: tuple[str, ...] = PEER_PACKAGES,
                         timeout: float = 900) -> str | None:
    """Create bench/.peers-venv and pip install the pinned peers; None on success."""
    try:
        if not PEERS_PY.exists():
            # --without-scm-ignore-files is 3.13+; the venv is listed in .gitignore instead.
            subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True,
                           timeout=300)
        subprocess.run([str(PEERS_PY), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", *packages], check=True,
                       timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"installing {' '.join(packages)} into {PEERS_VENV} failed " \
               f"({type(exc).__name__})"
    return None


def install_gdcm() -> str | None:
    """apt-get install libgdcm-tools; None on success."""
    if shutil.which("gdcmanon"):
        return None
    if os.geteuid() != 0:
        return "--install-peers needs root for apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "libgdcm-tools"], check=True,
                       env=env, timeout=900, stdout=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"apt-get install libgdcm-tools failed ({type(exc).__name__})"
    return None


def write_config(work: Path) -> Path:
    path = work / "ours-config.json"
    path.write_text(json.dumps(BASIC_PROFILE_CONFIG))
    return path


def write_dcmanon_actions(work: Path) -> Path:
    """The equal-work tag actions for dcmanon (see ``dcmanon_config``), as a file."""
    from deidentify.dcmanon_config import equal_work_actions

    path = work / "dcmanon-equal-work.json"
    path.write_text(json.dumps(equal_work_actions(), indent=1, sort_keys=True))
    return path
