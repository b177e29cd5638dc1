"""A function's layers, unpacked and merged in order: the directory its sandboxes see at /opt.

``<root>/<key>/`` where the key hashes the ordered list of layer digests, so
every function with the same layers (in the same order) shares one
directory. Each zip is extracted over the previous ones, as Lambda does: a
later layer's file replaces an earlier layer's file at the same path.

Extraction is defensive (``extract_into``): no member may land outside the
directory, whether through ``..``, an absolute name, or a symlink; symlinks
are kept only when they point inside the directory.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

Fetch = Callable[[str], Awaitable[bytes]]
_CHUNK = 1 << 20


class UnsafeLayer(Exception):
    """A zip member would be written (or point) outside the layer directory."""


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _target_of(root: str, name: str) -> str:
    """The absolute path of member ``name`` under ``root``, refusing any escape."""
    if name.startswith("/") or "\\" in name or "\x00" in name:
        raise UnsafeLayer(f"zip member has an unsafe name: {name!r}")
    path = os.path.normpath(os.path.join(root, name))
    if not _inside(path, root):
        raise UnsafeLayer(f"zip member escapes the layer: {name!r}")
    # A symlink left by an earlier member or layer must not lead out either.
    if not _inside(os.path.realpath(os.path.dirname(path)), os.path.realpath(root)):
        raise UnsafeLayer(f"zip member escapes the layer through a symlink: {name!r}")
    return path


def _clear(path: str) -> None:
    """Remove whatever an earlier layer put at ``path`` (a later layer wins)."""
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def _symlink(archive: zipfile.ZipFile, member: zipfile.ZipInfo, root: str, path: str) -> None:
    link = archive.read(member).decode("utf-8", "replace")
    resolved = os.path.normpath(os.path.join(os.path.dirname(path), link))
    if os.path.isabs(link) or not _inside(resolved, root):
        raise UnsafeLayer(f"zip symlink points outside the layer: {member.filename!r} -> {link!r}")
    _clear(path)
    os.symlink(link, path)


def extract_into(data: bytes, root: Path) -> None:
    """Extract the zip ``data`` over ``root`` (which exists), refusing unsafe members."""
    base = str(root)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for member in archive.infolist():
            path = _target_of(base, member.filename)
            mode = member.external_attr >> 16
            if member.is_dir() or stat.S_ISDIR(mode):
                if not os.path.isdir(path):
                    _clear(path)
                os.makedirs(path, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if stat.S_ISLNK(mode):
                _symlink(archive, member, base, path)
                continue
            _clear(path)
            with archive.open(member) as source, open(path, "wb") as target:
                shutil.copyfileobj(source, target, _CHUNK)
            os.chmod(path, 0o555 if mode & stat.S_IXUSR else 0o444)


def read_only(root: Path) -> None:
    """Everything readable by any sandbox uid, writable by none."""
    for parent, dirs, _files in os.walk(root):
        for name in dirs:
            path = os.path.join(parent, name)
            if not os.path.islink(path):
                os.chmod(path, 0o555)
    os.chmod(root, 0o555)


def _writable(root: Path) -> None:
    for parent, dirs, _files in os.walk(root):
        os.chmod(parent, 0o755)
        for name in dirs:
            path = os.path.join(parent, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755)


def remove(root: Path) -> None:
    if root.exists():
        _writable(root)
        shutil.rmtree(root, ignore_errors=True)


def merge(layers: Sequence[bytes], target: Path) -> None:
    """Unpack ``layers`` in order into a new directory ``target`` (atomically)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".merge-"))
    try:
        for data in layers:
            extract_into(data, staging)
        read_only(staging)
        os.rename(staging, target)
    except BaseException:
        remove(staging)
        raise


def cache_key(digests: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


class LayerCache:
    """``directory(digests)``: the merged layers, unpacked on first use, then reused."""

    def __init__(self, root: Path, fetch: Fetch) -> None:
        self._root = root
        self._fetch = fetch
        self._locks: dict[str, asyncio.Lock] = {}

    async def directory(self, digests: Sequence[str]) -> Path:
        key = cache_key(digests)
        target = self._root / key
        if target.is_dir():
            return target
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if not target.is_dir():
                contents = [await self._fetch(digest) for digest in digests]
                await asyncio.to_thread(merge, contents, target)
        self._locks.pop(key, None)
        return target

    async def evict(self, key: str) -> None:
        await asyncio.to_thread(remove, self._root / key)

    def cached(self) -> set[str]:
        return cache_entries(self._root)


def cache_entries(root: Path) -> set[str]:
    """Names of the finished entries under a cache root (staging directories start with a dot)."""
    if not root.is_dir():
        return set()
    return {entry.name for entry in root.iterdir() if not entry.name.startswith(".")}
