"""The PostgreSQL event queue on its own: accepts/s and accept latency, then drain rate.

1. Accept: ``--clients`` concurrent enqueuers, one event per call, for
   ``--seconds``; accepts/s, accept p50/p99, and events per commit (from
   ``pg_stat_database``) to show the group commit at work.
2. Drain: ``--pollers`` concurrent consumers receive up to ``--batch`` events
   and ack each, until the backlog the accept phase left is gone; events/s.

Runs against a fresh database on the PostgreSQL at ``--admin-url`` (created,
then dropped). Targets: 5,000 accepts/s with p99 <= 15 ms.

    .venv/bin/python bench/bench_queue_pg.py [--clients 64] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import psycopg

from ember.queue.base import NewEvent
from ember.queue.postgres import PostgresEventQueue
from ember.storage.postgres import Database

ADMIN_URL = os.environ.get("EMBER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
PAYLOAD = b'{"order": 12345, "customer": "c-0001", "items": [1, 2, 3], "note": "benchmark"}'
TARGET_ACCEPTS = 5_000
TARGET_P99_MS = 15.0
FUNCTIONS = 4  # events spread over a few functions, as fair receive sees them


@dataclass
class AcceptResult:
    accepts: int
    seconds: float
    latencies: list[float]
    commits: int

    def report(self) -> str:
        ordered = sorted(self.latencies)
        p50 = statistics.median(ordered) * 1000
        p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
        rate = self.accepts / self.seconds
        verdict = "met" if rate >= TARGET_ACCEPTS and p99 <= TARGET_P99_MS else "MISSED"
        return (
            f"accept: {rate:,.0f} accepts/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
            f"{self.accepts / max(self.commits, 1):.1f} events per commit "
            f"(target >= {TARGET_ACCEPTS:,}/s with p99 <= {TARGET_P99_MS} ms: {verdict})"
        )


@contextlib.asynccontextmanager
async def fresh_database(admin_url: str, pool_size: int) -> AsyncIterator[Database]:
    name = f"ember_bench_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
        await admin.execute(f'CREATE DATABASE "{name}"')
        database = Database(admin_url.rsplit("/", 1)[0] + f"/{name}", 2, pool_size)
        try:
            await database.open()
            yield database
        finally:
            await database.close()
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def commits(database: Database) -> int:
    async with database.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        row = await cursor.fetchone()
        return int(row[0]) if row else 0


async def accept_phase(
    queue: PostgresEventQueue, database: Database, clients: int, seconds: float
) -> AcceptResult:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client(index: int) -> None:
        serial = 0
        while time.perf_counter() < deadline:
            event = NewEvent(f"fn-{index % FUNCTIONS}", f"{index}-{serial}", PAYLOAD)
            started = time.perf_counter()
            await queue.enqueue([event])
            latencies.append(time.perf_counter() - started)
            serial += 1

    before = await commits(database)
    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.perf_counter() - started
    # pg_stat_database lags by up to its flush interval (about 1 s); the idle wait lets it catch up.
    await asyncio.sleep(1.5)
    made = await commits(database) - before - 1  # minus the reading's own
    return AcceptResult(len(latencies), elapsed, latencies, made)


async def drain_phase(queue: PostgresEventQueue, pollers: int, batch: int) -> tuple[int, float]:
    drained = 0
    hidden = 300.0

    async def poller() -> None:
        nonlocal drained
        while True:
            messages = await queue.receive(batch, lambda function: hidden)
            if not messages:
                return
            for message in messages:
                await queue.ack(message)
            drained += len(messages)

    started = time.perf_counter()
    await asyncio.gather(*(poller() for _ in range(pollers)))
    return drained, time.perf_counter() - started


async def main(args: argparse.Namespace) -> None:
    async with fresh_database(args.admin_url, args.pool) as database:
        queue = PostgresEventQueue(database, owner="bench")
        await queue.open()
        try:
            await accept_phase(queue, database, args.clients, 1.0)  # warm-up
            result = await accept_phase(queue, database, args.clients, args.seconds)
            print(result.report())
            drained, elapsed = await drain_phase(queue, args.pollers, args.batch)
            print(
                f"drain: {drained / elapsed:,.0f} events/s ({drained:,} events, "
                f"{args.pollers} pollers, receive up to {args.batch} + ack each)"
            )
        finally:
            await queue.close()


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default=ADMIN_URL)
    parser.add_argument("--clients", type=int, default=64, help="concurrent enqueuers")
    parser.add_argument("--seconds", type=float, default=10.0, help="accept phase length")
    parser.add_argument("--pollers", type=int, default=32, help="concurrent drainers")
    parser.add_argument("--batch", type=int, default=10, help="receive limit")
    parser.add_argument("--pool", type=int, default=8, help="connections in the pool")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main(args))
    else:
        asyncio.run(main(args))


if __name__ == "__main__":
    run()
