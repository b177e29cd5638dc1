"""The invocation service, wired: logs, the event queue, event-invoke-configs, pollers.

Starts by loading the configs (after the registry: those of deleted functions
are dropped); runs the log writer and the pollers' supervisor; stops them
(deliveries in flight are cancelled before the sandboxes die, so they are
redelivered); closes the queue. Configs live next to the events in embedded
mode (``queue.sqlite3``) and in the ``configs`` metadata namespace in a
cluster, where other nodes' changes reach them through the feed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ember.config import Settings
from ember.control.wiring import ControlPlane
from ember.invoke.events import AsyncInvocation
from ember.invoke.logs import LogStore
from ember.invoke.service import InvocationService
from ember.lifecycle import Loop
from ember.observe.recorder import Recorder
from ember.queue import wiring as queue_wiring
from ember.queue.shared_configs import MetadataConfigStore
from ember.scheduling.executor import Executor
from ember.storage.wiring import Storage
from ember.throttle import Throttle


@dataclass(frozen=True)
class Invocation:
    logs: LogStore
    service: InvocationService
    asynchronous: AsyncInvocation

    @staticmethod
    def logs_of(settings: Settings) -> LogStore:
        """The function logs (built first: the sandboxes write into them)."""
        return LogStore(settings.data_dir.resolve() / "logs", settings.log_file_max_bytes)

    @classmethod
    def build(
        cls,
        settings: Settings,
        storage: Storage,
        control: ControlPlane,
        executor: Executor,
        throttle: Throttle,
        logs: LogStore,
        node: str,
        recorder: Recorder | None = None,
    ) -> Invocation:
        """``node``: this node's id, the owner of the queue leases it takes;
        ``recorder``: where calls and events are observed (None: nowhere)."""
        events = queue_wiring.build(
            settings.queue, storage.data_dir, database=storage.database, owner=node
        )
        service = InvocationService(
            control.registry,
            executor,
            logs,
            control.names,
            throttle,
            events=events,
            max_async_payload=settings.async_max_payload_bytes,
            recorder=recorder,
        )
        shared = None
        if storage.database is not None:
            shared = MetadataConfigStore(storage.metadata("configs"))
        asynchronous = AsyncInvocation.build(
            settings, events, control.registry, service.invoke, control.names, shared, recorder
        )
        storage.feed.watch("configs", asynchronous.configs.apply_remote)
        return cls(logs, service, asynchronous)

    async def start(self) -> None:
        await self.asynchronous.start()

    def loops(self) -> list[Loop]:
        return [self.logs.run(), self.asynchronous.supervisor.run()]

    def stop(self) -> None:
        self.asynchronous.supervisor.stop()
        self.logs.stop()

    async def close(self) -> None:
        await self.asynchronous.close()
