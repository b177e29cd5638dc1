"""Schedule triggers: each firing is an asynchronous invoke, none missed or doubled.

Terminology: a *schedule* is one (function, expression) pair; its *cursor*
is the scheduled time of its last firing, stored durably (one row per
schedule in ``schedules.sqlite3``). Every tick, each schedule fires every
scheduled time after its cursor up to now, in order, advancing the cursor
after each enqueue. A firing's request id is derived from the function,
the expression and the scheduled time, so a firing enqueued again after a
crash between enqueue and cursor write (the only window) carries the same
request id. A new schedule starts from the moment it was registered; after
a long outage at most ``MAX_CATCH_UP`` missed firings are made.

Which schedules exist is read, every tick, from ``wanted`` (the triggers of the
manifest objects whose function exists), which every node holds in memory:
so whichever node holds the ``schedules`` duty knows them, and on taking the
duty it re-reads the cursors another node may have advanced. One holder at a
time (``Leadership``) means one firing per scheduled time across the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ember.control.objects import FunctionObjects
from ember.manifests import schedule as expressions
from ember.storage.base import MetadataStore

log = logging.getLogger("ember.control")

MAX_CATCH_UP = 100
_IDS = uuid.UUID("6f1c0b5e-6a0e-4d0c-9a55-3f2f3e0c9e11")

Fire = Callable[[str, datetime, str, dict[str, Any] | None], Awaitable[None]]
Clock = Callable[[], datetime]
# function -> its schedule triggers as (expression, payload or None).
Triggers = dict[str, list[tuple[str, dict[str, Any] | None]]]
Wanted = Callable[[], Triggers]


# Every tick re-reads the wanted schedules; their expressions are parsed once.
_parse = functools.lru_cache(maxsize=4096)(expressions.parse)


def manifest_triggers(objects: FunctionObjects, exists: Callable[[str], bool]) -> Triggers:
    """The schedule triggers of every Function object whose function exists (the
    controller made it) and is not being deleted."""
    found: Triggers = {}
    for key in objects.all_keys():
        body = objects.lookup(*key)
        if body is None or body["metadata"].get("deletionTimestamp") or not exists(key[1]):
            continue
        triggers = body["spec"].get("triggers") or []
        found[key[1]] = [(t["schedule"], t.get("payload")) for t in triggers if "schedule" in t]
    return found


def firing_id(function: str, expression: str, moment: datetime) -> str:
    """The request id of one firing: the same for the same scheduled time, always."""
    return str(uuid.uuid5(_IDS, f"{function}|{expression}|{moment.isoformat()}"))


@dataclass(frozen=True)
class _Entry:
    function: str
    schedule: expressions.Schedule
    payload: dict[str, Any] | None

    @property
    def key(self) -> str:
        return f"{self.function}|{self.schedule.expression}"


class Scheduler:
    def __init__(
        self,
        store: MetadataStore,
        fire: Fire,
        wanted: Wanted,
        clock: Clock = lambda: datetime.now(UTC),
        minute_seconds: float = 60.0,
    ) -> None:
        self._store = store
        self._fire = fire
        self._wanted = wanted
        self._clock = clock
        self._minute = minute_seconds
        self._entries: dict[str, _Entry] = {}
        self._cursors: dict[str, datetime] = {}
        self._dropped: set[str] = set()  # cursors to delete durably
        self._stopping = asyncio.Event()
        self.tick = min(1.0, minute_seconds / 4)

    async def load(self) -> None:
        """(Re-)read every cursor: another node may have advanced them."""
        stored = await self._store.load_all()
        self._cursors = {key: datetime.fromisoformat(moment) for key, moment in stored.items()}

    def _sync(self) -> None:
        """Make the registered schedules those ``wanted`` names now."""
        wanted = self._wanted()
        for function in {entry.function for entry in self._entries.values()} - set(wanted):
            self.set(function, [])
        for function, triggers in wanted.items():
            try:
                self.set(function, triggers)
            except ValueError as exc:  # the controller reports it on the object
                log.warning("schedule of %s not registered: %s", function, exc)

    def set(self, function: str, triggers: list[tuple[str, dict[str, Any] | None]]) -> None:
        """Make ``function``'s schedules exactly ``triggers`` (expression, payload); idempotent."""
        wanted = {
            entry.key: entry
            for entry in (_Entry(function, _parse(text), payload) for text, payload in triggers)
        }
        for key in [k for k, e in self._entries.items() if e.function == function]:
            if key not in wanted:
                del self._entries[key]
                self._dropped.add(key)
        self._entries.update(wanted)
        self._dropped -= set(wanted)

    def remove(self, function: str) -> None:
        self.set(function, [])

    def registered(self, function: str) -> list[str]:
        return sorted(
            e.schedule.expression for e in self._entries.values() if e.function == function
        )

    async def run(self) -> None:
        """Re-read the cursors, then fire due schedules until ``stop``. Runs while
        this node holds the ``schedules`` duty."""
        await self.load()
        while not self._stopping.is_set():
            await self.fire_due()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.tick)

    def stop(self) -> None:
        self._stopping.set()

    async def fire_due(self) -> int:
        """One tick: fire everything due; return how many firings were made."""
        self._sync()
        for key in list(self._dropped):
            await self._store.delete(key)
            self._cursors.pop(key, None)
            self._dropped.discard(key)
        fired = 0
        for entry in list(self._entries.values()):
            fired += await self._catch_up(entry, self._clock())
        return fired

    async def _catch_up(self, entry: _Entry, now: datetime) -> int:
        cursor = self._cursors.get(entry.key)
        if cursor is None:
            await self._advance(entry.key, now)
            return 0
        fired = 0
        due = entry.schedule.next_after(cursor, self._minute)
        while due <= now and entry.key in self._entries:
            if fired == MAX_CATCH_UP:
                log.warning("schedule %s: skipping firings missed before %s", entry.key, now)
                await self._advance(entry.key, now)
                break
            try:
                rid = firing_id(entry.function, entry.schedule.expression, due)
                await self._fire(entry.function, due, rid, entry.payload)
            except Exception:
                log.exception("schedule %s: firing for %s failed; retrying", entry.key, due)
                break
            await self._advance(entry.key, due)
            fired += 1
            due = entry.schedule.next_after(due, self._minute)
        return fired

    async def _advance(self, key: str, moment: datetime) -> None:
        await self._store.put(key, moment.isoformat())
        self._cursors[key] = moment
