"""Unpacked code, cached on the worker by digest and shared by every sandbox."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path

Fetch = Callable[[str], Awaitable[bytes]]


class UnsafePackage(Exception):
    """The zip tries to write outside its own directory."""


def _unpack(data: bytes, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".unpack-"))
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.infolist():
                destination = (staging / member.filename).resolve()
                if not destination.is_relative_to(staging.resolve()):
                    raise UnsafePackage(f"zip member escapes the package: {member.filename}")
                archive.extract(member, staging)
                # Keep the executable bit (a custom runtime's bootstrap needs it).
                mode = member.external_attr >> 16
                if mode & stat.S_IXUSR and not member.is_dir():
                    os.chmod(destination, 0o755)
        # Read-only for everyone: the sandbox also mounts it read-only.
        for root, dirs, files in os.walk(staging):
            for name in files:
                path = os.path.join(root, name)
                os.chmod(path, 0o555 if os.stat(path).st_mode & stat.S_IXUSR else 0o444)
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o555)
        os.chmod(staging, 0o555)
        os.rename(staging, target)
    except BaseException:
        _remove(staging)
        raise


def _remove(path: Path) -> None:
    if not path.exists():
        return
    for root, dirs, _files in os.walk(path):
        os.chmod(root, 0o755)
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
    shutil.rmtree(path, ignore_errors=True)


class CodeCache:
    """``<root>/<digest>/``: unpacked once, then reused until evicted."""

    def __init__(self, root: Path, fetch: Fetch) -> None:
        self._root = root
        self._fetch = fetch
        self._locks: dict[str, asyncio.Lock] = {}

    async def directory(self, digest: str) -> Path:
        """The unpacked package for ``digest``, unpacking it on first use."""
        target = self._root / digest
        if target.is_dir():
            return target
        lock = self._locks.setdefault(digest, asyncio.Lock())
        async with lock:
            if not target.is_dir():
                data = await self._fetch(digest)
                await asyncio.to_thread(_unpack, data, target)
        self._locks.pop(digest, None)
        return target

    async def evict(self, digest: str) -> None:
        await asyncio.to_thread(_remove, self._root / digest)

    def cached(self) -> set[str]:
        return cache_entries(self._root)


def cache_entries(root: Path) -> set[str]:
    """Names of the finished entries under a cache root (staging directories start with a dot)."""
    if not root.is_dir():
        return set()
    return {entry.name for entry in root.iterdir() if not entry.name.startswith(".")}
