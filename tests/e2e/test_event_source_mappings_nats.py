"""Event source mappings from NATS JetStream (ember's extension), at 127.0.0.1:4222.

The same API as RabbitMQ's mappings: ``EventSourceArn``
``arn:ember:nats:REGION:ACCOUNT:stream:NAME:STREAM``, ``Queues`` the subject.
Functions record what they receive in files of the test's own (``--sandbox process``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from esm_helpers import crash, deploy_recorder, recorded
from nats.js.errors import NotFoundError

from conftest import Server, lambda_client, wait_until

NATS_URL = "nats://127.0.0.1:4222"
ARGS = ("--broker", f"events={NATS_URL}", "--sandbox", "process")

RECORDER = """
import json, os, time

def handler(event, context):
    time.sleep(float(os.environ.get("SLOW", "0")))  # a window for kill -9 to land in
    with open(os.environ["RECORD"], "a") as out:
        out.write("\\n" + json.dumps(event) + "\\n")  # a new line even after a torn one
        out.flush()
        os.fsync(out.fileno())
    fail = set(filter(None, os.environ.get("FAIL_FIRST", "").split(",")))
    for record in event["records"]:
        if record["headers"].get("id") in fail and not record["redelivered"]:
            raise RuntimeError("first delivery fails")
"""


def nats_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=1):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    not nats_answers(), reason="no NATS at 127.0.0.1:4222 (scripts/services.sh starts one)"
)


class Stream:
    """A fresh JetStream stream ``name`` on subjects ``subject.>``."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.name = f"EMBER_{tag}"
        self.subject = f"ember.{tag}"
        asyncio.run(self._create())

    def arn(self) -> str:
        return f"arn:ember:nats:us-east-1:000000000000:stream:events:{self.name}"

    async def _create(self) -> None:
        client = await nats.connect(NATS_URL)
        await client.jetstream().add_stream(name=self.name, subjects=[f"{self.subject}.>"])
        await client.close()

    async def _publish(self, ids: list[str]) -> None:
        client = await nats.connect(NATS_URL)
        js = client.jetstream()
        for message_id in ids:
            body = json.dumps({"id": message_id}).encode()
            await js.publish(f"{self.subject}.orders", body, headers={"id": message_id})
        await client.close()

    def publish(self, ids: list[str]) -> None:
        asyncio.run(self._publish(ids))

    async def _stream(self, published: list[str], stop: threading.Event) -> None:
        client = await nats.connect(NATS_URL)
        js = client.jetstream()
        while not stop.is_set():
            message_id = f"s{len(published)}"
            body = json.dumps({"id": message_id}).encode()
            await js.publish(f"{self.subject}.orders", body, headers={"id": message_id})
            published.append(message_id)  # acknowledged by JetStream: it must arrive
        await client.close()

    def keep_publishing(self, published: list[str], stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=asyncio.run, args=(self._stream(published, stop),))
        thread.start()
        return thread

    async def _consumer_exists(self, durable: str) -> bool:
        client = await nats.connect(NATS_URL)
        try:
            await client.jetstream().consumer_info(self.name, durable)
            return True
        except NotFoundError:
            return False
        finally:
            await client.close()

    def consumer_exists(self, durable: str) -> bool:
        return asyncio.run(self._consumer_exists(durable))

    async def _delete(self) -> None:
        client = await nats.connect(NATS_URL)
        await client.jetstream().delete_stream(self.name)
        await client.close()


@pytest.fixture
def stream() -> Iterator[Stream]:
    made = Stream()
    yield made
    asyncio.run(made._delete())


def records(path: Path) -> list[dict[str, Any]]:
    return [record for event in recorded(path) for record in event["records"]]


def seen_ids(path: Path) -> set[str]:
    return {json.loads(base64.b64decode(r["data"]))["id"] for r in records(path)}


def deploy(aws: Any, name: str, record: Path, fail_first: str = "", slow: float = 0) -> None:
    deploy_recorder(aws, name, RECORDER, record, fail_first, slow)


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    instance = Server(tmp_path_factory.mktemp("esm-nats") / "data", extra_args=list(ARGS))
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def aws(nats_server: Server) -> Iterator[Any]:
    client = lambda_client(nats_server)
    yield client
    client.close()


def test_a_stream_reaches_the_function_in_batches(aws: Any, stream: Stream, tmp_path: Path) -> None:
    record = tmp_path / "seen"
    deploy(aws, "nats-shape", record)
    ids = [f"n{i}" for i in range(30)]
    stream.publish(ids)
    mapping = aws.create_event_source_mapping(
        FunctionName="nats-shape",
        EventSourceArn=stream.arn(),
        Queues=[f"{stream.subject}.>"],
        BatchSize=10,
        MaximumBatchingWindowInSeconds=1,
    )
    assert mapping["State"] == "Creating"
    wait_until(lambda: seen_ids(record) == set(ids), timeout=30)
    first = records(record)[0]
    assert first["stream"] == stream.name
    assert first["subject"] == f"{stream.subject}.orders"
    assert first["redelivered"] is False and first["deliveries"] == 1
    assert first["headers"]["id"] in ids
    events = recorded(record)
    assert all(e["eventSource"] == "ember:nats" for e in events)
    assert all(e["eventSourceArn"] == stream.arn() for e in events)
    assert all(len(e["records"]) <= 10 for e in events)
    wait_until(lambda: aws.get_event_source_mapping(UUID=mapping["UUID"])["State"] == "Enabled")
    aws.delete_event_source_mapping(UUID=mapping["UUID"])
    durable = f"ember-{mapping['UUID']}"
    wait_until(lambda: not stream.consumer_exists(durable), timeout=20)


def test_a_failed_message_is_redelivered(aws: Any, stream: Stream, tmp_path: Path) -> None:
    record = tmp_path / "seen"
    deploy(aws, "nats-fails", record, fail_first="bad")
    mapping = aws.create_event_source_mapping(
        FunctionName="nats-fails",
        EventSourceArn=stream.arn(),
        Queues=[f"{stream.subject}.>"],
        BatchSize=1,
    )
    stream.publish(["bad"])

    def redelivered() -> bool:
        return [r["deliveries"] for r in records(record)][:2] == [1, 2]

    wait_until(redelivered, timeout=30)
    aws.delete_event_source_mapping(UUID=mapping["UUID"])


def test_kill_9_mid_stream_loses_no_message(
    spawn_server: Callable[..., Server], stream: Stream, tmp_path: Path
) -> None:
    record = tmp_path / "seen"
    server = spawn_server(tmp_path / "data", *ARGS)
    aws = lambda_client(server)
    try:
        deploy(aws, "nats-durable", record, slow=0.1)
        aws.create_event_source_mapping(
            FunctionName="nats-durable",
            EventSourceArn=stream.arn(),
            Queues=[f"{stream.subject}.>"],
            BatchSize=20,
        )
    finally:
        aws.close()
    published: list[str] = []
    stop = threading.Event()
    publisher = stream.keep_publishing(published, stop)
    rng = random.Random(7)
    try:
        for _ in range(2):  # messages keep coming: every kill lands mid-stream
            before = len(seen_ids(record))
            wait_until(lambda before=before: len(seen_ids(record)) > before, timeout=60)
            threading.Event().wait(rng.uniform(0.05, 0.3))
            crash(server)
            server = spawn_server(tmp_path / "data", *ARGS)
    finally:
        stop.set()
        publisher.join()
    assert len(published) > 100
    # A batch a dead node had fetched returns after the ack wait (timeout 3 s + 10 s).
    try:
        wait_until(lambda: set(published) <= seen_ids(record), timeout=120)
    except AssertionError:
        missing = sorted(set(published) - seen_ids(record))
        raise AssertionError(f"{len(missing)} never delivered: {missing[:20]}") from None
