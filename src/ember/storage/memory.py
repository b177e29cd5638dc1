"""In-process storage: product code for tests and throwaway servers, not a mock."""

from __future__ import annotations

from ember.storage.base import PackageData, read_package


class MemoryMetadataStore:
    """See ``ember.storage.base.MetadataStore``; forgets everything on exit."""

    def __init__(self) -> None:
        self._records: dict[str, str] = {}

    async def load_all(self) -> dict[str, str]:
        return dict(self._records)

    async def put(self, name: str, document: str) -> None:
        self._records[name] = document

    async def delete(self, name: str) -> None:
        self._records.pop(name, None)

    async def close(self) -> None:
        return None


class MemoryPackageStore:
    """See ``ember.storage.base.PackageStore``."""

    def __init__(self) -> None:
        self._packages: dict[str, bytes] = {}

    async def put(self, digest: str, data: PackageData) -> None:
        self._packages.setdefault(digest, read_package(data))

    async def get(self, digest: str) -> bytes:
        return self._packages[digest]

    async def delete(self, digest: str) -> None:
        self._packages.pop(digest, None)

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None
