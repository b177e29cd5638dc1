"""Event source mappings, wired: the service, its store and feed, the pollers.

Starts by loading the mappings (after the registry); runs the pollers'
supervisor; stops it (unacknowledged messages return to their broker, to be
redelivered); closes nothing (the store is the Storage's). In a cluster other
nodes' changes reach the service through the feed (namespace ``mappings``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ember.config import Settings
from ember.control.wiring import ControlPlane
from ember.errors import ResourceNotFound
from ember.lifecycle import Loop
from ember.sources.base import Source
from ember.sources.brokers import NATS, Brokers, stream_of
from ember.sources.jetstream import ACK_MARGIN, JetStreamSource
from ember.sources.mappings import EventSourceMappings, Mapping
from ember.sources.pollers import EventSourcePollers, Invoke
from ember.sources.rabbitmq import RabbitSource
from ember.storage.wiring import Storage
from ember.throttle import Throttle


@dataclass(frozen=True)
class EventSources:
    mappings: EventSourceMappings
    pollers: EventSourcePollers

    @classmethod
    def build(
        cls,
        settings: Settings,
        storage: Storage,
        control: ControlPlane,
        throttle: Throttle,
        invoke: Invoke,
    ) -> EventSources:
        brokers = Brokers(settings.brokers)
        registry = control.registry

        def exists(key: str, qualifier: str | None) -> bool:
            try:
                registry.version(key, qualifier)
            except ResourceNotFound:
                return False
            return True

        def timeout_of(mapping: Mapping) -> float:
            try:
                return float(registry.version(mapping.function, mapping.qualifier).timeout)
            except ResourceNotFound:
                return 3.0

        def source_of(mapping: Mapping) -> Source:
            broker = brokers.resolve(mapping.event_source_arn)
            arn = mapping.event_source_arn
            if broker.kind == NATS:
                stream = stream_of(arn) or ""
                durable = f"ember-{mapping.uuid}"
                ack_wait = timeout_of(mapping) + ACK_MARGIN
                return JetStreamSource(broker, stream, mapping.queue, durable, arn, ack_wait)
            return RabbitSource(broker, mapping.queue, mapping.vhost, arn)

        def concurrency_of(key: str) -> int | None:
            return throttle.limits.get(key).reserved

        mappings = EventSourceMappings(
            storage.metadata("mappings"), exists, control.names, brokers, tags=control.tags
        )
        storage.feed.watch("mappings", mappings.apply_remote)
        pollers = EventSourcePollers(mappings, source_of, invoke, concurrency_of)
        return cls(mappings, pollers)

    async def start(self) -> None:
        await self.mappings.load()

    def loops(self) -> list[Loop]:
        return [self.pollers.run()]

    def stop(self) -> None:
        self.pollers.stop()

    async def close(self) -> None:
        return None
