"""Storage contracts. Backends never leak their own types (rows, paths) upward."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import IO, Protocol

# (key, document) of one change another node committed; document None: deleted.
Apply = Callable[[str, "str | None"], Awaitable[None]]
Work = Callable[[], Awaitable[None]]


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


# A package to store: its bytes, or a binary file holding them (an upload spooled to
# disk: a 50 MB zip need not be read into memory to be stored).
PackageData = bytes | IO[bytes]


def read_package(data: PackageData) -> bytes:
    """The bytes of ``data``: a file is read whole from its start."""
    if isinstance(data, bytes):
        return data
    data.seek(0)
    return data.read()


class PackageStore(Protocol):
    """Content-addressed code packages (zip files), keyed by hex SHA-256."""

    async def put(self, digest: str, data: PackageData) -> None:
        """Store ``data`` under ``digest`` atomically; storing twice is harmless. A file
        is read from its start, in chunks where the backend can (never whole at once
        by the local, PostgreSQL and S3 stores)."""
        ...

    async def get(self, digest: str) -> bytes:
        """The package's bytes; raises KeyError when it is not stored."""
        ...

    async def delete(self, digest: str) -> None:
        """Remove a package; removing a missing one is not an error."""
        ...

    async def open(self) -> None:
        """Check the store can be used, or raise StartupRefused naming why."""
        ...

    async def close(self) -> None:
        """Release clients. Idempotent."""
        ...


class CodeSource(Protocol):
    """The users' own S3-compatible store, where CreateFunction's ``Code.S3Bucket`` (and
    UpdateFunctionCode's, PublishLayerVersion's ``Content``) point: read-only to ember,
    unrelated to where ember keeps its copies (``PackageStore``)."""

    async def fetch(self, bucket: str, key: str, version: str | None, limit: int) -> IO[bytes]:
        """The object (of ``version`` when given) in a file positioned at its start; the
        caller closes it. An object larger than ``limit`` bytes is refused before its
        body is read (InvalidParameterValue); one S3 will not give is refused with
        InvalidParameterValue naming S3's error code, in Lambda's words; a store that
        does not answer is StorageUnavailable. Never blocks the event loop."""
        ...

    async def close(self) -> None:
        """Release the client's connections. Idempotent."""
        ...


class ChangeFeed(Protocol):
    """Changes that *other* nodes commit to shared metadata, delivered to this node.

    Each component that keeps metadata in memory (the registry, layers, URLs,
    tools, limits, manifest objects, event-invoke configs) registers its
    namespace; the feed calls it back for every key another node changed, so
    that a change made through any node reaches every node's memory. Embedded
    mode has one process and its feed delivers nothing. The wake-up is a hint
    (PostgreSQL NOTIFY); the truth is a monotonic change sequence, re-read
    after a missed notification or a reconnect, so no change is skipped.
    """

    def watch(self, namespace: str, apply: Apply) -> None:
        """Call ``await apply(key, document)`` for each change another node commits
        to ``namespace``, in commit order (document None: the key was deleted).
        Register before ``run``; an exception in ``apply`` is logged, not fatal."""
        ...

    async def start(self) -> None:
        """Record the current position of the change sequence: ``run`` delivers what
        commits after it. Called before the components load their state, so that
        nothing committed after a load is missed (a change seen twice is harmless:
        ``apply`` is idempotent)."""
        ...

    async def run(self) -> None:
        """Deliver changes until cancelled or ``stop``; reconnects by itself."""
        ...

    def stop(self) -> None:
        """Make ``run`` return. Idempotent."""
        ...


class Leadership(Protocol):
    """Cluster-wide singleton duties (manifest controller, schedules, redrive).

    Exactly one node runs a duty at a time; when it dies (its database session
    ends) another node takes over. Embedded mode runs every duty at once.
    """

    async def hold(self, duty: str, work: Work) -> None:
        """Run ``work()`` only while this node holds ``duty``: wait for it while
        another node does; cancel ``work`` if the duty is lost, then wait for
        it again. Runs until cancelled (or until ``work`` returns or raises)."""
        ...

    def held(self) -> set[str]:
        """The duties whose work runs on this node now (for /health)."""
        ...
