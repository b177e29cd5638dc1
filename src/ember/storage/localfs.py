"""Code packages as files in the data directory (embedded mode)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO

from ember.storage.base import PackageData
from ember.storage.digests import checked

# Bytes copied at a time from a package file.
_COPY_CHUNK = 1 << 20


class LocalPackageStore:
    """See ``ember.storage.base.PackageStore``: ``<root>/<digest>.zip``."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def _path(self, digest: str) -> Path:
        return self._root / f"{checked(digest)}.zip"

    def _put(self, digest: str, data: PackageData) -> None:
        target = self._path(digest)
        if target.exists():
            return
        self._root.mkdir(parents=True, exist_ok=True)
        # Write, fsync, rename: a crash leaves either nothing or the whole file.
        fd, tmp = tempfile.mkstemp(dir=self._root, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                _write(handle, data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    async def put(self, digest: str, data: PackageData) -> None:
        await asyncio.to_thread(self._put, digest, data)

    async def get(self, digest: str) -> bytes:
        try:
            return await asyncio.to_thread(self._path(digest).read_bytes)
        except FileNotFoundError:
            raise KeyError(digest) from None

    async def delete(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError, KeyError):
            await asyncio.to_thread(self._path(digest).unlink)

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _write(handle: IO[bytes], data: PackageData) -> None:
    """``data`` into ``handle``: a file is copied in chunks from its start."""
    if isinstance(data, bytes):
        handle.write(data)
        return
    data.seek(0)
    shutil.copyfileobj(data, handle, _COPY_CHUNK)
