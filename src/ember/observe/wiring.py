"""Settings and the node's Storage in, observability's part of the lifespan out.

Embedded mode keeps the history and series in ``<data_dir>/history.sqlite3``;
cluster mode in the shared PostgreSQL (``postgres.MIGRATION``, applied with
storage's at start). The tracer exists only with ``--otlp-endpoint``: only
then is ``observe.tracing`` (and OpenTelemetry) imported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ember.config import Settings
from ember.errors import StartupRefused
from ember.lifecycle import Loop
from ember.observe.base import HistoryStore
from ember.observe.metrics import Exposition
from ember.observe.postgres import PostgresHistoryStore
from ember.observe.recorder import Recorder
from ember.observe.sqlite import FILE_NAME, SqliteHistoryStore
from ember.storage.wiring import Storage

if TYPE_CHECKING:
    from ember.observe.tracing import Tracer


def store(storage: Storage, node: str) -> HistoryStore:
    """The store of the node's mode: SQLite in the data dir, or the cluster's database."""
    if storage.database is None:
        return SqliteHistoryStore(storage.data_dir / FILE_NAME, node)
    return PostgresHistoryStore(storage.database, node)


def _tracer(endpoint: str, node: str) -> Tracer:
    try:
        from ember.observe.tracing import Tracer
    except ImportError as missing:
        raise StartupRefused(
            f"--otlp-endpoint needs the OpenTelemetry SDK ({missing.name} is not installed): "
            "pip install 'ember[otel]'"
        ) from None
    return Tracer.otlp(endpoint, node)


@dataclass(frozen=True)
class Observability:
    """The part (see ``ember.lifecycle.Part``): opens the store, runs the flush loop,
    writes what is pending on close and flushes the tracer's last spans."""

    recorder: Recorder
    tracer: Tracer | None

    @classmethod
    def build(cls, settings: Settings, storage: Storage, node: str) -> Observability:
        tracer = None
        if settings.otlp_endpoint:
            tracer = _tracer(settings.otlp_endpoint, node)
        recorder = Recorder(
            store(storage, node),
            node=node,
            history_size=settings.history_size,
            export=tracer.export if tracer is not None else None,
        )
        return cls(recorder, tracer)

    def exposition(self, sandboxes: Callable[[], Mapping[str, int]]) -> Exposition:
        """``GET /metrics``'s renderer; ``sandboxes``: this node's sandboxes by state."""
        return Exposition(self.recorder, sandboxes)

    async def start(self) -> None:
        await self.recorder.open()

    def loops(self) -> list[Loop]:
        return [self.recorder.run()]

    def stop(self) -> None:
        self.recorder.stop()

    async def close(self) -> None:
        await self.recorder.close()
        if self.tracer is not None:
            self.tracer.shutdown()
