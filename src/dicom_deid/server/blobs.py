"""Instance files on disk, written so that a crash never leaves half an instance.

Every file is written to ``tmp/`` first, fsync'ed, then renamed into place; the index
row is committed after the rename. A crash before the commit leaves at worst an
unreferenced file, which :meth:`BlobStore.sweep` removes at start-up. File names are
random, so no UID or patient value ever appears in a path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import BinaryIO


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.objects = root / "objects"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.objects.mkdir(parents=True, exist_ok=True)

    def new_temp(self) -> BinaryIO:
        """An open temp file in the store's own file system (so rename is atomic)."""
        return tempfile.NamedTemporaryFile(dir=self.tmp, prefix="part-", delete=False)

    def commit(self, temp_path: str, store_pk: int) -> tuple[str, int]:
        """fsync ``temp_path`` and move it to its final place; returns (relative path, size)."""
        name = uuid.uuid4().hex
        rel = f"{store_pk}/{name[:2]}/{name}.dcm"
        final = self.objects / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(temp_path, os.O_RDONLY)
        try:
            os.fsync(fd)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        os.replace(temp_path, final)
        return rel, size

    def sync_dirs(self, rels: list[str]) -> None:
        """fsync the directories that received new names, once per directory."""
        for d in {str((self.objects / r).parent) for r in rels}:
            fd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def path(self, rel: str) -> Path:
        return self.objects / rel

    def remove(self, rels: list[str]) -> None:
        for rel in rels:
            with contextlib.suppress(FileNotFoundError):
                (self.objects / rel).unlink()

    def remove_store(self, store_pk: int) -> None:
        shutil.rmtree(self.objects / str(store_pk), ignore_errors=True)

    def sweep(self, referenced: set[str]) -> int:
        """Delete temp files and files no index row points to; returns how many."""
        removed = 0
        for p in self.tmp.iterdir():
            p.unlink(missing_ok=True)
            removed += 1
        for dirpath, _dirs, files in os.walk(self.objects):
            for f in files:
                full = Path(dirpath) / f
                rel = full.relative_to(self.objects).as_posix()
                if rel not in referenced:
                    full.unlink(missing_ok=True)
                    removed += 1
        return removed
