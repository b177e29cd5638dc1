"""Event source mapping benchmark (issue 19): RabbitMQ into a function, quick run.

1. drain: MESSAGES messages already in a queue, a mapping with BatchSize 100 into a
   no-op function: messages per second from the mapping's creation until the queue has
   none ready (up to BatchSize x consumers may still be in flight then: under 3 %);
2. durability: CYCLES cycles of kill -9 of ember while messages are published and
   consumed, restarted on the same data dir; the function appends every message id it
   receives to a file, and every published id must be there at the end (lost: 0).

Needs RabbitMQ at 127.0.0.1:5672 (scripts/services.sh). Prints the figures and writes
docs/benchmarks-esm.md; exit 0 when everything was measured (targets met or not), 1 when
something failed to run.
"""

import asyncio
import base64
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from pathlib import Path

import aio_pika
import httpx

import servers
from report import cpu_busy, machine

DOC_PATH = servers.ROOT / "docs" / "benchmarks-esm.md"
AMQP = "amqp://guest:guest@127.0.0.1:5672/"
BROKER = "arn:aws:mq:us-east-1:000000000000:broker:bench:b-1"
ROLE = "arn:aws:iam::000000000000:role/bench"
MESSAGES = 20_000
CYCLES = 10
PER_CYCLE = 300
TARGET_RPS = 2000.0
NOOP = "def handler(event, context):\n    return None\n"
RECORDER = """
import os, time

def handler(event, context):
    time.sleep(0.05)  # a window for kill -9 to land in while a batch is handled
    ids = [m["basicProperties"]["messageId"] for ms in event["rmqMessagesByQueue"].values()
           for m in ms]
    with open(os.environ["RECORD"], "a") as out:
        out.write("\\n".join(ids) + "\\n")
        out.flush()
        os.fsync(out.fileno())
"""


def zipped(source: str) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", source)
    return base64.b64encode(buffer.getvalue()).decode()


def create_function(client: httpx.Client, name: str, source: str, env: dict[str, str]) -> None:
    body = {
        "FunctionName": name,
        "Runtime": f"python3.{sys.version_info.minor}",
        "Handler": "app.handler",
        "Role": ROLE,
        "Code": {"ZipFile": zipped(source)},
        "Environment": {"Variables": env},
    }
    client.post("/2015-03-31/functions", json=body).raise_for_status()


def create_mapping(client: httpx.Client, name: str, queue: str) -> str:
    body = {"FunctionName": name, "EventSourceArn": BROKER, "Queues": [queue], "BatchSize": 100}
    response = client.post("/2015-03-31/event-source-mappings", json=body)
    response.raise_for_status()
    return str(response.json()["UUID"])


async def _declare(queue: str) -> None:
    async with await aio_pika.connect(AMQP) as connection:
        channel = await connection.channel()
        await channel.queue_delete(queue)
        # Gone by itself 10 minutes after its last use: the bench leaves no queues behind.
        await channel.declare_queue(queue, durable=True, arguments={"x-expires": 600_000})


async def _publish(queue: str, ids: list[str], persistent: bool) -> None:
    mode = aio_pika.DeliveryMode.PERSISTENT if persistent else aio_pika.DeliveryMode.NOT_PERSISTENT
    async with await aio_pika.connect(AMQP) as connection:
        channel = await connection.channel(publisher_confirms=persistent)
        exchange = channel.default_exchange
        for start in range(0, len(ids), 500):
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(b'{"n": 1}', message_id=i, delivery_mode=mode), queue
                    )
                    for i in ids[start : start + 500]
                )
            )


async def _ready(queue: str) -> int:
    async with await aio_pika.connect(AMQP) as connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)


def command(port: int, data: Path, *extra: str) -> list[str]:
    return [*servers.ember_command(port, data), "--broker", f"bench={AMQP}", *extra]


def measure_drain(work: Path) -> float:
    queue = f"bench-drain-{uuid.uuid4().hex[:6]}"
    asyncio.run(_declare(queue))
    asyncio.run(_publish(queue, [str(i) for i in range(MESSAGES)], persistent=False))
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}"
    with (
        servers.running(command(port, work / "data-drain"), work / "drain.log", url + "/health"),
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        create_function(client, "noop", NOOP, {})
        client.post("/2015-03-31/functions/noop/invocations", content=b"{}").raise_for_status()
        started = time.perf_counter()
        create_mapping(client, "noop", queue)
        while asyncio.run(_ready(queue)) > 0:
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
    asyncio.run(_declare(queue))  # emptied and removed below
    return MESSAGES / elapsed


def seen(record: Path) -> set[str]:
    return set(record.read_text().split()) if record.exists() else set()


def measure_durability(work: Path) -> tuple[int, int]:
    """(published, lost) over CYCLES kill -9 cycles."""
    queue = f"bench-kill-{uuid.uuid4().hex[:6]}"
    asyncio.run(_declare(queue))
    record = work / "seen.txt"
    data = work / "data-kill"
    rng = random.Random(19)
    published: list[str] = []
    client_created = False
    for cycle in range(CYCLES):
        port = servers.free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = command(port, data, "--sandbox", "process")
        log = (work / f"kill-{cycle}.log").open("wb")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        servers.wait_ready(proc, url + "/health", work / f"kill-{cycle}.log")
        if not client_created:
            with httpx.Client(base_url=url, timeout=30) as client:
                create_function(client, "recorder", RECORDER, {"RECORD": str(record)})
                create_mapping(client, "recorder", queue)
            client_created = True
        ids = [f"c{cycle}-{i}" for i in range(PER_CYCLE)]
        publisher = threading.Thread(target=asyncio.run, args=(_publish(queue, ids, True),))
        publisher.start()
        time.sleep(rng.uniform(0.3, 1.0))
        os.killpg(proc.pid, signal.SIGKILL)  # ember and its sandboxes, as a host that dies
        proc.wait()
        servers.stop(proc)  # reaps the sandboxes it left
        log.close()
        publisher.join()
        published += ids
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = command(port, data, "--sandbox", "process")
    with servers.running(cmd, work / "kill-final.log", url + "/health"):
        deadline = time.monotonic() + 120
        while not set(published) <= seen(record) and time.monotonic() < deadline:
            time.sleep(0.2)
    return len(published), len(set(published) - seen(record))


def write_doc(info: dict[str, str], rps: float, published: int, lost: int) -> None:
    drain = f"{rps:,.0f} messages/s | >= {TARGET_RPS:,.0f}/s | " + (
        "yes" if rps >= TARGET_RPS else "no"
    )
    kills = f"{lost} of {published} | 0 | " + ("yes" if lost == 0 else "no")
    DOC_PATH.write_text(
        f"""# Event source mapping benchmarks

Generated by `bench/bench_esm.py` (part of `make bench`) on {info["date"]}. Re-run it to
refresh this file; do not edit by hand.

Machine: {info["nproc"]} CPUs ({info["cpu"]}), {info["kernel"]}, {info["python"]}. Before
measuring: CPUs {info["busy"]} busy over 1 s, load average {info["load"]} (1/5/15 min).

| metric | ember | target | met? |
|---|---|---|---|
| RabbitMQ drain into a no-op function, BatchSize 100 | {drain} |
| messages lost over {CYCLES} kill -9 cycles of ember | {kills} |

## How measured

- **Drain**: {MESSAGES:,} transient messages published to a fresh durable queue of the local
  RabbitMQ before ember starts; one warm-up Invoke of the no-op function, then the mapping
  (`BatchSize` 100, no window given: 0.5 s) is created and the clock runs until the queue has
  no message ready (polled every 0.1 s). At that point up to BatchSize x consumers messages
  may still be in flight, so the figure is high by at most a few percent.
- **kill -9**: `ember serve --sandbox process` with a function that appends the message ids
  of each batch to a file (fsynced) 50 ms into each call. Each cycle publishes {PER_CYCLE}
  persistent messages with publisher confirms while ember consumes, kills ember and its
  sandboxes (the process group) with SIGKILL 0.3 to 1 s into the cycle and restarts it on
  the same data dir; after the last cycle ember runs until
  every published id is in the file (120 s at most). Lost = published ids never seen.
""",
    )


def main() -> int:
    busy = cpu_busy()
    info = machine(busy)
    print(f"machine: {info['nproc']} cpus, load {info['load']}, busy {info['busy']}")
    with tempfile.TemporaryDirectory(prefix="ember-bench-esm-") as tmp:
        work = Path(tmp)
        try:
            rps = measure_drain(work)
            published, lost = measure_durability(work)
        except (servers.ServerError, OSError, httpx.HTTPError) as error:
            print(f"bench_esm failed: {error}")
            return 1
    met = "met" if rps >= TARGET_RPS else "MISSED"
    print(
        f"drain, BatchSize 100, no-op: {rps:,.0f} messages/s (target >= {TARGET_RPS:,.0f}: {met})"
    )
    print(f"kill -9 x {CYCLES}: {published} published, {lost} lost (target 0)")
    print(json.dumps({"drain_rps": round(rps), "published": published, "lost": lost}))
    write_doc(info, rps, published, lost)
    return 0


if __name__ == "__main__":
    sys.exit(main())
