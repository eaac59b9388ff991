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

    @staticmethod
    def fsync(temp_path: str) -> int:
        """Flush one written temp file to disk; returns its size."""
        fd = os.open(temp_path, os.O_RDONLY)
        try:
            os.fsync(fd)
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def place(self, temp_paths: list[str], store_pk: int) -> list[str | OSError]:
        """Move fsync'ed temp files into the store; the relative path of each, or its error.

        One fsync of the store's directory afterwards makes all the new names durable.
        """
        directory = self.objects / str(store_pk)
        directory.mkdir(parents=True, exist_ok=True)
        results: list[str | OSError] = []
        for temp_path in temp_paths:
            rel = f"{store_pk}/{uuid.uuid4().hex}.dcm"
            try:
                os.replace(temp_path, self.objects / rel)
                results.append(rel)
            except OSError as exc:
                results.append(exc)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return results

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
