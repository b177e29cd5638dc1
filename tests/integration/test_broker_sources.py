"""The broker sources (RabbitMQ at 127.0.0.1:5672, NATS JetStream at 127.0.0.1:4222)
as a poller opens them, stopped at any moment by a change to its mapping.
Deliveries end to end are in ``tests/e2e/test_event_source_mappings*.py``."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

import aio_pika
import nats
import pytest

from ember.sources.base import Source
from ember.sources.brokers import Broker
from ember.sources.jetstream import JetStreamSource
from ember.sources.pollers import open_source
from ember.sources.rabbitmq import RabbitSource

AMQP = "amqp://guest:guest@127.0.0.1:5672/"
NATS_URL = "nats://127.0.0.1:4222"


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def sockets_to(port: int) -> int:
    """This process's TCP connections to ``port`` (its socket fds matched with the
    kernel's connection table)."""
    mine = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            mine.add(target[len("socket:[") : -1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in mine:
                count += 1
    return count


async def stopped_at_random(make: Callable[[], Source], port: int, attempts: int) -> None:
    """Open sources with ``open_source`` and cancel each at a random moment (before,
    during or after its connect): every poller must stop, nothing left connected.

    Before ``open_source``, 1 in 20 to 50 of these went on as if never cancelled (the
    clients' connect timeouts go through Python 3.11's wait_for), and an aio-pika
    connect cut short half made stayed open at the broker, held by no one."""
    rng = random.Random(7)
    for attempt in range(attempts):
        source = make()

        async def poller(source: Source = source) -> None:
            await open_source(source, "test")
            try:
                await asyncio.sleep(60)  # consuming, until cancelled
            finally:
                await source.close()

        task = asyncio.create_task(poller())
        await asyncio.sleep(rng.random() * 0.03)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=10)
        assert done, f"attempt {attempt}: the cancelled poller went on"
        assert task.cancelled(), f"attempt {attempt}: {task}"
        assert source.closed
    await asyncio.sleep(0.5)  # closes in flight end
    assert sockets_to(port) == 0


@pytest.mark.skipif(
    not answers(5672), reason="no RabbitMQ at 127.0.0.1:5672 (scripts/services.sh starts one)"
)
def test_a_rabbitmq_source_stopped_at_any_moment_stops_and_closes() -> None:
    queue = f"ember-test-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        connection = await aio_pika.connect(AMQP)
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue(queue, durable=True, arguments={"x-expires": 600_000})
        broker = Broker("mq", AMQP)
        await stopped_at_random(lambda: RabbitSource(broker, queue, None, "arn:mq"), 5672, 300)

    asyncio.run(scenario())


@pytest.mark.skipif(
    not answers(4222), reason="no NATS at 127.0.0.1:4222 (scripts/services.sh starts one)"
)
def test_a_jetstream_source_stopped_at_any_moment_stops_and_closes() -> None:
    name = f"EMBER_TEST_{uuid.uuid4().hex[:8].upper()}"

    async def scenario() -> None:
        client = await nats.connect(NATS_URL)
        js = client.jetstream()
        await js.add_stream(name=name, subjects=[f"{name.lower()}.>"])
        await client.close()
        broker = Broker("events", NATS_URL)
        try:
            await stopped_at_random(
                lambda: JetStreamSource(broker, name, f"{name.lower()}.x", "d", "arn:nats", 30),
                4222,
                200,
            )
        finally:
            client = await nats.connect(NATS_URL)
            await client.jetstream().delete_stream(name)
            await client.close()

    asyncio.run(scenario())
