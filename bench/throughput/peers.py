"""The peer compared against: Orthanc with its DICOMweb plugin (found, installed, run)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import requests

from dicom_deid.devstack import free_port, stop_process, wait_http

ORTHANC_PLUGIN_DIR = Path("/usr/share/orthanc/plugins")


def orthanc_paths() -> tuple[str | None, Path | None]:
    exe = shutil.which("Orthanc") or (
        "/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
    plugins = sorted(ORTHANC_PLUGIN_DIR.glob("libOrthancDicomWeb.so*"))
    return exe, plugins[0] if plugins else None


def install_orthanc() -> str | None:
    """apt-get install Orthanc + DICOMweb; None on success, else the reason.

    A policy-rc.d that refuses service starts is put in place for the install (and
    removed after, if it was not there before) so that the package does not start a
    system-wide Orthanc listening on all interfaces.
    """
    if os.geteuid() != 0:
        return "--install-peers needs root for apt-get"
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        if ours:
            policy.write_text("#!/bin/sh\nexit 101\n")
            policy.chmod(0o755)
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", "orthanc", "orthanc-dicomweb"],
                       check=True, env=env, timeout=600, stdout=subprocess.DEVNULL)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"apt-get install orthanc orthanc-dicomweb failed ({type(exc).__name__})"
    finally:
        if ours:
            policy.unlink(missing_ok=True)
    return None


@dataclass
class Orthanc:
    """Orthanc with its DICOMweb plugin, on loopback, with a throw-away config and storage.

    Its defaults are kept except where the bench needs otherwise: no authentication,
    no remote access, no DICOM (DIMSE) listener, no storage compression (ours stores
    files as received). Orthanc fsyncs each stored file by default (SyncStorageArea),
    as ours does, so the durability of the two is comparable. Its default in-process
    cache of recently used files (MaximumStorageCacheSize, 128 MB) is kept: it holds
    a quarter of the corpus at most, so 'cold' is mostly cold for it too.
    """

    root: Path
    exe: str
    plugin: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Orthanc:
        (self.root / "storage").mkdir(parents=True)
        (self.root / "index").mkdir()
        config = {
            "Name": "bench-peer",
            "StorageDirectory": str(self.root / "storage"),
            "IndexDirectory": str(self.root / "index"),
            "StorageCompression": False,
            "HttpPort": self.port,
            "HttpCompressionEnabled": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": False,
            "DicomPort": free_port(),
            "Plugins": [str(self.plugin)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
        }
        cfg = self.root / "orthanc.json"
        cfg.write_text(json.dumps(config, indent=2))
        log = open(self.root / "orthanc.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen([self.exe, str(cfg)], stdout=log, stderr=subprocess.STDOUT)
        wait_http(f"{self.url}/system", self.proc)
        return self

    def version(self) -> str:
        try:
            return requests.get(f"{self.url}/system", timeout=5).json().get("Version", "?")
        except (requests.RequestException, ValueError):
            return "?"

    def wipe(self) -> None:
        """Delete every study, so the next STOW run starts from an empty store."""
        with requests.Session() as s:
            for study in s.get(f"{self.url}/studies", timeout=60).json():
                s.delete(f"{self.url}/studies/{study}", timeout=60).raise_for_status()

    def files(self) -> list[Path]:
        return sorted(p for p in (self.root / "storage").rglob("*") if p.is_file())

    def stop(self) -> None:
        stop_process(self.proc, 20)
