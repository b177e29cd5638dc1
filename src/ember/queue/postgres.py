"""The cluster's durable queue: PostgreSQL tables, leases taken with SKIP LOCKED, group commit.

Accepts are committed in groups: ``enqueue`` hands its events to one writer
task, which takes every accept waiting at that moment, inserts them with ONE
statement (``unnest`` of arrays: one round trip, one commit, one fsync) and
only then answers their callers. A 202 therefore waits for one fsync shared
with every concurrent caller. Whatever did not commit raises, never returns.

Plain acks are grouped the same way (one DELETE for every ack waiting).
Everything else is one autocommit statement per call on the shared pool, so
each is atomic on its own: ``ack`` with follow-ups is a DELETE and an INSERT in
one statement, dead-lettering a DELETE feeding an INSERT, redrive the reverse.

Receive takes leases with ``FOR UPDATE SKIP LOCKED``, so any number of nodes
can drain one queue without handing a message out twice while it is leased.
A message's ``lease`` counter is bumped by every receive, nack and release;
the receipt names it, so a stale receipt matches no row and changes nothing.

Each node has a stable ``owner`` id. Opening the queue releases the leases
held by the same owner (a previous incarnation of this node, killed while
delivering); another node's leases wait out their visibility timeout, since
that node may be delivering them right now.

Visibility deadlines use the injected clock of the node that writes them, so
the nodes' clocks must agree (NTP) to well under a visibility timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg

from ember.errors import InvalidParameterValue
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
from ember.queue.batching import GroupCommit
from ember.storage.postgres import Database, Migration, unavailable
from ember.text import is_decimal

log = logging.getLogger("ember.queue")

MIGRATION = Migration(
    "queue",
    [
        """
        CREATE TABLE queue_events (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            function TEXT NOT NULL,
            request_id TEXT NOT NULL,
            payload BYTEA NOT NULL,
            enqueued_at DOUBLE PRECISION NOT NULL,
            -- ready, delayed until, or (leased) lease expiry
            visible_at DOUBLE PRECISION NOT NULL,
            -- the node holding the lease; NULL while queued
            owner TEXT,
            lease BIGINT NOT NULL DEFAULT 0,
            invocations INTEGER NOT NULL DEFAULT 0,
            throttles INTEGER NOT NULL DEFAULT 0
        -- a queue table churns: vacuum after 1 % of it changed, not the default 20 %
        ) WITH (
            autovacuum_vacuum_scale_factor = 0.01,
            autovacuum_vacuum_insert_scale_factor = 0.01
        );
        -- receive: per function, the oldest visible first
        CREATE INDEX queue_events_ready ON queue_events (function, visible_at, id);
        -- opening: this owner's leases (small: only leased rows are in it)
        CREATE INDEX queue_events_leased ON queue_events (owner) WHERE owner IS NOT NULL;
        CREATE TABLE queue_dead_letters (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            function TEXT NOT NULL,
            request_id TEXT NOT NULL,
            payload BYTEA NOT NULL,
            condition TEXT NOT NULL,
            error_type TEXT NOT NULL,
            error_message TEXT NOT NULL,
            invocations INTEGER NOT NULL,
            enqueued_at DOUBLE PRECISION NOT NULL,
            failed_at DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX queue_dead_letters_function ON queue_dead_letters (function, id);
        CREATE TABLE queue_configs (
            function TEXT NOT NULL,
            qualifier TEXT NOT NULL,
            document TEXT NOT NULL,
            PRIMARY KEY (function, qualifier)
        );
        """,
    ],
)

CHANNEL = "ember_queue"  # NOTIFY channel: "an event was accepted", payload = the sender
MAX_GROUP_CALLS = 1024  # calls answered by one group commit
MAX_GROUP_BYTES = 8 * 1024 * 1024  # payload bytes per group commit (payloads reach 1 MB)
LISTEN_RETRY_SECONDS = 1.0  # pause before the listener reconnects
RECHECK_SECONDS = 0.05  # a waiting receive's next look when events are visible but locked
_MAX_ID = 2**63 - 1

# Settles (receive, ack, nack, dead-letter) commit without waiting for the WAL
# flush, as SQLite's run with synchronous=NORMAL: a crash of PostgreSQL can
# revert only the last few of them, and a reverted settle means the event is
# delivered again (at least once), never an accept lost. WAL is ordered, so the
# next flushed commit (any accept) makes them durable too. Evaluated inside the
# statement, the setting lasts for its one transaction; the session keeps its own.
_NO_FLUSH = "(SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL"

# Inserts arrays of events in one statement and wakes the other nodes when it commits.
_INSERT = """
WITH added AS (
    INSERT INTO queue_events (function, request_id, payload, enqueued_at, visible_at)
    SELECT e.function, e.request_id, e.payload, %(now)s, %(now)s
    FROM unnest(%(functions)s::text[], %(requests)s::text[], %(payloads)s::bytea[])
        AS e(function, request_id, payload)
    RETURNING 1
)
SELECT count(*), pg_notify(%(channel)s, %(sender)s) FROM added
"""

# Functions with events, and when the first of each becomes visible: a skip
# scan of the (function, visible_at) index, one probe per function, not a scan
# of the backlog.
_FUNCTIONS = """
WITH RECURSIVE names(function) AS (
    (SELECT function FROM queue_events ORDER BY function LIMIT 1)
    UNION ALL
    SELECT (SELECT e.function FROM queue_events e WHERE e.function > n.function
            ORDER BY e.function LIMIT 1)
    FROM names n WHERE n.function IS NOT NULL
)
SELECT n.function,
       (SELECT min(e.visible_at) FROM queue_events e WHERE e.function = n.function)
FROM names n WHERE n.function IS NOT NULL
"""

# Fair leasing: each wanted function (in this receive's rotated order, its
# ``turn``) offers its oldest visible events, locked with SKIP LOCKED so
# concurrent receivers take disjoint rows; they are dealt round-robin (every
# function's first, then every function's second, ...) up to the limit.
_TAKE = f"""
WITH wanted AS (
    SELECT w.function, w.hidden, w.turn
    FROM unnest(%(functions)s::text[], %(hidden)s::float8[]) WITH ORDINALITY
        AS w(function, hidden, turn)
    WHERE {_NO_FLUSH}
), offered AS (
    SELECT c.id, w.hidden, w.turn,
           row_number() OVER (PARTITION BY w.turn ORDER BY c.visible_at, c.id) AS rank
    FROM wanted w CROSS JOIN LATERAL (
        SELECT e.id, e.visible_at FROM queue_events e
        WHERE e.function = w.function AND e.visible_at <= %(now)s
        ORDER BY e.visible_at, e.id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) c
), chosen AS (
    SELECT id, hidden, turn, rank FROM offered ORDER BY rank, turn LIMIT %(limit)s
)
UPDATE queue_events e
SET visible_at = %(now)s + chosen.hidden, owner = %(owner)s, lease = e.lease + 1
FROM chosen WHERE e.id = chosen.id
RETURNING e.id, e.function, e.request_id, e.payload, e.enqueued_at, e.invocations,
          e.throttles, e.lease, chosen.rank, chosen.turn
"""

# Every ack waiting at once; a receipt's (id, lease) comes back when its row went.
_ACK = f"""
DELETE FROM queue_events e
USING unnest(%(ids)s::bigint[], %(leases)s::bigint[]) AS a(id, lease)
WHERE e.id = a.id AND e.lease = a.lease AND {_NO_FLUSH}
RETURNING e.id, e.lease
"""

_ACK_WITH_FOLLOW_UPS = f"""
WITH gone AS (
    DELETE FROM queue_events WHERE id = %(id)s AND lease = %(lease)s AND {_NO_FLUSH}
    RETURNING id
), added AS (
    INSERT INTO queue_events (function, request_id, payload, enqueued_at, visible_at)
    SELECT e.function, e.request_id, e.payload, %(now)s, %(now)s
    FROM unnest(%(functions)s::text[], %(requests)s::text[], %(payloads)s::bytea[])
        AS e(function, request_id, payload)
    WHERE EXISTS (SELECT FROM gone)
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM added), pg_notify(%(channel)s, %(sender)s)
"""

_NACK = f"""
UPDATE queue_events
SET owner = NULL, visible_at = %(visible_at)s, lease = lease + 1,
    invocations = %(invocations)s, throttles = %(throttles)s
WHERE id = %(id)s AND lease = %(lease)s AND {_NO_FLUSH}
"""

_DEAD_LETTER = f"""
WITH gone AS (
    DELETE FROM queue_events WHERE id = %(id)s AND lease = %(lease)s AND {_NO_FLUSH}
    RETURNING function, request_id, payload, enqueued_at
)
INSERT INTO queue_dead_letters (function, request_id, payload, condition, error_type,
    error_message, invocations, enqueued_at, failed_at)
SELECT function, request_id, payload, %(condition)s, %(error_type)s, %(error_message)s,
    %(invocations)s, enqueued_at, %(now)s
FROM gone
"""

_LETTER_COLUMNS = (
    "id, function, request_id, payload, condition, error_type, error_message, invocations, "
    "enqueued_at, failed_at"
)

# Moves dead letters back, oldest first so that new ids keep their order; request ids stay.
_REDRIVE = """
WITH moved AS (
    DELETE FROM queue_dead_letters
    WHERE function = %(function)s AND (%(all)s OR id = ANY(%(ids)s::bigint[]))
    RETURNING id, request_id, payload
), added AS (
    INSERT INTO queue_events (function, request_id, payload, enqueued_at, visible_at)
    SELECT %(function)s, request_id, payload, %(now)s, %(now)s FROM moved ORDER BY id
    RETURNING 1
)
SELECT count(*), pg_notify(%(channel)s, %(sender)s) FROM added
"""

_QUEUED = """
SELECT function, count(*),
       count(*) FILTER (WHERE owner IS NOT NULL AND visible_at > %s),
       min(enqueued_at),
       count(*) FILTER (WHERE invocations > 0 OR throttles > 0)
FROM queue_events GROUP BY function
"""


class _State(enum.Enum):
    NEW = "new"  # constructed; the first call (or open) migrates and starts the tasks
    OPEN = "open"  # migrated, own leases released, the writers and the listener running
    CLOSED = "closed"  # every call raises QueueClosed


def _as_id(text: str) -> int | None:
    """A row id from its string form; None when it cannot name a row."""
    if not is_decimal(text) or len(text) > 19 or int(text) > _MAX_ID:
        return None
    return int(text)


def _lease_of(message: Message) -> tuple[int, int] | None:
    id_, _, lease = message.receipt.partition(".")
    ids = _as_id(id_), _as_id(lease)
    return None if ids[0] is None or ids[1] is None else (ids[0], ids[1])


def _validate(events: Sequence[NewEvent]) -> None:
    """Refuse what PostgreSQL text cannot hold before it could fail a whole group commit."""
    for event in events:
        if "\x00" in event.function or "\x00" in event.request_id:
            raise InvalidParameterValue("An event's function name or request id contains NUL.")


def _arrays(events: Sequence[NewEvent]) -> dict[str, list[Any]]:
    return {
        "functions": [event.function for event in events],
        "requests": [event.request_id for event in events],
        "payloads": [event.payload for event in events],
    }


class PostgresEventQueue:
    """See ``ember.queue.base.EventQueue`` and ``ConfigStore``; the module says how.

    ``open()`` migrates the schema, releases this owner's leases and starts the
    writer and the listener; the first call of any method does it when nobody
    did. ``owner`` is this node's stable id (None: a random one, so that a
    restart leaves the previous leases to their visibility timeout). The queue
    uses ``database.pool`` and one connection of its own for LISTEN; it never
    closes ``database``.
    """

    def __init__(self, database: Database, clock: Clock = time.time, owner: str | None = None):
        self._database = database
        self._clock = clock
        self._owner = owner or f"anonymous-{uuid.uuid4().hex}"
        self._sender = uuid.uuid4().hex  # this object's NOTIFYs, which its listener skips
        self._state = _State.NEW
        self._opening = asyncio.Lock()
        self._arrivals = Arrivals()
        self._rotation = 0
        self._accepts = GroupCommit(
            "ember-queue-accepts",
            self._insert,
            MAX_GROUP_CALLS,
            lambda events: sum(len(event.payload) for event in events),
            MAX_GROUP_BYTES,
        )
        self._acks = GroupCommit("ember-queue-acks", self._delete_leased, MAX_GROUP_CALLS)
        # Invariant: a function stays in _discards until its configs' deletion committed.
        self._discards: set[str] = set()
        self._discarding = asyncio.Lock()  # orders a pending discard before any config call
        self._discarder = GroupCommit("ember-queue-discards", self._discard, MAX_GROUP_CALLS)
        self._listener: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------

    async def open(self) -> None:
        """Migrate, release this owner's leases, start the tasks. Idempotent."""
        async with self._opening:
            self._check()
            if self._state is _State.OPEN:
                return
            try:
                await self._database.migrate(MIGRATION)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                raise unavailable(exc) from exc
            await self._release_own_leases()
            self._check()  # closed while this was opening: start nothing
            for writer in (self._accepts, self._acks, self._discarder):
                writer.start()
            self._listener = asyncio.create_task(self._listen(), name="ember-queue-listener")
            self._state = _State.OPEN
            if self._discards:
                self._discarder.submit_nowait("")

    async def close(self) -> None:
        """Commit the accepts already handed over, stop the tasks. Idempotent."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        for writer in (self._accepts, self._acks, self._discarder):
            await writer.close()  # commits what callers already handed over
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    def _check(self) -> None:
        if self._state is _State.CLOSED:
            raise QueueClosed("postgresql")

    async def _ready(self) -> None:
        self._check()
        if self._state is _State.NEW:
            await self.open()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection; a lost database becomes StorageUnavailable here, once."""
        try:
            async with self._database.pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise unavailable(exc) from exc

    async def _execute(self, query: str, params: Any = None) -> tuple[int, list[Any]]:
        """Run one autocommit statement (its own transaction): (rows affected, rows returned)."""
        async with self._connection() as conn:
            cursor = await conn.execute(query, params)
            rows = await cursor.fetchall() if cursor.description is not None else []
            return cursor.rowcount, rows

    async def _release_own_leases(self) -> None:
        released, _ = await self._execute(
            "UPDATE queue_events SET owner = NULL, visible_at = LEAST(visible_at, %s), "
            "lease = lease + 1 WHERE owner = %s",
            (self._clock(), self._owner),
        )
        if released:
            log.info("released %d event(s) left leased by this node's previous run", released)

    # -- enqueue: the group commit --------------------------------------------------

    async def enqueue(self, events: Sequence[NewEvent]) -> None:
        await self._ready()
        _validate(events)
        if not events:
            return
        self._check()  # closing may have begun while this call was opening the queue
        try:
            await self._accepts.submit(list(events))
        except psycopg.Error as exc:
            raise unavailable(exc) from exc
        self._arrivals.notify()

    async def _insert(self, groups: list[list[NewEvent]]) -> list[None]:
        """The accepts' group commit: every waiting caller's events in one statement."""
        events = [event for group in groups for event in group]
        params = {
            **_arrays(events),
            "now": self._clock(),
            "channel": CHANNEL,
            "sender": self._sender,
        }
        await self._execute(_INSERT, params)
        return [None] * len(groups)

    # -- receive -------------------------------------------------------------------

    async def receive(self, limit: int, visibility: Visibility, wait: float = 0.0) -> list[Message]:
        """Returns [] only once ``wait`` has passed: a wake-up that finds nothing waits on."""
        await self._ready()
        deadline = time.monotonic() + wait
        while True:
            seen = self._arrivals.generation
            taken, soonest = await self._take(limit, visibility)
            remaining = deadline - time.monotonic()
            if taken or remaining <= 0:
                return taken
            if soonest is not None:
                # Visible already yet not taken: another receiver holds it for a moment.
                remaining = min(remaining, max(RECHECK_SECONDS, soonest - self._clock()))
            await self._arrivals.wait(seen, remaining)

    async def _take(self, limit: int, visibility: Visibility) -> tuple[list[Message], float | None]:
        """Lease up to ``limit`` messages; with none, also when the next one becomes visible."""
        async with self._connection() as conn:
            now = self._clock()
            cursor = await conn.execute(_FUNCTIONS)
            functions = await cursor.fetchall()
            # A function emptied between the probes has no visible_at (NULL): skip it.
            visible = [(name, at) for name, at in functions if at is not None]
            ready = [name for name, at in visible if at <= now]
            if not ready or limit <= 0:
                return [], min((at for _, at in visible), default=None)
            start = self._rotation % len(ready)
            self._rotation += 1
            wanted = (ready[start:] + ready[:start])[:limit]  # a function beyond gets none
            params = {
                "functions": wanted,
                "hidden": [float(visibility(name)) for name in wanted],
                "now": now,
                "limit": limit,
                "owner": self._owner,
            }
            cursor = await conn.execute(_TAKE, params)
            rows = await cursor.fetchall()
        rows.sort(key=lambda row: (row[8], row[9]))  # dealt order: rank, then turn
        return [Message.from_row(row) for row in rows], None

    # -- settle ----------------------------------------------------------------------

    async def ack(self, message: Message, follow_ups: Sequence[NewEvent] = ()) -> bool:
        await self._ready()
        _validate(follow_ups)
        lease = _lease_of(message)
        if lease is None:
            return False
        if not follow_ups:
            self._check()
            try:
                return await self._acks.submit(lease)
            except psycopg.Error as exc:
                raise unavailable(exc) from exc
        params = {
            **_arrays(follow_ups),
            "id": lease[0],
            "lease": lease[1],
            "now": self._clock(),
            "channel": CHANNEL,
            "sender": self._sender,
        }
        _, rows = await self._execute(_ACK_WITH_FOLLOW_UPS, params)
        self._arrivals.notify()
        return bool(rows and rows[0][0] == 1)

    async def _delete_leased(self, leases: list[tuple[int, int]]) -> list[bool]:
        """The acks' group commit: True for each receipt whose row this deleted."""
        ids, numbers = [lease[0] for lease in leases], [lease[1] for lease in leases]
        _, rows = await self._execute(_ACK, {"ids": ids, "leases": numbers})
        deleted = {(int(row[0]), int(row[1])) for row in rows}
        done = []
        for lease in leases:
            done.append(lease in deleted)
            deleted.discard(lease)  # the same receipt acked twice at once: one True
        return done

    async def nack(self, message: Message, delay: float) -> bool:
        await self._ready()
        lease = _lease_of(message)
        if lease is None:
            return False
        params = {
            "visible_at": self._clock() + delay,
            "invocations": message.invocations,
            "throttles": message.throttles,
            "id": lease[0],
            "lease": lease[1],
        }
        updated, _ = await self._execute(_NACK, params)
        self._arrivals.notify()  # waiting receivers recompute when to look again
        return updated == 1

    async def dead_letter(self, message: Message, failure: Failure) -> bool:
        await self._ready()
        lease = _lease_of(message)
        if lease is None:
            return False
        params = {
            "id": lease[0],
            "lease": lease[1],
            "condition": failure.condition,
            "error_type": failure.error_type,
            "error_message": failure.error_message,
            "invocations": message.invocations,
            "now": self._clock(),
        }
        moved, _ = await self._execute(_DEAD_LETTER, params)
        return moved == 1

    # -- dead letters ----------------------------------------------------------------

    async def dead_letters(
        self, function: str, after: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        await self._ready()
        floor = (_as_id(after) if after else None) or 0
        _, rows = await self._execute(
            f"SELECT {_LETTER_COLUMNS} FROM queue_dead_letters WHERE function = %s AND id > %s "
            "ORDER BY id LIMIT %s",
            (function, floor, limit),
        )
        return [DeadLetter.from_row(row) for row in rows]

    async def get_dead_letter(self, function: str, dead_letter_id: str) -> DeadLetter | None:
        await self._ready()
        id_ = _as_id(dead_letter_id)
        if id_ is None:
            return None
        _, rows = await self._execute(
            f"SELECT {_LETTER_COLUMNS} FROM queue_dead_letters WHERE function = %s AND id = %s",
            (function, id_),
        )
        return DeadLetter.from_row(rows[0]) if rows else None

    async def redrive(self, function: str, ids: Sequence[str] | None = None) -> int:
        await self._ready()
        wanted = [] if ids is None else [i for i in map(_as_id, ids) if i is not None]
        params = {
            "function": function,
            "all": ids is None,
            "ids": wanted,
            "now": self._clock(),
            "channel": CHANNEL,
            "sender": self._sender,
        }
        _, rows = await self._execute(_REDRIVE, params)
        moved = int(rows[0][0])
        if moved:
            self._arrivals.notify()
        return moved

    async def purge(self, function: str) -> int:
        await self._ready()
        purged, _ = await self._execute(
            "DELETE FROM queue_dead_letters WHERE function = %s", (function,)
        )
        return purged

    async def discard(self, function: str) -> int:
        await self._ready()
        discarded, _ = await self._execute(
            "DELETE FROM queue_events WHERE function = %s OR starts_with(function, %s)",
            (function, function + ":"),
        )
        return discarded

    async def statistics(self) -> list[FunctionStats]:
        await self._ready()
        async with self._connection() as conn:
            now = self._clock()
            queued = {
                row[0]: row[1:] for row in await (await conn.execute(_QUEUED, (now,))).fetchall()
            }
            cursor = await conn.execute(
                "SELECT function, count(*) FROM queue_dead_letters GROUP BY function"
            )
            dead = {str(row[0]): int(row[1]) for row in await cursor.fetchall()}
        stats = []
        for name in sorted(set(queued) | set(dead)):
            count, in_flight, oldest, retrying = queued.get(name, (0, 0, None, 0))
            stats.append(
                FunctionStats(
                    function=name,
                    depth=count - in_flight,
                    in_flight=in_flight,
                    oldest_age_seconds=None if oldest is None else max(0.0, now - oldest),
                    retrying=retrying,
                    dead_letters=dead.get(name, 0),
                )
            )
        return stats

    # -- wake-ups from other nodes ---------------------------------------------------

    async def _listen(self) -> None:
        """The listener task: another node's accept wakes this node's waiting receivers.

        A connection of its own, outside the pool: it is held for the queue's
        life and may be cancelled mid-read, neither of which a pooled one should see.
        """
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._database.url, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._arrivals.notify()  # anything sent while not listening is unseen
                    async for note in conn.notifies():
                        if note.payload != self._sender:
                            self._arrivals.notify()
            except psycopg.Error as exc:
                log.warning("queue listener lost the database (%s); reconnecting", exc)
            await asyncio.sleep(LISTEN_RETRY_SECONDS)

    # -- configs ---------------------------------------------------------------------

    async def _apply_discards(self) -> None:
        """Delete the configs ``discard_configs`` scheduled; the lock orders it before reads."""
        async with self._discarding:
            names = sorted(self._discards)
            if names:
                await self._execute(
                    "DELETE FROM queue_configs WHERE function = ANY(%s::text[])", (names,)
                )
                self._discards.difference_update(names)

    async def _discard(self, names: list[str]) -> list[None]:
        """The discards' writer: applies every pending one (a failure leaves them pending)."""
        await self._apply_discards()
        return [None] * len(names)

    async def load_configs(self) -> dict[tuple[str, str], str]:
        await self._ready()
        await self._apply_discards()
        _, rows = await self._execute("SELECT function, qualifier, document FROM queue_configs")
        return {(row[0], row[1]): row[2] for row in rows}

    async def put_config(self, function: str, qualifier: str, document: str) -> None:
        await self._ready()
        await self._apply_discards()
        await self._execute(
            "INSERT INTO queue_configs (function, qualifier, document) VALUES (%s, %s, %s) "
            "ON CONFLICT (function, qualifier) DO UPDATE SET document = excluded.document",
            (function, qualifier, document),
        )

    async def delete_config(self, function: str, qualifier: str) -> None:
        await self._ready()
        await self._apply_discards()
        await self._execute(
            "DELETE FROM queue_configs WHERE function = %s AND qualifier = %s",
            (function, qualifier),
        )

    def discard_configs(self, function: str) -> None:
        """Hand the deletion to the discards' writer; any later config call applies it first."""
        if self._state is _State.CLOSED:
            return
        self._discards.add(function)
        if self._state is _State.OPEN:
            self._discarder.submit_nowait(function)
