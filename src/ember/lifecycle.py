"""What every subsystem's wiring hands the server: its part of the process lifespan.

The server starts parts in the order it lists them, runs every part's loops
in one task group, and on shutdown stops them all, then closes them in
reverse order. A part owns what it built, except the metadata stores and
blobs, which ``ember.storage.wiring.Storage`` owns and closes last.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, Protocol

Loop = Coroutine[Any, Any, None]


class Part(Protocol):
    async def start(self) -> None:
        """Load state and start what must run before the server answers."""
        ...

    def loops(self) -> list[Loop]:
        """The background loops to run in the lifespan's task group (may be none)."""
        ...

    def stop(self) -> None:
        """Make every loop return soon. Idempotent."""
        ...

    async def close(self) -> None:
        """Release what ``start`` acquired; after every part has stopped."""
        ...
