"""Event source mappings from a real RabbitMQ (127.0.0.1:5672) into real functions.

The functions record what they receive in files of the test's own (the servers
run with ``--sandbox process`` so that a function can write there), so a test
counts what reached a function, not what ember says it delivered.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from botocore.exceptions import ClientError
from esm_helpers import crash, deploy_recorder, recorded

from conftest import ROLE, Server, lambda_client, make_zip, wait_until
from ember.cli.credentials import Credentials

AMQP = "amqp://guest:guest@127.0.0.1:5672/"
BROKER = "arn:aws:mq:us-east-1:000000000000:broker:mq:b-0123"
BROKER_ARGS = ("--broker", f"mq={AMQP}", "--sandbox", "process")

# Appends each event to $RECORD (one JSON line) before answering; fails while the
# event carries a message whose id is in $FAIL_FIRST and was not redelivered.
RECORDER = """
import json, os, time

def handler(event, context):
    time.sleep(float(os.environ.get("SLOW", "0")))  # a window for kill -9 to land in
    line = "\\n" + json.dumps(event) + "\\n"  # a new line even after a torn one
    with open(os.environ["RECORD"], "a") as out:
        out.write(line)
        out.flush()
        os.fsync(out.fileno())
    fail = set(filter(None, os.environ.get("FAIL_FIRST", "").split(",")))
    for messages in event["rmqMessagesByQueue"].values():
        for message in messages:
            if message["basicProperties"]["messageId"] in fail and not message["redelivered"]:
                raise RuntimeError("first delivery fails")
    return {"ok": True}
"""


def rabbit_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    not rabbit_answers(), reason="no RabbitMQ at 127.0.0.1:5672 (scripts/services.sh starts one)"
)


# -- RabbitMQ, driven by aio-pika from the test's side --------------------------------


async def _declare(queue: str) -> None:
    connection = await aio_pika.connect(AMQP)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(queue)
        # Gone by itself 10 minutes after its last use: the suite leaves no queues behind.
        await channel.declare_queue(queue, durable=True, arguments={"x-expires": 600_000})


async def _publish(queue: str, ids: list[str], **properties: Any) -> None:
    connection = await aio_pika.connect(AMQP)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        for message_id in ids:
            body = json.dumps({"id": message_id}).encode()
            message = aio_pika.Message(
                body,
                message_id=message_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                **properties,
            )
            await channel.default_exchange.publish(message, routing_key=queue)


async def _ready(queue: str) -> int:
    connection = await aio_pika.connect(AMQP)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)


def fresh_queue() -> str:
    queue = f"ember-test-{uuid.uuid4().hex[:8]}"
    asyncio.run(_declare(queue))
    return queue


def publish(queue: str, ids: list[str], **properties: Any) -> None:
    asyncio.run(_publish(queue, ids, **properties))


async def _stream(queue: str, published: list[str], stop: threading.Event) -> None:
    connection = await aio_pika.connect(AMQP)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        while not stop.is_set():
            message_id = f"s{len(published)}"
            message = aio_pika.Message(
                json.dumps({"id": message_id}).encode(),
                message_id=message_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            await channel.default_exchange.publish(message, routing_key=queue)
            published.append(message_id)  # confirmed by the broker: it must arrive


def keep_publishing(queue: str, published: list[str], stop: threading.Event) -> threading.Thread:
    """Publish until ``stop``, each id appended once the broker confirmed it."""
    thread = threading.Thread(target=asyncio.run, args=(_stream(queue, published, stop),))
    thread.start()
    return thread


def ready(queue: str) -> int:
    return asyncio.run(_ready(queue))


# -- what the functions saw -----------------------------------------------------------


def events(record: Path) -> list[dict[str, Any]]:
    return recorded(record)


def messages(record: Path) -> list[dict[str, Any]]:
    return [
        m for event in events(record) for ms in event["rmqMessagesByQueue"].values() for m in ms
    ]


def seen_ids(record: Path) -> set[str]:
    return {m["basicProperties"]["messageId"] for m in messages(record)}


def deploy(aws: Any, name: str, record: Path, fail_first: str = "", slow: float = 0) -> None:
    deploy_recorder(aws, name, RECORDER, record, fail_first, slow)


def state_of(aws: Any, mapping_id: str) -> str:
    return str(aws.get_event_source_mapping(UUID=mapping_id)["State"])


def seen_by(aws: Any, mapping_id: str) -> str:
    """The mapping's state as one node of a cluster sees it: "" while it has not seen it."""
    try:
        return state_of(aws, mapping_id)
    except aws.exceptions.ResourceNotFoundException:
        return ""


def settled(aws: Any, mapping_id: str, state: str) -> None:
    wait_until(lambda: state_of(aws, mapping_id) == state, timeout=20)


def code_of(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


@pytest.fixture(scope="module")
def mq_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("esm") / "data"
    instance = Server(
        data, extra_args=[*BROKER_ARGS, "--broker", "down=amqp://u:s3cr3t@127.0.0.1:1"]
    )
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def aws(mq_server: Server) -> Iterator[Any]:
    client = lambda_client(mq_server)
    yield client
    client.close()


# -- the API --------------------------------------------------------------------------


def test_states_through_create_update_disable_enable_delete(aws: Any, tmp_path: Path) -> None:
    deploy(aws, "esm-states", tmp_path / "seen")
    queue = fresh_queue()
    created = aws.create_event_source_mapping(
        FunctionName="esm-states", EventSourceArn=BROKER, Queues=[queue]
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert created["State"] == "Creating"
    assert created["StateTransitionReason"] == "USER_INITIATED"
    assert created["BatchSize"] == 100  # RabbitMQ's default
    assert created["Queues"] == [queue]
    assert created["EventSourceArn"] == BROKER
    assert created["FunctionArn"].endswith(":function:esm-states")
    assert created["LastProcessingResult"] == "No records processed"
    mapping_id = created["UUID"]
    assert created["EventSourceMappingArn"].endswith(f":event-source-mapping:{mapping_id}")
    settled(aws, mapping_id, "Enabled")

    updated = aws.update_event_source_mapping(
        UUID=mapping_id, BatchSize=7, MaximumBatchingWindowInSeconds=2
    )
    assert updated["State"] == "Updating"
    assert (updated["BatchSize"], updated["MaximumBatchingWindowInSeconds"]) == (7, 2)
    settled(aws, mapping_id, "Enabled")

    assert aws.update_event_source_mapping(UUID=mapping_id, Enabled=False)["State"] == "Disabling"
    settled(aws, mapping_id, "Disabled")
    assert aws.update_event_source_mapping(UUID=mapping_id, Enabled=True)["State"] == "Enabling"
    settled(aws, mapping_id, "Enabled")

    deleted = aws.delete_event_source_mapping(UUID=mapping_id)
    assert deleted["State"] == "Deleting"
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 202

    def gone() -> bool:
        try:
            aws.get_event_source_mapping(UUID=mapping_id)
        except ClientError as error:
            return error.response["Error"]["Code"] == "ResourceNotFoundException"
        return False

    wait_until(gone, timeout=20)


def test_created_disabled_rests_disabled(aws: Any, tmp_path: Path) -> None:
    deploy(aws, "esm-off", tmp_path / "seen")
    queue = fresh_queue()
    mapping = aws.create_event_source_mapping(
        FunctionName="esm-off", EventSourceArn=BROKER, Queues=[queue], Enabled=False
    )
    settled(aws, mapping["UUID"], "Disabled")
    publish(queue, ["kept"])
    assert ready(queue) == 1  # nobody consumes a disabled mapping
    aws.delete_event_source_mapping(UUID=mapping["UUID"])


def test_lambda_errors(mq_server: Server, aws: Any, tmp_path: Path) -> None:
    deploy(aws, "esm-errors", tmp_path / "seen")
    queue = fresh_queue()
    base = {"FunctionName": "esm-errors", "EventSourceArn": BROKER, "Queues": [queue]}
    cases: list[tuple[dict[str, Any], str]] = [
        ({**base, "BatchSize": 0}, "ValidationException"),
        ({**base, "BatchSize": 10001}, "ValidationException"),
        ({**base, "MaximumBatchingWindowInSeconds": 301}, "ValidationException"),
        ({**base, "Queues": ["a", "b"]}, "ValidationException"),
        ({**base, "FunctionName": "no-such-function"}, "ResourceNotFoundException"),
        (
            {**base, "EventSourceArn": BROKER.replace(":mq:b-", ":nope:b-")},
            "InvalidParameterValueException",
        ),
        ({**base, "StartingPosition": "LATEST"}, "InvalidParameterValueException"),
        (
            {**base, "SourceAccessConfigurations": [{"Type": "VPC_SUBNET", "URI": "subnet:x"}]},
            "InvalidParameterValueException",
        ),
        ({k: v for k, v in base.items() if k != "Queues"}, "InvalidParameterValueException"),
        (
            {**base, "EventSourceArn": "arn:aws:sqs:us-east-1:000000000000:q"},
            "InvalidParameterValueException",
        ),
    ]
    # Signed HTTP, not boto3: boto3 refuses out-of-range values before sending them.
    for body, expected in cases:
        refused = mq_server.http.post("/2015-03-31/event-source-mappings", json=body)
        assert refused.status_code in (400, 404), (body, refused.text)
        assert refused.headers["x-amzn-ErrorType"] == expected, (body, refused.text)

    mapping = aws.create_event_source_mapping(
        **base,
        SourceAccessConfigurations=[
            {
                "Type": "BASIC_AUTH",
                "URI": "arn:aws:secretsmanager:us-east-1:000000000000:secret:mq",
            },
            {"Type": "VIRTUAL_HOST", "URI": "/"},
        ],
    )
    with pytest.raises(ClientError) as conflict:
        aws.create_event_source_mapping(**base)
    assert code_of(conflict) == "ResourceConflictException"
    assert mapping["UUID"] in conflict.value.response["Error"]["Message"]
    settled(aws, mapping["UUID"], "Enabled")
    with pytest.raises(ClientError) as vhost:
        aws.update_event_source_mapping(
            UUID=mapping["UUID"], SourceAccessConfigurations=[{"Type": "VIRTUAL_HOST", "URI": "/x"}]
        )
    assert code_of(vhost) == "InvalidParameterValueException"
    for call in (aws.get_event_source_mapping, aws.delete_event_source_mapping):
        with pytest.raises(ClientError) as missing:
            call(UUID=str(uuid.uuid4()))
        assert code_of(missing) == "ResourceNotFoundException"
    aws.delete_event_source_mapping(UUID=mapping["UUID"])
    with pytest.raises(ClientError) as in_use:
        aws.update_event_source_mapping(UUID=mapping["UUID"], BatchSize=5)
    assert code_of(in_use) in ("ResourceInUseException", "ResourceNotFoundException")


def test_list_filters_and_pages(aws: Any, tmp_path: Path) -> None:
    deploy(aws, "esm-list-a", tmp_path / "a")
    deploy(aws, "esm-list-b", tmp_path / "b")
    ids = {
        aws.create_event_source_mapping(
            FunctionName=name, EventSourceArn=BROKER, Queues=[fresh_queue()]
        )["UUID"]
        for name in ("esm-list-a", "esm-list-a", "esm-list-b")
    }
    of_a = aws.list_event_source_mappings(FunctionName="esm-list-a")["EventSourceMappings"]
    assert len(of_a) == 2 and all(m["FunctionArn"].endswith(":esm-list-a") for m in of_a)
    of_broker = aws.list_event_source_mappings(EventSourceArn=BROKER)["EventSourceMappings"]
    assert ids <= {m["UUID"] for m in of_broker}
    first = aws.list_event_source_mappings(EventSourceArn=BROKER, MaxItems=1)
    assert len(first["EventSourceMappings"]) == 1 and first["NextMarker"]
    paged = {
        m["UUID"]
        for page in aws.get_paginator("list_event_source_mappings").paginate(
            EventSourceArn=BROKER, PaginationConfig={"PageSize": 1}
        )
        for m in page["EventSourceMappings"]
    }
    assert ids <= paged
    for mapping_id in ids:
        settled(aws, mapping_id, "Enabled")
        aws.delete_event_source_mapping(UUID=mapping_id)


def test_awscli_create_list_delete(mq_server: Server, aws: Any, tmp_path: Path) -> None:
    deploy(aws, "esm-cli", tmp_path / "seen")
    queue = fresh_queue()
    env = mq_server.cli_env(AWS_DEFAULT_REGION="us-east-1")
    base = ["aws", "lambda", "--endpoint-url", mq_server.url, "--output", "json"]

    def cli(*args: str) -> dict[str, Any]:
        done = subprocess.run([*base, *args], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout)) if done.stdout.strip() else {}

    created = cli(
        "create-event-source-mapping",
        "--function-name",
        "esm-cli",
        "--event-source-arn",
        BROKER,
        "--queues",
        queue,
        "--batch-size",
        "5",
    )
    assert created["State"] == "Creating" and created["BatchSize"] == 5
    listed = cli("list-event-source-mappings", "--function-name", "esm-cli")
    assert [m["UUID"] for m in listed["EventSourceMappings"]] == [created["UUID"]]
    settled(aws, created["UUID"], "Enabled")
    assert cli("delete-event-source-mapping", "--uuid", created["UUID"])["State"] == "Deleting"


def test_an_unreachable_broker_is_reported_without_its_credentials(
    aws: Any, tmp_path: Path
) -> None:
    deploy(aws, "esm-down", tmp_path / "seen")
    mapping = aws.create_event_source_mapping(
        FunctionName="esm-down",
        EventSourceArn="arn:aws:mq:us-east-1:000000000000:broker:down:b-1",
        Queues=["q"],
    )
    settled(aws, mapping["UUID"], "Enabled")

    def problem() -> str | None:
        result = str(aws.get_event_source_mapping(UUID=mapping["UUID"])["LastProcessingResult"])
        return result if result.startswith("PROBLEM: Connection error") else None

    result = wait_until(problem, timeout=20)
    assert "down at 127.0.0.1:1" in result
    assert "s3cr3t" not in result
    aws.delete_event_source_mapping(UUID=mapping["UUID"])


def test_deleting_the_function_keeps_the_mapping(aws: Any, tmp_path: Path) -> None:
    deploy(aws, "esm-orphan", tmp_path / "seen")
    queue = fresh_queue()
    mapping = aws.create_event_source_mapping(
        FunctionName="esm-orphan", EventSourceArn=BROKER, Queues=[queue]
    )
    settled(aws, mapping["UUID"], "Enabled")
    aws.delete_function(FunctionName="esm-orphan")
    publish(queue, ["held"])

    def reported() -> bool:
        result = aws.get_event_source_mapping(UUID=mapping["UUID"])["LastProcessingResult"]
        return bool(result == "PROBLEM: Function not found.")

    wait_until(reported, timeout=20)
    deploy(aws, "esm-orphan", tmp_path / "again")  # the same name: the mapping resumes
    wait_until(lambda: seen_ids(tmp_path / "again") == {"held"}, timeout=30)
    aws.delete_event_source_mapping(UUID=mapping["UUID"])


# -- delivery -------------------------------------------------------------------------


def test_messages_arrive_in_batches_in_lambdas_shape(
    mq_server: Server, aws: Any, tmp_path: Path
) -> None:
    record = tmp_path / "seen"
    deploy(aws, "esm-shape", record)
    queue = fresh_queue()
    ids = [f"m{i}" for i in range(25)]
    publish(queue, ids, headers={"trace": "abc", "n": 3}, content_type="application/json")
    mapping = aws.create_event_source_mapping(
        FunctionName="esm-shape",
        EventSourceArn=BROKER,
        Queues=[queue],
        BatchSize=10,
        MaximumBatchingWindowInSeconds=1,
    )
    wait_until(lambda: seen_ids(record) == set(ids), timeout=30)
    found = events(record)
    assert all(len(e["rmqMessagesByQueue"][f"{queue}::/"]) <= 10 for e in found)
    assert len(found) >= 3  # 25 messages in batches of at most 10
    event = found[0]
    assert event["eventSource"] == "aws:rmq"
    assert event["eventSourceArn"] == BROKER
    first = event["rmqMessagesByQueue"][f"{queue}::/"][0]
    assert first["redelivered"] is False
    assert json.loads(base64.b64decode(first["data"])) == {
        "id": first["basicProperties"]["messageId"]
    }
    properties = first["basicProperties"]
    assert properties["contentType"] == "application/json"
    assert properties["deliveryMode"] == 2
    assert properties["headers"] == {"trace": {"bytes": list(b"abc")}, "n": 3}
    assert properties["bodySize"] == len(base64.b64decode(first["data"]))
    wait_until(lambda: ready(queue) == 0)
    assert aws.get_event_source_mapping(UUID=mapping["UUID"])["LastProcessingResult"] == "OK"
    assert mq_server.health()["eventSources"]["succeeded"] >= 3
    aws.delete_event_source_mapping(UUID=mapping["UUID"])


def test_a_failed_batch_is_redelivered_then_acknowledged(aws: Any, tmp_path: Path) -> None:
    record = tmp_path / "seen"
    deploy(aws, "esm-fails", record, fail_first="bad")
    queue = fresh_queue()
    mapping = aws.create_event_source_mapping(
        FunctionName="esm-fails", EventSourceArn=BROKER, Queues=[queue], BatchSize=1
    )
    settled(aws, mapping["UUID"], "Enabled")
    publish(queue, ["bad"])

    def redelivered() -> bool:
        flags = [m["redelivered"] for m in messages(record)]
        return flags[:2] == [False, True]

    wait_until(redelivered, timeout=30)
    wait_until(lambda: ready(queue) == 0)
    aws.delete_event_source_mapping(UUID=mapping["UUID"])


def test_kill_9_mid_stream_loses_no_message(
    spawn_server: Callable[..., Server], tmp_path: Path
) -> None:
    record = tmp_path / "seen"
    server = spawn_server(tmp_path / "data", *BROKER_ARGS)
    aws = lambda_client(server)
    queue = fresh_queue()
    try:
        deploy(aws, "esm-durable", record, slow=0.1)
        aws.create_event_source_mapping(
            FunctionName="esm-durable", EventSourceArn=BROKER, Queues=[queue], BatchSize=20
        )
    finally:
        aws.close()
    published: list[str] = []
    stop = threading.Event()
    publisher = keep_publishing(queue, published, stop)
    rng = random.Random(19)
    try:
        for _ in range(3):  # messages keep coming: every kill lands mid-stream
            before = len(seen_ids(record))
            wait_until(lambda before=before: len(seen_ids(record)) > before, timeout=60)
            threading.Event().wait(rng.uniform(0.05, 0.3))
            crash(server)
            server = spawn_server(tmp_path / "data", *BROKER_ARGS)
    finally:
        stop.set()
        publisher.join()
    assert len(published) > 100
    wait_until(lambda: set(published) <= seen_ids(record), timeout=120)
    wait_until(lambda: ready(queue) == 0, timeout=30)


# -- accounts and audit ---------------------------------------------------------------


def test_mappings_stay_in_their_account_and_are_audited(
    mq_server: Server, aws: Any, tmp_path: Path
) -> None:
    deploy(aws, "esm-mine", tmp_path / "seen")
    mapping = aws.create_event_source_mapping(
        FunctionName="esm-mine", EventSourceArn=BROKER, Queues=[fresh_queue()]
    )
    created = mq_server.http.post("/_ember/accounts", json={"Name": f"esm-{uuid.uuid4().hex[:6]}"})
    assert created.status_code == 201, created.text
    keys = created.json()
    other = lambda_client(
        mq_server,
        Credentials(keys["AccessKeyId"], keys["SecretAccessKey"], None, "us-east-1", "other"),
    )
    try:
        with pytest.raises(ClientError) as hidden:
            other.get_event_source_mapping(UUID=mapping["UUID"])
        assert code_of(hidden) == "ResourceNotFoundException"
        with pytest.raises(ClientError) as not_theirs:
            other.delete_event_source_mapping(UUID=mapping["UUID"])
        assert code_of(not_theirs) == "ResourceNotFoundException"
        listed = other.list_event_source_mappings()["EventSourceMappings"]
        assert mapping["UUID"] not in {m["UUID"] for m in listed}
        with pytest.raises(ClientError) as no_function:  # a bare name is the caller's own
            other.create_event_source_mapping(
                FunctionName="esm-mine", EventSourceArn=BROKER, Queues=["q"]
            )
        assert code_of(no_function) == "ResourceNotFoundException"
    finally:
        other.close()

    def audited() -> bool:  # the audit log is written in batches, off the request
        page = mq_server.http.get("/_ember/audit", params={"limit": "1000"}).json()
        return "lambda:CreateEventSourceMapping" in {e.get("Action") for e in page["Events"]}

    wait_until(audited, timeout=20)
    settled(aws, mapping["UUID"], "Enabled")
    aws.delete_event_source_mapping(UUID=mapping["UUID"])


# -- a cluster ------------------------------------------------------------------------


def test_two_nodes_share_a_mapping_and_its_queue(
    spawn_server: Callable[..., Server], postgres_url: str, tmp_path: Path
) -> None:
    first, second = (
        spawn_server(tmp_path / f"node-{n}", "--database", postgres_url, *BROKER_ARGS)
        for n in range(2)
    )
    one, two = lambda_client(first), lambda_client(second)
    record = tmp_path / "seen"
    queue = fresh_queue()
    try:
        deploy(one, "esm-shared", record)
        mapping_id = one.create_event_source_mapping(
            FunctionName="esm-shared", EventSourceArn=BROKER, Queues=[queue], BatchSize=5
        )["UUID"]
        # Through the other node, which learns of it from the change feed (a moment after
        # the create's answer: until then it answers 404, as it would for any resource).
        wait_until(lambda: seen_by(two, mapping_id) == "Enabled", timeout=20)
        ids = [f"s{i}" for i in range(200)]
        publish(queue, ids)
        wait_until(lambda: seen_ids(record) == set(ids), timeout=60)
        two.delete_event_source_mapping(UUID=mapping_id)

        def gone_everywhere() -> bool:
            return all(
                mapping_id
                not in {m["UUID"] for m in aws.list_event_source_mappings()["EventSourceMappings"]}
                for aws in (one, two)
            )

        wait_until(gone_everywhere, timeout=20)
        publish(queue, ["after"])
        wait_until(lambda: ready(queue) == 1)  # neither node consumes any more
    finally:
        one.close()
        two.close()


SLOW = """
import json, os, time

def handler(event, context):
    started = time.time()
    time.sleep(0.4)
    with open(os.environ["RECORD"], "a") as out:
        out.write(json.dumps([started, time.time()]) + "\\n")
"""


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def test_consumers_scale_with_the_backlog_up_to_reserved_concurrency(
    aws: Any, tmp_path: Path
) -> None:
    record = tmp_path / "spans"
    aws.create_function(
        FunctionName="esm-scale",
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": SLOW})},
        Environment={"Variables": {"RECORD": str(record)}},
    )
    aws.put_function_concurrency(FunctionName="esm-scale", ReservedConcurrentExecutions=3)
    queue = fresh_queue()
    publish(queue, [f"b{i}" for i in range(40)])
    mapping = aws.create_event_source_mapping(
        FunctionName="esm-scale", EventSourceArn=BROKER, Queues=[queue], BatchSize=1
    )

    def spans() -> list[tuple[float, float]]:
        if not record.exists():
            return []
        return [tuple(json.loads(line)) for line in record.read_text().splitlines()]

    wait_until(lambda: len(spans()) == 40, timeout=60)
    assert 2 <= most_at_once(spans()) <= 3  # more than one consumer, never above 3
    aws.delete_event_source_mapping(UUID=mapping["UUID"])


def ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)


def test_a_connection_the_broker_drops_is_made_again(aws: Any, tmp_path: Path) -> None:
    try:
        listed = ctl("list_connections", "name", "--formatter", "json")
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("rabbitmqctl cannot be run here")
    if listed.returncode != 0:
        pytest.skip(f"rabbitmqctl cannot reach the broker: {listed.stderr.strip()}")
    record = tmp_path / "seen"
    deploy(aws, "esm-reconnect", record)
    queue = fresh_queue()
    mapping = aws.create_event_source_mapping(
        FunctionName="esm-reconnect", EventSourceArn=BROKER, Queues=[queue], BatchSize=1
    )
    publish(queue, ["before"])
    wait_until(lambda: seen_ids(record) == {"before"}, timeout=30)

    def connections() -> list[str]:
        listed = ctl("-s", "list_connections", "pid", "client_properties")
        label = f"ember: {queue}::/"  # the connection_name ember gives the broker
        return [row.split("\t", 1)[0] for row in listed.stdout.splitlines() if label in row]

    dropped = connections()
    assert dropped, "the mapping's connection is named after its queue"
    for pid in dropped:
        closed = ctl("close_connection", pid, "test: the broker drops it")
        assert closed.returncode == 0, closed.stderr
    publish(queue, ["after"])
    wait_until(lambda: seen_ids(record) == {"before", "after"}, timeout=60)
    assert set(connections()).isdisjoint(dropped)  # a new connection did it
    aws.delete_event_source_mapping(UUID=mapping["UUID"])


def test_a_throttled_batch_waits_and_is_delivered_once_admitted(aws: Any, tmp_path: Path) -> None:
    record = tmp_path / "seen"
    deploy(aws, "esm-throttled", record)
    aws.put_function_concurrency(FunctionName="esm-throttled", ReservedConcurrentExecutions=0)
    queue = fresh_queue()
    mapping = aws.create_event_source_mapping(
        FunctionName="esm-throttled", EventSourceArn=BROKER, Queues=[queue], BatchSize=5
    )
    settled(aws, mapping["UUID"], "Enabled")
    publish(queue, ["t1", "t2"])
    wait_until(lambda: ready(queue) == 0)  # taken by the poller, which waits on the throttle
    assert seen_ids(record) == set()
    aws.delete_function_concurrency(FunctionName="esm-throttled")
    wait_until(lambda: seen_ids(record) == {"t1", "t2"}, timeout=30)
    # The same batch, tried again: never handed back to the broker meanwhile.
    assert [m["redelivered"] for m in messages(record)] == [False, False]
    aws.delete_event_source_mapping(UUID=mapping["UUID"])
