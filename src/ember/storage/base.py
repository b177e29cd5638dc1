"""Storage contracts. Backends never leak their own types (rows, paths) upward."""

from __future__ import annotations

from typing import Protocol


class MetadataStore(Protocol):
    """Durable function records, keyed by function name.

    A record is an opaque JSON document owned by the control plane. Every
    write is durable when the call returns.
    """

    async def load_all(self) -> dict[str, str]:
        """Every record, name -> JSON document."""
        ...

    async def put(self, name: str, document: str) -> None:
        """Create or replace the record ``name``."""
        ...

    async def delete(self, name: str) -> None:
        """Remove ``name``; removing a missing record is not an error."""
        ...

    async def close(self) -> None:
        """Release the connection. Idempotent."""
        ...


class PackageStore(Protocol):
    """Content-addressed code packages (zip files), keyed by hex SHA-256."""

    async def put(self, digest: str, data: bytes) -> None:
        """Store ``data`` under ``digest`` atomically; storing twice is harmless."""
        ...

    async def get(self, digest: str) -> bytes:
        """The package's bytes; raises KeyError when it is not stored."""
        ...

    async def delete(self, digest: str) -> None:
        """Remove a package; removing a missing one is not an error."""
        ...
