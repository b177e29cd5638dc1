"""The in-process queue: product code for development and tests, not durable.

Per function, a heap of (visible_at, seq, id, lease) items with lazy
invalidation: an item is live only while its ``lease`` equals the entry's
current one, so ack, nack and new leases never search the heap.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ember.queue.arrivals import Arrivals
from ember.queue.base import (
    Clock,
    DeadLetter,
    Failure,
    FunctionStats,
    Message,
    NewEvent,
    QueueClosed,
    Visibility,
)
from ember.text import is_decimal


@dataclass(slots=True)
class _Entry:
    id: int
    function: str
    request_id: str
    payload: bytes
    enqueued_at: float
    visible_at: float
    lease: int = 0  # bumped on every receive and nack; the receipt names it
    in_flight: bool = False
    invocations: int = 0
    throttles: int = 0


@dataclass
class _Function:
    heap: list[tuple[float, int, int, int]] = field(default_factory=list)
    entries: dict[int, _Entry] = field(default_factory=dict)


class MemoryEventQueue:
    """See ``ember.queue.base.EventQueue`` and ``ConfigStore``."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._ids = itertools.count(1)
        self._seq = itertools.count()
        self._functions: dict[str, _Function] = {}
        self._rotation = 0
        self._dead: dict[str, dict[int, DeadLetter]] = {}
        self._configs: dict[tuple[str, str], str] = {}
        self._arrivals = Arrivals()
        self._closed = False

    def _check(self) -> None:
        if self._closed:
            raise QueueClosed("memory")

    def _push(self, entry: _Entry) -> None:
        item = (entry.visible_at, next(self._seq), entry.id, entry.lease)
        heapq.heappush(self._functions.setdefault(entry.function, _Function()).heap, item)

    def _add(self, event: NewEvent, now: float) -> None:
        entry = _Entry(next(self._ids), event.function, event.request_id, event.payload, now, now)
        self._functions.setdefault(event.function, _Function()).entries[entry.id] = entry
        self._push(entry)

    def _wake(self) -> None:
        self._arrivals.notify()

    async def enqueue(self, events: Sequence[NewEvent]) -> None:
        self._check()
        now = self._clock()
        for event in events:
            self._add(event, now)
        self._wake()

    # -- receive ---------------------------------------------------------------

    def _take(self, function: str, now: float, visibility: Visibility) -> Message | None:
        queue = self._functions[function]
        while queue.heap and queue.heap[0][0] <= now:
            _, _, entry_id, lease = heapq.heappop(queue.heap)
            entry = queue.entries.get(entry_id)
            if entry is None or entry.lease != lease:
                continue  # acknowledged, or superseded by a later lease
            entry.lease += 1
            entry.in_flight = True
            entry.visible_at = now + visibility(function)
            self._push(entry)  # the lease's expiry: receivable again then
            return self._message(entry)
        return None

    @staticmethod
    def _message(entry: _Entry) -> Message:
        return Message(
            id=str(entry.id),
            receipt=f"{entry.id}.{entry.lease}",
            function=entry.function,
            request_id=entry.request_id,
            payload=entry.payload,
            enqueued_at=entry.enqueued_at,
            invocations=entry.invocations,
            throttles=entry.throttles,
        )

    def _receive_now(self, limit: int, visibility: Visibility) -> list[Message]:
        now = self._clock()
        names = list(self._functions)
        if not names:
            return []
        start = self._rotation % len(names)
        self._rotation += 1
        active = names[start:] + names[:start]
        taken: list[Message] = []
        while active and len(taken) < limit:
            still: list[str] = []
            for name in active:  # one per function per round: round-robin
                message = self._take(name, now, visibility)
                if message is not None:
                    taken.append(message)
                    still.append(name)
                    if len(taken) >= limit:
                        break
            active = still
        for name in names:
            if not self._functions[name].entries:
                del self._functions[name]
        return taken

    def _next_visible(self) -> float | None:
        tops = [queue.heap[0][0] for queue in self._functions.values() if queue.heap]
        return min(tops) if tops else None

    async def receive(self, limit: int, visibility: Visibility, wait: float = 0.0) -> list[Message]:
        self._check()
        seen = self._arrivals.generation
        taken = self._receive_now(limit, visibility)
        if taken or wait <= 0:
            return taken
        soonest = self._next_visible()
        if soonest is not None:
            wait = min(wait, max(0.0, soonest - self._clock()))
        await self._arrivals.wait(seen, wait)
        return self._receive_now(limit, visibility)

    # -- settle ------------------------------------------------------------------

    def _leased(self, message: Message) -> _Entry | None:
        queue = self._functions.get(message.function)
        entry = queue.entries.get(int(message.id)) if queue else None
        if entry is None or message.receipt != f"{entry.id}.{entry.lease}":
            return None
        return entry

    async def ack(self, message: Message, follow_ups: Sequence[NewEvent] = ()) -> bool:
        self._check()
        entry = self._leased(message)
        if entry is None:
            return False
        del self._functions[message.function].entries[entry.id]
        if follow_ups:
            await self.enqueue(follow_ups)
        return True

    async def nack(self, message: Message, delay: float) -> bool:
        self._check()
        entry = self._leased(message)
        if entry is None:
            return False
        entry.lease += 1
        entry.in_flight = False
        entry.visible_at = self._clock() + delay
        entry.invocations = message.invocations
        entry.throttles = message.throttles
        self._push(entry)
        self._wake()  # waiting receivers recompute when to look again
        return True

    async def dead_letter(self, message: Message, failure: Failure) -> bool:
        self._check()
        entry = self._leased(message)
        if entry is None:
            return False
        del self._functions[message.function].entries[entry.id]
        letter = DeadLetter(
            id=str(next(self._ids)),
            function=entry.function,
            request_id=entry.request_id,
            payload=entry.payload,
            condition=failure.condition,
            error_type=failure.error_type,
            error_message=failure.error_message,
            invocations=message.invocations,
            enqueued_at=entry.enqueued_at,
            failed_at=self._clock(),
        )
        self._dead.setdefault(entry.function, {})[int(letter.id)] = letter
        return True

    # -- dead letters --------------------------------------------------------------

    async def dead_letters(
        self, function: str, after: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        self._check()
        floor = int(after) if after and is_decimal(after) else 0
        letters = self._dead.get(function, {})
        return [letters[key] for key in sorted(letters) if key > floor][:limit]

    async def get_dead_letter(self, function: str, dead_letter_id: str) -> DeadLetter | None:
        self._check()
        if not is_decimal(dead_letter_id):
            return None
        return self._dead.get(function, {}).get(int(dead_letter_id))

    async def redrive(self, function: str, ids: Sequence[str] | None = None) -> int:
        self._check()
        letters = self._dead.get(function, {})
        chosen = sorted(letters) if ids is None else [int(i) for i in ids if is_decimal(i)]
        now = self._clock()
        moved = 0
        for key in chosen:
            letter = letters.pop(key, None)
            if letter is not None:
                self._add(NewEvent(function, letter.request_id, letter.payload), now)
                moved += 1
        if moved:
            self._wake()
        return moved

    async def purge(self, function: str) -> int:
        self._check()
        return len(self._dead.pop(function, {}))

    async def discard(self, function: str) -> int:
        self._check()
        doomed = [name for name in self._functions if name.partition(":")[0] == function]
        # Leases of the removed entries turn stale: ack, nack and dead_letter find none.
        return sum(len(self._functions.pop(name).entries) for name in doomed)

    async def statistics(self) -> list[FunctionStats]:
        self._check()
        now = self._clock()
        stats = []
        for name in sorted(set(self._functions) | set(self._dead)):
            entries = (
                list(self._functions[name].entries.values()) if name in self._functions else []
            )
            in_flight = sum(1 for e in entries if e.in_flight and e.visible_at > now)
            oldest = min((e.enqueued_at for e in entries), default=None)
            if not entries and not self._dead.get(name):
                continue
            stats.append(
                FunctionStats(
                    function=name,
                    depth=len(entries) - in_flight,
                    in_flight=in_flight,
                    oldest_age_seconds=None if oldest is None else max(0.0, now - oldest),
                    retrying=sum(1 for e in entries if e.invocations or e.throttles),
                    dead_letters=len(self._dead.get(name, {})),
                )
            )
        return stats

    # -- configs -------------------------------------------------------------------

    async def load_configs(self) -> dict[tuple[str, str], str]:
        self._check()
        return dict(self._configs)

    async def put_config(self, function: str, qualifier: str, document: str) -> None:
        self._check()
        self._configs[(function, qualifier)] = document

    async def delete_config(self, function: str, qualifier: str) -> None:
        self._check()
        self._configs.pop((function, qualifier), None)

    def discard_configs(self, function: str) -> None:
        for key in [key for key in self._configs if key[0] == function]:
            del self._configs[key]

    async def close(self) -> None:
        self._closed = True
