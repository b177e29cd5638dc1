"""The asynchronous side of the invocation service: pollers deliver through ``invoke``.

``EventDelivery`` turns one queued message into a synchronous invocation
with the event's own request id (the function sees the same
``context.aws_request_id`` on every attempt) and classifies what happened
for ``ember.queue.retry``: a function error spends a retry, a throttle or a
platform failure does not, a function that no longer exists drops the event.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ember.config import Settings
from ember.control.arns import Arns, split
from ember.control.registry import FunctionRegistry
from ember.errors import EmberError, PlatformError, ResourceNotFound, TooManyRequests
from ember.invoke.service import InvokeCommand, InvokeResult, new_request_id
from ember.queue.base import ConfigStore, Message, QueueBackend
from ember.queue.configs import EventInvokeConfigs
from ember.queue.pollers import Observer, Supervisor
from ember.queue.retry import Attempt, Outcome

log = logging.getLogger("ember.invoke")

Invoke = Callable[[InvokeCommand], Awaitable[InvokeResult]]


class EventDelivery:
    def __init__(self, invoke: Invoke) -> None:
        self._invoke = invoke

    async def __call__(self, message: Message) -> Attempt:
        command = InvokeCommand(
            function=message.function,
            payload=message.payload,
            request_id=message.request_id,
            origin="async",
        )
        try:
            result = await self._invoke(command)
        except TooManyRequests as exc:
            return Attempt(Outcome.THROTTLED, 429, error_type=exc.code, error_message=exc.message)
        except ResourceNotFound as exc:
            return Attempt(Outcome.NOT_FOUND, 404, error_type=exc.code, error_message=exc.message)
        except PlatformError as exc:
            return Attempt(
                Outcome.PLATFORM_ERROR, 500, error_type=exc.code, error_message=exc.message
            )
        except EmberError as exc:
            # The event was validated when accepted; a client error now is ours to retry.
            return Attempt(
                Outcome.PLATFORM_ERROR, 400, error_type=exc.code, error_message=exc.message
            )
        except Exception as exc:
            log.exception("invoking %s for event %s failed", message.function, message.request_id)
            return Attempt(
                Outcome.PLATFORM_ERROR, 500, error_type="ServiceException", error_message=str(exc)
            )
        outcome = Outcome.FUNCTION_ERROR if result.function_error else Outcome.SUCCESS
        return Attempt(
            outcome,
            result.status,
            result.body,
            result.function_error,
            result.executed_version,
        )


@dataclass(frozen=True)
class AsyncInvocation:
    """Everything asynchronous invocation adds, wired: queue, configs, pollers."""

    queue: QueueBackend
    configs: EventInvokeConfigs
    supervisor: Supervisor

    @classmethod
    def build(
        cls,
        settings: Settings,
        queue: QueueBackend,
        registry: FunctionRegistry,
        invoke: Invoke,
        names: Arns,
        config_store: ConfigStore | None = None,
        observer: Observer | None = None,
    ) -> AsyncInvocation:
        """``config_store``: where event-invoke-configs live (default: the queue's own);
        ``observer``: told of each event's age and fate (metrics)."""

        def exists(target: str) -> bool:
            """Whether ``name`` or ``name:qualifier`` (a version or alias) exists."""
            name, qualifier = split(target)
            try:
                registry.version(name, qualifier)
            except ResourceNotFound:
                return False
            return True

        def visibility(target: str) -> float:
            name, qualifier = split(target)
            try:
                timeout = registry.version(name, qualifier).timeout  # a version's own
            except ResourceNotFound:
                timeout = 0
            return timeout + settings.init_timeout_seconds + settings.visibility_margin_seconds

        configs = EventInvokeConfigs(
            config_store or queue, exists, names, settings.retry_base_delay_seconds
        )
        configs.prune_orphans = config_store is None  # embedded: the only writer
        registry.subscribe(configs.forget)

        async def drop_events(name: str) -> None:
            """A deleted function's pending events and dead letters (its versions'
            and aliases' too) go with it, so none reaches or reappears under a new
            function of the same name. Events in flight go too (their pollers'
            receipts turn stale); one accepted meanwhile is dropped at delivery
            (``retry.Outcome.NOT_FOUND``)."""
            discarded = await queue.discard(name)
            if discarded:
                log.info("discarded %d pending event(s) of deleted function %s", discarded, name)
            targets = {s.function for s in await queue.statistics() if split(s.function)[0] == name}
            for target in targets | {name}:
                await queue.purge(target)

        registry.on_delete(drop_events)
        supervisor = Supervisor(
            queue,
            EventDelivery(invoke),
            configs,
            visibility,
            exists,
            new_request_id,
            names,
            settings.pollers,
            observer=observer,
        )
        return cls(queue, configs, supervisor)

    async def start(self) -> None:
        """Load the configs (after the registry: configs of deleted functions are dropped)."""
        await self.configs.load()

    async def close(self) -> None:
        await self.queue.close()
