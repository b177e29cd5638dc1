"""The poller supervisor: N delivery slots draining the queue through the sync path.

One fetch loop takes as many messages as there are free slots (the backend
hands them out round-robin across functions, so one function's backlog does
not starve another's) and starts one delivery task per message, all in the
supervisor's own task group. A delivery calls ``deliver`` (the invocation
service, injected so this package never imports it), asks ``retry.decide``
what the outcome means, and settles the message: ack (with an OnSuccess
record), nack with a delay, fail (an OnFailure record, else a dead letter),
or drop (ack, nothing else) when the function was deleted meanwhile.

A delivery that dies (cancelled at shutdown, a bug, a crashed process)
settles nothing: the message is received again after its visibility timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from ember.control.arns import LATEST, Arns, split
from ember.queue.base import Clock, EventQueue, Failure, Message, NewEvent, Visibility
from ember.queue.configs import EventInvokeConfigs
from ember.queue.records import error_of, invocation_record
from ember.queue.retry import Action, Attempt, Outcome, Verdict, decide

log = logging.getLogger("ember.queue")

Deliver = Callable[[Message], Awaitable[Attempt]]
IdFactory = Callable[[], str]
MAX_BATCH = 64


class Observer(Protocol):
    """What the supervisor reports per event (``ember.observe.recorder.Recorder``);
    ``function`` is the function's name, without the event's qualifier. Never raises."""

    def event_age(self, function: str, seconds: float) -> None:
        """An attempt to deliver an event starts ``seconds`` after it was accepted."""

    def event_dropped(self, function: str) -> None:
        """An event is given up (retries or age exhausted, or its function deleted)."""

    def dead_lettered(self, function: str) -> None:
        """An event given up went to the dead letters."""

    def destination_failed(self, function: str) -> None:
        """A destination record could not be sent (the destination does not exist)."""


class _Unobserved:
    def event_age(self, function: str, seconds: float) -> None:
        pass

    def event_dropped(self, function: str) -> None:
        pass

    def dead_lettered(self, function: str) -> None:
        pass

    def destination_failed(self, function: str) -> None:
        pass


@dataclass(frozen=True)
class PollerStats:
    pollers: int
    busy: int
    delivered: int  # attempts made (function invoked, throttled or failed)
    succeeded: int
    retried: int  # nacked for a later attempt
    failed: int  # gave up: routed to OnFailure or dead-lettered
    dropped: int  # discarded: the function was deleted while the event was in flight


class Supervisor:
    def __init__(
        self,
        queue: EventQueue,
        deliver: Deliver,
        configs: EventInvokeConfigs,
        visibility: Visibility,
        exists: Callable[[str], bool],
        new_request_id: IdFactory,
        names: Arns,
        pollers: int,
        clock: Clock = time.time,
        idle_wait: float = 1.0,
        observer: Observer | None = None,
    ) -> None:
        self._queue = queue
        self._observer: Observer = observer or _Unobserved()
        self._deliver = deliver
        self._configs = configs
        self._visibility = visibility
        self._exists = exists
        self._new_id = new_request_id
        self._arns = names
        self._pollers = pollers
        self._clock = clock
        self._idle_wait = idle_wait
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy = 0
        self._counts = {"delivered": 0, "succeeded": 0, "retried": 0, "failed": 0, "dropped": 0}

    def statistics(self) -> PollerStats:
        return PollerStats(self._pollers, self._busy, **self._counts)

    def stop(self) -> None:
        """Stop taking messages and cancel deliveries in flight (they are redelivered later)."""
        self._stopping.set()
        for task in list(self._tasks):
            task.cancel()

    async def run(self) -> None:
        """Drain the queue until ``stop``; owned by the server's lifespan task group."""
        if self._pollers <= 0:
            await self._stopping.wait()
            return
        slots = asyncio.Semaphore(self._pollers)
        async with asyncio.TaskGroup() as group:
            self._track(group.create_task(self._fetch(group, slots)))
            await self._stopping.wait()
            for task in list(self._tasks):
                task.cancel()

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self._stopping.is_set():
            task.cancel()

    async def _fetch(self, group: asyncio.TaskGroup, slots: asyncio.Semaphore) -> None:
        while not self._stopping.is_set():
            await slots.acquire()
            take = 1
            while take < MAX_BATCH and not slots.locked():
                await slots.acquire()
                take += 1
            try:
                messages = await self._queue.receive(take, self._visibility, self._idle_wait)
            except Exception:
                for _ in range(take):
                    slots.release()
                log.exception("receiving from the event queue failed; retrying")
                await asyncio.sleep(self._idle_wait)
                continue
            for _ in range(take - len(messages)):
                slots.release()
            for message in messages:
                self._track(group.create_task(self._slot(message, slots)))

    async def _slot(self, message: Message, slots: asyncio.Semaphore) -> None:
        self._busy += 1
        try:
            await self.handle(message)
        except Exception:
            log.exception("delivering event %s of %s failed", message.request_id, message.function)
        finally:
            self._busy -= 1
            slots.release()

    async def handle(self, message: Message) -> None:
        """Deliver one message and settle it (public for tests that drive one step)."""
        policy = self._configs.policy(message.function)
        if policy.expired(message, self._clock()):
            await self._fail(Verdict(Action.FAIL, message, condition="EventAgeExceeded"), None)
            return
        self._observer.event_age(split(message.function)[0], self._clock() - message.enqueued_at)
        attempt = await self._deliver(message)
        self._counts["delivered"] += 1
        verdict = decide(policy, message, attempt, self._clock())
        if verdict.action is Action.RETRY:
            self._counts["retried"] += 1
            await self._queue.nack(verdict.message, verdict.delay)
        elif verdict.action is Action.ACK:
            self._counts["succeeded"] += 1
            await self._queue.ack(message, self._on_success(message, attempt))
        elif verdict.action is Action.DROP:
            await self._drop(message)
        else:
            await self._fail(verdict, attempt)

    async def _drop(self, message: Message) -> None:
        self._counts["dropped"] += 1
        self._observer.event_dropped(split(message.function)[0])
        log.info("%s no longer exists; event %s dropped", message.function, message.request_id)
        await self._queue.ack(message)

    def _record(
        self, target: str, message: Message, condition: str, count: int, attempt: Attempt | None
    ) -> NewEvent:
        name, qualifier = split(message.function)
        arn = self._arns.function(name, qualifier or LATEST)
        payload = invocation_record(message, arn, condition, count, attempt, self._clock())
        return NewEvent(target, self._new_id(), payload)

    def _target(self, destination: str | None, message: Message) -> str | None:
        if destination is None:
            return None
        target = self._configs.destination_function(destination)
        if target is None or not self._exists(target):
            self._observer.destination_failed(split(message.function)[0])
            log.warning(
                "destination %s of %s does not exist; event %s not routed",
                destination,
                message.function,
                message.request_id,
            )
            return None
        return target

    def _on_success(self, message: Message, attempt: Attempt) -> list[NewEvent]:
        config = self._configs.lookup(message.function)
        target = self._target(config.on_success if config else None, message)
        if target is None:
            return []
        return [self._record(target, message, "Success", message.invocations + 1, attempt)]

    async def _fail(self, verdict: Verdict, attempt: Attempt | None) -> None:
        self._counts["failed"] += 1
        message = verdict.message
        self._observer.event_dropped(split(message.function)[0])
        config = self._configs.lookup(message.function)
        destination = config.on_failure if config else None
        target = self._target(destination, message)
        if target is not None:
            ran = attempt if attempt and attempt.outcome is Outcome.FUNCTION_ERROR else None
            record = self._record(target, message, verdict.condition, message.invocations, ran)
            await self._queue.ack(message, [record])
            return
        error_type, error_message = error_of(attempt)
        if destination is not None:
            error_message = f"OnFailure destination {destination} not found. {error_message}"
        await self._queue.dead_letter(
            message, Failure(verdict.condition, error_type, error_message.strip())
        )
        self._observer.dead_lettered(split(message.function)[0])
