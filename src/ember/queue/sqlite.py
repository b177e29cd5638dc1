"""The durable queue: SQLite in WAL mode with ``synchronous=FULL`` and group commit.

One writer thread owns the connection. Callers hand it operations; it takes
every operation waiting at that moment, runs them in ONE transaction (each
in its own savepoint, so one failure does not undo the others), commits, and
only then resolves their futures. A 202 therefore waits for one fsync shared
with every concurrent caller, instead of an fsync each: that is what makes
thousands of durable accepts per second possible.

Only transactions that hold an accept (``enqueue``, ``redrive``, configs) are
fsynced (``synchronous=FULL``); receives, acks, nacks and dead-lettering run
with ``NORMAL``. That is safe: WAL frames are ordered, so the next FULL commit
makes them durable too, a kill -9 loses nothing either way (the OS has the
pages), and a power cut can only revert a settle, never an accept: the event
reappears and is delivered again (at least once). An ack and the destination
record it creates share one transaction, so they revert together.

Embedded mode has one owner per data dir, so leases left by a previous
process (killed while delivering) are released when the queue opens.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue as stdqueue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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
from ember.storage.sqlite import open_wal
from ember.text import is_decimal

log = logging.getLogger("ember.queue")

MAX_BATCH = 1024  # operations per transaction

# steps[i] brings the file's user_version from i to i + 1 (see
# ember.storage.sqlite.migrate); step 1 is the first release's schema, whose
# files carry user_version 0 with the tables present: idempotent DDL.
STEPS: tuple[str, ...] = (
    """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    function TEXT NOT NULL,
    request_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    enqueued_at REAL NOT NULL,
    visible_at REAL NOT NULL,   -- ready, delayed until, or (in flight) lease expiry
    in_flight INTEGER NOT NULL DEFAULT 0,
    lease INTEGER NOT NULL DEFAULT 0,
    invocations INTEGER NOT NULL DEFAULT 0,
    throttles INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_ready ON events(function, visible_at);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    function TEXT NOT NULL,
    request_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    condition TEXT NOT NULL,
    error_type TEXT NOT NULL,
    error_message TEXT NOT NULL,
    invocations INTEGER NOT NULL,
    enqueued_at REAL NOT NULL,
    failed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_function ON dead_letters(function, id);
CREATE TABLE IF NOT EXISTS event_invoke_configs (
    function TEXT NOT NULL,
    qualifier TEXT NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (function, qualifier)
);
""",
)

Operation = Callable[[sqlite3.Connection], Any]
# (operation, future, its loop, durable: must be fsynced before the future resolves)
_Job = tuple[Operation, "asyncio.Future[Any] | None", "asyncio.AbstractEventLoop | None", bool]
_COLUMNS = "id, function, request_id, payload, enqueued_at, invocations, throttles, lease"
_LETTER_COLUMNS = (
    "id, function, request_id, payload, condition, error_type, error_message, invocations, "
    "enqueued_at, failed_at"
)


def _resolve(results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, value, error in results:
        if future.done():
            continue  # the caller gave up (cancelled); the write stands
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)


class _Writer:
    """The one thread that owns the connection and commits operations in groups."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._jobs: stdqueue.SimpleQueue[_Job | None] = stdqueue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ember-queue", daemon=True)
        self._ready = threading.Event()
        self._open_error: BaseException | None = None
        self._synced = True  # the connection's synchronous mode is FULL
        self._thread.start()
        self._ready.wait()
        if self._open_error is not None:
            raise self._open_error

    def submit(self, operation: Operation, durable: bool = False) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._jobs.put((operation, future, loop, durable))
        return future

    def submit_nowait(self, operation: Operation) -> None:
        self._jobs.put((operation, None, None, True))

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def _connect(self) -> sqlite3.Connection:
        return open_wal(self._path, STEPS)

    def _run(self) -> None:
        try:
            db = self._connect()
        except BaseException as exc:
            self._open_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                first = self._jobs.get()
                if first is None:
                    return
                batch = [first]
                stopping = False
                while len(batch) < MAX_BATCH:
                    try:
                        job = self._jobs.get_nowait()
                    except stdqueue.Empty:
                        break
                    if job is None:
                        stopping = True
                        break
                    batch.append(job)
                self._commit(db, batch)
                if stopping:
                    return
        finally:
            db.close()

    def _commit(self, db: sqlite3.Connection, batch: list[_Job]) -> None:
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        durable = any(job[3] for job in batch)
        if durable != self._synced:
            db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._synced = durable
        try:
            db.execute("BEGIN IMMEDIATE")
            for job in batch:
                db.execute("SAVEPOINT op")
                try:
                    outcomes.append((job, job[0](db), None))
                    db.execute("RELEASE op")
                except Exception as exc:
                    db.execute("ROLLBACK TO op")
                    db.execute("RELEASE op")
                    outcomes.append((job, None, exc))
            db.execute("COMMIT")
        except Exception as exc:
            log.exception("queue transaction failed; %d operation(s) not applied", len(batch))
            if db.in_transaction:
                db.execute("ROLLBACK")
            outcomes = [(job, None, exc) for job in batch]
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for (_, future, loop, _), value, error in outcomes:
            if future is not None and loop is not None:
                by_loop.setdefault(loop, []).append((future, value, error))
            elif error is not None:
                log.error("queue write failed: %s", error)
        for loop, results in by_loop.items():
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, results)


def _lease_of(message: Message) -> tuple[int, int]:
    id_, _, lease = message.receipt.partition(".")
    return int(id_), int(lease)


class _Reader:
    """A read-only connection for snapshots that scan the whole queue (statistics).

    WAL readers never block the writer: a scan of a large backlog here does
    not hold up receives and acks, as it would on the writer's thread. It sees
    every transaction committed before it starts, so a caller that awaited an
    operation sees its effect.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def run(self, operation: Operation) -> Any:
        with self._lock:
            if self._db is None:
                uri = f"{self._path.resolve().as_uri()}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            return operation(self._db)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class SqliteEventQueue:
    """See ``ember.queue.base.EventQueue`` and ``ConfigStore``."""

    def __init__(self, path: Path, clock: Clock = time.time) -> None:
        self._clock = clock
        self._writer = _Writer(path)
        self._reader = _Reader(path)
        self._closed = False
        self._arrivals = Arrivals()
        # Functions that may have events; the writer thread alone reads and writes it.
        self._functions: list[str] = []
        self._rotation = 0
        self._writer.submit_nowait(self._recover)

    def _recover(self, db: sqlite3.Connection) -> None:
        now = self._clock()
        released = db.execute(
            "UPDATE events SET in_flight = 0, visible_at = ?, lease = lease + 1 "
            "WHERE in_flight = 1",
            (now,),
        ).rowcount
        if released:
            log.info("released %d event(s) left in flight by a previous server", released)
        rows = db.execute("SELECT DISTINCT function FROM events").fetchall()
        self._functions = [row[0] for row in rows]

    async def _run(self, operation: Operation, durable: bool = False) -> Any:
        if self._closed:
            raise QueueClosed("sqlite")
        return await self._writer.submit(operation, durable)

    # -- enqueue ---------------------------------------------------------------

    def _insert(self, db: sqlite3.Connection, events: Sequence[NewEvent], now: float) -> None:
        db.executemany(
            "INSERT INTO events(function, request_id, payload, enqueued_at, visible_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [(e.function, e.request_id, e.payload, now, now) for e in events],
        )
        for event in events:
            if event.function not in self._functions:
                self._functions.append(event.function)

    def _wake(self) -> None:
        self._arrivals.notify()

    async def enqueue(self, events: Sequence[NewEvent]) -> None:
        await self._run(lambda db: self._insert(db, events, self._clock()), durable=True)
        self._wake()

    # -- receive ---------------------------------------------------------------

    def _ready(self, db: sqlite3.Connection, function: str, now: float, count: int) -> list[Any]:
        return db.execute(
            f"SELECT {_COLUMNS} FROM events WHERE function = ? AND visible_at <= ? "
            "ORDER BY visible_at, id LIMIT ?",
            (function, now, count),
        ).fetchall()

    def _empty(self, db: sqlite3.Connection, function: str) -> bool:
        row = db.execute("SELECT 1 FROM events WHERE function = ? LIMIT 1", (function,)).fetchone()
        return row is None and function in self._functions

    def _take(
        self, db: sqlite3.Connection, limit: int, visibility: Visibility
    ) -> tuple[list[Message], float | None]:
        now = self._clock()
        names = list(self._functions)
        if not names:
            return [], None
        start = self._rotation % len(names)
        self._rotation += 1
        active = names[start:] + names[:start]
        rows: list[Any] = []
        while active and len(rows) < limit:
            share = max(1, math.ceil((limit - len(rows)) / len(active)))
            still = []
            for name in active:
                found = self._ready(db, name, now, min(share, limit - len(rows)))
                # Leased at once, so a later round of this same receive cannot select them again.
                hidden_until = now + visibility(name)
                db.executemany(
                    "UPDATE events SET in_flight = 1, visible_at = ?, lease = lease + 1 "
                    "WHERE id = ?",
                    [(hidden_until, row[0]) for row in found],
                )
                rows.extend(found)
                if len(found) == share:
                    still.append(name)
                elif not found and self._empty(db, name):
                    self._functions.remove(name)
                if len(rows) >= limit:
                    break
            active = still
        taken = [Message.from_row((*row[:7], row[7] + 1)) for row in rows]
        soonest = None
        if not taken:
            soonest = db.execute("SELECT MIN(visible_at) FROM events").fetchone()[0]
        return taken, soonest

    async def receive(self, limit: int, visibility: Visibility, wait: float = 0.0) -> list[Message]:
        seen = self._arrivals.generation
        taken, soonest = await self._run(lambda db: self._take(db, limit, visibility))
        if taken or wait <= 0:
            return list(taken)
        if soonest is not None:
            wait = min(wait, max(0.0, soonest - self._clock()))
        await self._arrivals.wait(seen, wait)
        taken, _ = await self._run(lambda db: self._take(db, limit, visibility))
        return list(taken)

    # -- settle ------------------------------------------------------------------

    def _delete_leased(self, db: sqlite3.Connection, message: Message) -> bool:
        id_, lease = _lease_of(message)
        cursor = db.execute("DELETE FROM events WHERE id = ? AND lease = ?", (id_, lease))
        return cursor.rowcount == 1

    def _ack(
        self, db: sqlite3.Connection, message: Message, follow_ups: Sequence[NewEvent]
    ) -> bool:
        if not self._delete_leased(db, message):
            return False
        if follow_ups:
            self._insert(db, follow_ups, self._clock())
        return True

    async def ack(self, message: Message, follow_ups: Sequence[NewEvent] = ()) -> bool:
        done = bool(await self._run(lambda db: self._ack(db, message, follow_ups)))
        if follow_ups:
            self._wake()
        return done

    def _nack(self, db: sqlite3.Connection, message: Message, delay: float) -> bool:
        id_, lease = _lease_of(message)
        cursor = db.execute(
            "UPDATE events SET in_flight = 0, visible_at = ?, lease = lease + 1, "
            "invocations = ?, throttles = ? WHERE id = ? AND lease = ?",
            (self._clock() + delay, message.invocations, message.throttles, id_, lease),
        )
        return cursor.rowcount == 1

    async def nack(self, message: Message, delay: float) -> bool:
        done = bool(await self._run(lambda db: self._nack(db, message, delay)))
        self._wake()  # waiting receivers recompute when to look again
        return done

    def _dead_letter(self, db: sqlite3.Connection, message: Message, failure: Failure) -> bool:
        if not self._delete_leased(db, message):
            return False
        db.execute(
            "INSERT INTO dead_letters(function, request_id, payload, condition, error_type, "
            "error_message, invocations, enqueued_at, failed_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                message.function,
                message.request_id,
                message.payload,
                failure.condition,
                failure.error_type,
                failure.error_message,
                message.invocations,
                message.enqueued_at,
                self._clock(),
            ),
        )
        return True

    async def dead_letter(self, message: Message, failure: Failure) -> bool:
        return bool(await self._run(lambda db: self._dead_letter(db, message, failure)))

    # -- dead letters --------------------------------------------------------------

    async def dead_letters(
        self, function: str, after: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        floor = int(after) if after and is_decimal(after) else 0
        rows = await self._run(
            lambda db: db.execute(
                f"SELECT {_LETTER_COLUMNS} FROM dead_letters WHERE function = ? AND id > ? "
                "ORDER BY id LIMIT ?",
                (function, floor, limit),
            ).fetchall()
        )
        return [DeadLetter.from_row(row) for row in rows]

    async def get_dead_letter(self, function: str, dead_letter_id: str) -> DeadLetter | None:
        if not is_decimal(dead_letter_id):
            return None
        row = await self._run(
            lambda db: db.execute(
                f"SELECT {_LETTER_COLUMNS} FROM dead_letters WHERE function = ? AND id = ?",
                (function, int(dead_letter_id)),
            ).fetchone()
        )
        return None if row is None else DeadLetter.from_row(row)

    def _redrive(self, db: sqlite3.Connection, function: str, ids: Sequence[str] | None) -> int:
        query = "SELECT id, request_id, payload FROM dead_letters WHERE function = ?"
        rows = db.execute(query + " ORDER BY id", (function,)).fetchall()
        if ids is not None:
            wanted = {int(i) for i in ids if is_decimal(i)}
            rows = [row for row in rows if row[0] in wanted]
        self._insert(db, [NewEvent(function, row[1], bytes(row[2])) for row in rows], self._clock())
        db.executemany("DELETE FROM dead_letters WHERE id = ?", [(row[0],) for row in rows])
        return len(rows)

    async def redrive(self, function: str, ids: Sequence[str] | None = None) -> int:
        moved = int(await self._run(lambda db: self._redrive(db, function, ids), durable=True))
        if moved:
            self._wake()
        return moved

    async def purge(self, function: str) -> int:
        return int(
            await self._run(
                lambda db: (
                    db.execute("DELETE FROM dead_letters WHERE function = ?", (function,)).rowcount
                )
            )
        )

    async def discard(self, function: str) -> int:
        def delete(db: sqlite3.Connection) -> int:
            prefix = function + ":"
            return db.execute(
                "DELETE FROM events WHERE function = ? OR substr(function, 1, ?) = ?",
                (function, len(prefix), prefix),
            ).rowcount

        return int(await self._run(delete, durable=True))

    def _statistics(self, db: sqlite3.Connection) -> list[FunctionStats]:
        now = self._clock()
        queued = {
            row[0]: row[1:]
            for row in db.execute(
                "SELECT function, COUNT(*), SUM(in_flight = 1 AND visible_at > ?), "
                "MIN(enqueued_at), SUM(invocations > 0 OR throttles > 0) "
                "FROM events GROUP BY function",
                (now,),
            )
        }
        dead = dict(
            db.execute("SELECT function, COUNT(*) FROM dead_letters GROUP BY function").fetchall()
        )
        stats = []
        for name in sorted(set(queued) | set(dead)):
            count, in_flight, oldest, retrying = queued.get(name, (0, 0, None, 0))
            stats.append(
                FunctionStats(
                    function=name,
                    depth=count - (in_flight or 0),
                    in_flight=in_flight or 0,
                    oldest_age_seconds=None if oldest is None else max(0.0, now - oldest),
                    retrying=retrying or 0,
                    dead_letters=dead.get(name, 0),
                )
            )
        return stats

    async def statistics(self) -> list[FunctionStats]:
        if self._closed:
            raise QueueClosed("sqlite")
        return list(await asyncio.to_thread(self._reader.run, self._statistics))

    # -- configs -------------------------------------------------------------------

    async def load_configs(self) -> dict[tuple[str, str], str]:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT function, qualifier, document FROM event_invoke_configs"
            ).fetchall()
        )
        return {(row[0], row[1]): row[2] for row in rows}

    async def put_config(self, function: str, qualifier: str, document: str) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT INTO event_invoke_configs(function, qualifier, document) VALUES (?,?,?) "
                "ON CONFLICT(function, qualifier) DO UPDATE SET document = excluded.document",
                (function, qualifier, document),
            ),
            durable=True,
        )

    async def delete_config(self, function: str, qualifier: str) -> None:
        await self._run(
            lambda db: db.execute(
                "DELETE FROM event_invoke_configs WHERE function = ? AND qualifier = ?",
                (function, qualifier),
            ),
            durable=True,
        )

    def discard_configs(self, function: str) -> None:
        if not self._closed:
            self._writer.submit_nowait(
                lambda db: db.execute(
                    "DELETE FROM event_invoke_configs WHERE function = ?", (function,)
                )
            )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(None, self._writer.stop)
        await asyncio.to_thread(self._reader.close)
