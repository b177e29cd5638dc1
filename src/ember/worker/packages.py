"""Unpacked code, cached on the worker by digest and shared by every sandbox.

A function's zip is unpacked as a layer's is (``layers.extract_into``): its
symlinks are kept when they stay inside, and no member lands outside. The
control plane judged the zip at upload (``control.zips``); these checks are
the second line, for a package stored before that judgement existed.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from ember.worker.layers import UnsafeLayer, cache_entries, extract_into, read_only, remove

Fetch = Callable[[str], Awaitable[bytes]]
# The package's own name for the refusal (one class: the same checks guard both).
UnsafePackage = UnsafeLayer

__all__ = ["CodeCache", "UnsafePackage", "cache_entries"]


def _unpack(data: bytes, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".unpack-"))
    try:
        extract_into(data, staging)
        # Read-only for everyone: the sandbox also mounts it read-only.
        read_only(staging)
        os.rename(staging, target)
    except BaseException:
        remove(staging)
        raise


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
        await asyncio.to_thread(remove, self._root / digest)

    def cached(self) -> set[str]:
        return cache_entries(self._root)
