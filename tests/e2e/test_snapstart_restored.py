"""Issue 18 points 2, 4 and 5: SnapStart runs Init once, in a template, and starts
every new sandbox of the version from it.

Through boto3 on a real ``ember serve``: AWS's ``snapshot-restore-py`` hooks
run unchanged at the right moments, each restored sandbox draws its own
randomness, a burst of cold calls gets as many sandboxes (one Init), the
REPORT line carries ``Restore Duration``, and a template that holds what a
fork cannot carry (threads, sockets, open files, shared memory) is refused
with its reason in the version's state, the version still serving.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from conftest import Server, lambda_client

HOOKS = r"""
import os, random, time, uuid
from snapshot_restore_py import register_after_restore, register_before_snapshot

INIT_ID = uuid.uuid4().hex
INIT_PID_NAMESPACE = os.readlink("/proc/self/ns/pid")
EVENTS = []


@register_before_snapshot
def first_before():
    EVENTS.append("before-1")


def second_before(label):
    EVENTS.append(label)


register_before_snapshot(second_before, "before-2")


@register_after_restore
def first_after():
    EVENTS.append("after-1")


register_after_restore(lambda: EVENTS.append("after-2"))


def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {
        "events": EVENTS,
        "initId": INIT_ID,
        "restored": os.readlink("/proc/self/ns/pid") != INIT_PID_NAMESPACE,
        "namespace": os.readlink("/proc/self/ns/pid"),
        "random": random.random(),
        "urandom": os.urandom(16).hex(),
        "uuid": str(uuid.uuid4()),
        "initializationType": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
        "stream": os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME"),
    }
"""

Publish = Callable[..., tuple[str, str, dict[str, Any]]]


@pytest.fixture(scope="module", autouse=True)
def can_fork_templates(server: Server) -> None:
    if os.geteuid() != 0:
        pytest.skip("not root: `ember serve` cannot isolate sandboxes, nor fork templates")


@pytest.fixture
def publish(publish_snap_start: Publish) -> Publish:
    return publish_snap_start


def invoke(aws: Any, name: str, version: str, event: Any = None, **extra: Any) -> Any:
    response = aws.invoke(
        FunctionName=name, Qualifier=version, Payload=json.dumps(event or {}).encode(), **extra
    )
    assert "FunctionError" not in response, response["Payload"].read()
    return response, json.loads(response["Payload"].read())


def test_hooks_run_in_awss_order_and_the_report_carries_the_restore(
    aws: Any, publish: Publish
) -> None:
    name, version, config = publish(HOOKS)
    assert config["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}
    response, body = invoke(aws, name, version, LogType="Tail")
    assert body["restored"] is True
    assert body["initializationType"] == "snap-start"
    # Before-snapshot hooks run latest first, once, in the template; after-restore
    # hooks in the order registered, in the new sandbox.
    assert body["events"] == ["before-2", "before-1", "after-1", "after-2"]
    report = base64.b64decode(response["LogResult"]).decode()
    assert "Restore Duration: " in report and "Billed Restore Duration: " in report, report
    assert "Init Duration" not in report, report
    _, warm = invoke(aws, name, version)  # the same sandbox: no hook runs again
    assert warm["events"] == body["events"] and warm["namespace"] == body["namespace"]


def test_fifty_restored_sandboxes_draw_fifty_different_random_values(
    server: Server, publish: Publish
) -> None:
    """Also the scale-out burst: 50 concurrent cold calls get 50 sandboxes from one Init."""
    name, version, _ = publish(HOOKS)
    client = lambda_client(server, max_pool_connections=50)
    with ThreadPoolExecutor(50) as pool:
        calls = [pool.submit(invoke, client, name, version, {"sleep": 3}) for _ in range(50)]
        bodies = [call.result()[1] for call in calls]
    assert len({body["namespace"] for body in bodies}) == 50  # fifty sandboxes
    assert len({body["initId"] for body in bodies}) == 1  # one Init, in the template
    assert all(body["restored"] for body in bodies)
    for field in ("random", "urandom", "uuid"):
        assert len({body[field] for body in bodies}) == 50, field
    assert len({body["stream"] for body in bodies}) == 50  # a log stream each


REFUSED = {
    "threads": (
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(3600,), name='poller', daemon=True).start()\n",
        "poller",
    ),
    "sockets": (
        "import socket\nLISTENER = socket.socket()\nLISTENER.bind(('127.0.0.1', 0))\n",
        "socket",
    ),
    "files": ("LOG = open('/tmp/kept-open', 'w')\n", "/tmp/kept-open"),
    # Not seen by the runtime's own check (user code may lie): the zygote's, from outside.
    "shared memory": ("import mmap\nSHARED = mmap.mmap(-1, 4096)\n", "shared writable memory"),
}


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_a_template_holding_what_a_fork_cannot_carry_is_refused_with_its_reason(
    aws: Any, publish: Publish, kind: str
) -> None:
    prelude, named = REFUSED[kind]
    source = (
        prelude
        + "import os\n\ndef handler(event, context):\n"
        + ("    return os.environ.get('AWS_LAMBDA_INITIALIZATION_TYPE')\n")
    )
    name, version, config = publish(source)
    assert config["State"] == "Active"
    assert config["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "Off"}
    assert config["StateReasonCode"], config
    assert named in config["StateReason"], config["StateReason"]
    _, body = invoke(aws, name, version)  # never broken: it runs Init as without SnapStart
    assert body == "on-demand"


def test_a_thread_stopped_by_a_before_snapshot_hook_is_no_reason_to_refuse(
    aws: Any, publish: Publish
) -> None:
    source = (
        "import threading\nfrom snapshot_restore_py import register_before_snapshot\n"
        "STOP = threading.Event()\nWORKER = threading.Thread(target=STOP.wait)\nWORKER.start()\n"
        "@register_before_snapshot\ndef stop():\n    STOP.set()\n    WORKER.join()\n\n"
        "def handler(event, context):\n    return threading.active_count()\n"
    )
    name, version, config = publish(source)
    assert config["SnapStart"]["OptimizationStatus"] == "On", config
    _, body = invoke(aws, name, version)
    assert body == 1
