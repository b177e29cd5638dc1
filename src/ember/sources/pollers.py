"""The pollers of event source mappings, under one supervisor.

The supervisor keeps one ``MappingPoller`` running per mapping that should be
consumed (enabled, not being disabled or deleted), restarts it when the
mapping's settings change, stops it otherwise, and then settles the mapping's
transitional state (``EventSourceMappings.settle``). Every node of a cluster
does the same: a RabbitMQ queue's consumers compete, so sharing is safe.

A poller connects (retrying with backoff while the broker is out of reach,
which ``LastProcessingResult`` says), starts one consumer, and adds one more
while the queue has a backlog, up to the function's reserved concurrency (or
``DEFAULT_MAX_CONSUMERS``), retiring them when it drains. A consumer takes a
batch (BatchSize or the window), invokes the function through the invocation
service, and acknowledges the batch only after the function succeeded; a
function error or a platform failure hands the batch back to the broker
(redelivered) after a backoff; a throttle waits and tries the same batch
again; a missing function holds it until the function exists again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from ember.errors import (
    BrokerUnavailable,
    EmberError,
    InvalidParameterValue,
    ResourceNotFound,
    TooManyRequests,
)
from ember.invoke.service import MAX_REQUEST, InvokeCommand, InvokeResult
from ember.sources.base import Consumer, Source
from ember.sources.mappings import EventSourceMappings, Mapping, State

log = logging.getLogger("ember.sources")

Invoke = Callable[[InvokeCommand], Awaitable[InvokeResult]]
SourceOf = Callable[[Mapping], Source]
ConcurrencyOf = Callable[[str], "int | None"]  # a function key -> its reserved concurrency
Sleep = Callable[[float], Awaitable[None]]

# Lambda's MQ pollers start with one consumer and add more with the backlog; without a
# reserved concurrency to bound them, this many per mapping and node.
DEFAULT_MAX_CONSUMERS = 5
SCALE_INTERVAL = 1.0
RETIRE_TIMEOUT = 10.0
# A broker client's close may wait on its socket (nats-py flushes and awaits
# the transport's close); shutdown and reconnects never wait longer than this.
CLOSE_TIMEOUT = 3.0
# A poller asked to stop ends within CLOSE_TIMEOUT; one still running this long after
# lost the request in a client library: the supervisor no longer waits for it.
STOP_GRACE = CLOSE_TIMEOUT + 2.0
OK = "OK"
_FUNCTION_MISSING = "PROBLEM: Function not found."
_FUNCTION_FAILED = "PROBLEM: Function call failed."


@dataclass(frozen=True)
class PollerStats:
    mappings: int  # pollers running on this node
    consumers: int
    batches: int  # invocations made
    succeeded: int  # batches acknowledged
    requeued: int  # batches handed back for redelivery


class Backoff:
    """Exponential delays from ``first`` to ``limit``; ``reset`` after a success."""

    def __init__(self, first: float, limit: float) -> None:
        self._first = first
        self._limit = limit
        self._next = first

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self._limit)
        return delay

    def reset(self) -> None:
        self._next = self._first


class _Counts:
    def __init__(self) -> None:
        self.consumers = 0
        self.batches = 0
        self.succeeded = 0
        self.requeued = 0


class MappingPoller:
    """One mapping's consumers on this node (see the module's docstring)."""

    def __init__(
        self,
        mapping: Mapping,
        mappings: EventSourceMappings,
        source_of: SourceOf,
        invoke: Invoke,
        concurrency_of: ConcurrencyOf,
        counts: _Counts,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._mapping = mapping
        self._mappings = mappings
        self._source_of = source_of
        self._invoke = invoke
        self._concurrency_of = concurrency_of
        self._counts = counts
        self._sleep = sleep
        self._consumers: set[asyncio.Task[None]] = set()
        self._retire = 0  # consumers asked to stop after their current batch
        self._failures = Backoff(0.1, 5.0)

    async def run(self) -> None:
        """Consume until cancelled, reconnecting with backoff."""
        backoff = Backoff(0.5, 30.0)
        while True:
            try:
                # A broker no longer declared (restarted without its --broker) is
                # refused here: reported and retried, never fatal to the supervisor.
                source = self._source_of(self._mapping)
                await open_source(source, self._mapping.uuid)
            except (BrokerUnavailable, InvalidParameterValue) as error:
                log.warning("event source mapping %s: %s", self._mapping.uuid, error.message)
                await self._report(f"PROBLEM: {error.message}")
                await self._sleep(backoff.next())
                continue
            backoff.reset()
            try:
                await self._session(source)
            except Exception:
                log.warning("mapping %s: session ended", self._mapping.uuid, exc_info=True)
            finally:
                await _close(source, self._mapping.uuid)
            await self._sleep(backoff.next())

    async def _session(self, source: Source) -> None:
        """Run consumers until the connection drops."""
        async with asyncio.TaskGroup() as group:
            await self._add(group, source)
            while not source.closed and self._consumers:
                _keep_cancellation()
                await self._sleep(SCALE_INTERVAL)
                await self._scale(group, source)
            for task in list(self._consumers):
                task.cancel()

    async def _scale(self, group: asyncio.TaskGroup, source: Source) -> None:
        try:
            backlog = await source.backlog()
        except BrokerUnavailable:
            return  # the consumers see the connection go and end the session
        reserved = self._concurrency_of(self._mapping.function)
        # Reserved 0 stops the function (every call throttled): one consumer waits.
        limit = DEFAULT_MAX_CONSUMERS if reserved is None else max(reserved, 1)
        running = len(self._consumers) - self._retire
        if backlog > 0 and running < limit:
            await self._add(group, source)
        elif backlog == 0 and running > 1:
            self._retire += 1

    async def _add(self, group: asyncio.TaskGroup, source: Source) -> None:
        try:
            consumer = await source.consumer(self._mapping.batch_size)
        except BrokerUnavailable as error:
            await self._report(f"PROBLEM: {error.message}")
            return
        task = group.create_task(self._consume(consumer))
        self._consumers.add(task)
        task.add_done_callback(self._consumers.discard)

    async def _consume(self, consumer: Consumer) -> None:
        self._counts.consumers += 1
        try:
            while True:
                batch = await consumer.batch(self._mapping.batch_size, self._mapping.window_seconds)
                if batch is None:
                    return
                _keep_cancellation()  # the batch goes back unacknowledged
                await self._deliver(consumer, batch)
                if self._retire > 0:
                    self._retire -= 1
                    return
        except Exception:
            # The channel went with its connection (or a bug of ours): what this
            # consumer held is redelivered; the session reconnects.
            log.warning("a consumer of mapping %s stopped", self._mapping.uuid, exc_info=True)
        finally:
            self._counts.consumers -= 1
            await _close(consumer, self._mapping.uuid)

    async def _deliver(self, consumer: Consumer, batch: Sequence[object]) -> None:
        """Invoke the function with ``batch`` and settle it (a batch over Lambda's 6 MB
        payload limit goes in halves: each half is a run of consecutive deliveries)."""
        payload = consumer.event(batch)
        if len(payload) > MAX_REQUEST and len(batch) > 1:
            half = len(batch) // 2
            await self._deliver(consumer, batch[:half])
            await self._deliver(consumer, batch[half:])
            return
        command = InvokeCommand(function=self._mapping.target, payload=payload)
        throttled = Backoff(0.05, 2.0)
        while True:
            if not self._mappings.function_exists(self._mapping):
                await self._report(_FUNCTION_MISSING)
                await self._sleep(1.0)
                continue
            try:
                result = await self._invoke(command)
            except TooManyRequests:
                await self._sleep(throttled.next())
                continue
            except ResourceNotFound:
                continue  # deleted meanwhile: held until it exists again
            except Exception as error:
                await self._requeue(consumer, batch, _problem(error))
                return
            self._counts.batches += 1
            if result.function_error:
                await self._requeue(consumer, batch, _FUNCTION_FAILED)
                return
            await consumer.ack(batch)
            self._counts.succeeded += 1
            self._failures.reset()
            await self._report(OK)
            return

    async def _requeue(self, consumer: Consumer, batch: Sequence[object], result: str) -> None:
        """Hand the batch back after a pause, so a failing function is not spun on."""
        self._counts.requeued += 1
        await self._report(result)
        await self._sleep(self._failures.next())
        await consumer.requeue(batch)

    async def _report(self, result: str) -> None:
        try:
            await self._mappings.report(self._mapping.uuid, result)
        except Exception:  # the store's outage must not stop consuming
            log.warning("could not record the result of mapping %s", self._mapping.uuid)


async def open_source(source: Source, mapping_id: str) -> None:
    """``source.open()``, never cut short by a cancellation of the caller.

    Broker clients handle a connect cut short badly. aio-pika loses a connection
    interrupted half made (open at the broker, held by no one), and the connect
    timeouts of aio-pika and nats-py go through Python 3.11's ``asyncio.wait_for``,
    which drops a cancellation landing as the call completes: a poller stopped while
    it connected went on consuming, and the supervisor waited for it forever. So the
    open runs as a task of its own; a cancelled caller lets it end (the client's
    connect timeout bounds it), closes the source, and ends."""
    opening = asyncio.ensure_future(source.open())
    try:
        await asyncio.shield(opening)
    except asyncio.CancelledError:
        await _unhurried(_close_once_open(opening, source, mapping_id))
        raise


async def _close_once_open(opening: Awaitable[None], source: Source, mapping_id: str) -> None:
    with contextlib.suppress(Exception):
        await opening
    await _close(source, mapping_id)


async def _unhurried(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` to its end, whatever cancellations reach this task meanwhile
    (the supervisor repeats them); the caller raises its own cancellation after."""
    task = asyncio.ensure_future(work)
    while not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)


def _keep_cancellation() -> None:
    """Raise the cancellation of this task that a broker client dropped: a call
    made through Python 3.11's ``asyncio.wait_for`` (as nats-py makes every
    request) returns as if never cancelled when the cancel lands as the call
    completes (fixed in 3.12). The task still counts the request."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _close(closable: Source | Consumer, mapping_id: str) -> None:
    """Close a broker connection or channel, giving up after ``CLOSE_TIMEOUT``."""
    try:
        await asyncio.wait_for(closable.close(), CLOSE_TIMEOUT)
    except TimeoutError:
        log.warning("mapping %s: the broker connection did not close in time", mapping_id)


def _problem(error: BaseException) -> str:
    if isinstance(error, EmberError):
        return f"PROBLEM: {error.code}: {error.message}"
    log.error("invoking for an event source mapping failed", exc_info=error)
    return "PROBLEM: Internal error."


def _spec(mapping: Mapping) -> tuple[object, ...]:
    """What a running poller was started with: a change restarts it."""
    return (
        mapping.target,
        mapping.event_source_arn,
        mapping.queue,
        mapping.vhost,
        mapping.batch_size,
        mapping.window,
    )


def _consumed(mapping: Mapping) -> bool:
    return mapping.enabled and mapping.state not in (
        State.DISABLING,
        State.DISABLED,
        State.DELETING,
    )


class EventSourcePollers:
    """The supervisor: one poller per consumed mapping, transitions settled."""

    def __init__(
        self,
        mappings: EventSourceMappings,
        source_of: SourceOf,
        invoke: Invoke,
        concurrency_of: ConcurrencyOf,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._mappings = mappings
        self._source_of = source_of
        self._invoke = invoke
        self._concurrency_of = concurrency_of
        self._sleep = sleep
        self._wake = asyncio.Event()
        self._stopping = False
        self._running: dict[str, tuple[tuple[object, ...], asyncio.Task[None]]] = {}
        self._unstopped: set[asyncio.Task[None]] = set()  # see _stop_poller
        self._counts = _Counts()
        mappings.subscribe(self._wake.set)

    def statistics(self) -> PollerStats:
        counts = self._counts
        return PollerStats(
            len(self._running), counts.consumers, counts.batches, counts.succeeded, counts.requeued
        )

    def stop(self) -> None:
        """Stop every poller (their unacknowledged messages return to the broker)."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Reconcile pollers with the mappings at every change, until ``stop``."""
        async with asyncio.TaskGroup() as group:
            while not self._stopping:
                self._wake.clear()
                await self._reconcile(group)
                await self._wake.wait()
            for task in [*(task for _, task in self._running.values()), *self._unstopped]:
                task.cancel()

    async def _reconcile(self, group: asyncio.TaskGroup) -> None:
        mappings = {mapping.uuid: mapping for mapping in self._mappings.all()}
        for task in self._unstopped:
            task.cancel()
        for mapping_id, (spec, task) in list(self._running.items()):
            mapping = mappings.get(mapping_id)
            if mapping is None or not _consumed(mapping) or _spec(mapping) != spec:
                del self._running[mapping_id]
                await self._stop_poller(mapping_id, task)
        for mapping in mappings.values():
            if _consumed(mapping) and mapping.uuid not in self._running:
                self._start(group, mapping)
        for mapping in mappings.values():
            if mapping.state is State.DELETING:
                await self._retire(mapping)
            if mapping.state.transient:
                await self._settle(mapping)

    async def _stop_poller(self, mapping_id: str, task: asyncio.Task[None]) -> None:
        """Cancel a poller and wait until it has ended, or for ``STOP_GRACE``: one that
        outlives it never holds up every other mapping's transitions. It is cancelled
        again at every reconcile and at shutdown; until it ends, its consumers compete
        with the new poller's, which a broker's queue allows."""
        task.cancel()
        # Waited for, not awaited: a CancelledError here must stay the
        # supervisor's own (its shutdown), never be mistaken for the poller's.
        done, _ = await asyncio.wait([task], timeout=STOP_GRACE)
        if not done:
            log.warning("the poller of mapping %s did not stop when asked", mapping_id)
            self._unstopped.add(task)
            task.add_done_callback(self._unstopped.discard)

    def _start(self, group: asyncio.TaskGroup, mapping: Mapping) -> None:
        poller = MappingPoller(
            mapping,
            self._mappings,
            self._source_of,
            self._invoke,
            self._concurrency_of,
            self._counts,
            self._sleep,
        )
        self._running[mapping.uuid] = (_spec(mapping), group.create_task(poller.run()))

    async def _retire(self, mapping: Mapping) -> None:
        """Remove what the broker keeps for a deleted mapping; best effort (a broker out
        of reach keeps an idle durable consumer, which its operator may delete)."""
        try:
            source = self._source_of(mapping)
        except EmberError:
            return
        try:
            await asyncio.wait_for(source.retire(), RETIRE_TIMEOUT)
        except Exception:
            log.warning("could not remove the broker's state of mapping %s", mapping.uuid)
        finally:
            await _close(source, mapping.uuid)

    async def _settle(self, mapping: Mapping) -> None:
        try:
            await self._mappings.settle(mapping.uuid, mapping.state)
        except Exception:  # the store's outage: the next change (or restart) retries
            log.warning("could not settle mapping %s", mapping.uuid, exc_info=True)


__all__ = ["Backoff", "EventSourcePollers", "MappingPoller", "PollerStats", "open_source"]
