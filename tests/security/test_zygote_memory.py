"""A function's environment, where Lambda users keep their secrets, never reaches
another function's sandbox through the zygote's memory.

Every sandbox is a copy of its zygote's memory, freed memory included, and a
sandbox may read all of its own. So whatever the zygote has parsed, it hands on
to every later sandbox, whichever function that runs: before the zygote stopped
reading environments, secrets of earlier functions were found this way. The
platform now writes a sandbox's environment to a sealed memfd that the zygote
passes on unread (to a new sandbox, or by ``sendfile`` into the CLAIM frame of a
pre-started Node runtime or of a sandbox restored from a SnapStart template).

Each test starts functions holding secrets of several sizes (so that they land in
several of the allocator's size classes) along each of those paths, then a new
function that scans its own memory for them.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from conftest import POLL_FAST, ROLE, Server, make_zip

SIZES = (4, 24, 60, 200, 700, 1500)  # random bytes, written as hex: up to 3,000 of 4 KB
POOL = 2  # blanks the zygote keeps forked ahead (ZygoteBackend's pool)

PYTHON_KEEPER = """
import os


def handler(event, context):
    return len(os.environ["SECRET"])
"""

NODE_KEEPER = """
exports.handler = async () => [process.env.SECRET.length, process.env.NODE_AUTH_TOKEN.length];
"""

SCANNER = """
import ctypes
import re


def handler(event, context):
    needle = re.compile(re.escape(event["prefix"].encode()) + rb"[0-9a-f]+")
    found, scanned = set(), 0
    with open("/proc/self/maps") as maps:
        lines = maps.read().splitlines()
    for line in lines:
        fields = line.split()
        path = fields[5] if len(fields) > 5 else ""
        # Every readable private mapping that holds data: the heap, arenas, stacks,
        # data sections (a read-only file mapping may end past its file: SIGBUS).
        if fields[1][0] != "r" or fields[1][3] != "p" or path.startswith("[v"):
            continue
        if path.startswith("/") and fields[1][1] != "w":
            continue
        start, end = (int(address, 16) for address in fields[0].split("-"))
        data = ctypes.string_at(start, end - start)
        scanned += len(data)
        found.update(match.decode() for match in needle.findall(data))
    return {"found": sorted(found), "scanned": scanned}
"""

Create = Callable[..., None]


@pytest.fixture(scope="module", autouse=True)
def full_isolation(server: Server) -> None:
    if os.geteuid() != 0:
        pytest.skip("not root: `ember serve` cannot isolate sandboxes")
    assert server.health()["isolation"]["isolated"] is True


@pytest.fixture
def create(aws: Any) -> Any:
    """Create a function; deleted after the test."""
    created: list[str] = []

    def make(name: str, files: dict[str, str], **settings: Any) -> None:
        settings = {"Runtime": "python3.11", "Handler": "app.handler", **settings}
        aws.create_function(
            FunctionName=name, Role=ROLE, Timeout=30, Code={"ZipFile": make_zip(files)}, **settings
        )
        created.append(name)
        aws.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=POLL_FAST)

    yield make
    for name in created:
        aws.delete_function(FunctionName=name)


def invoke(aws: Any, name: str, event: Any = None, **options: Any) -> Any:
    response = aws.invoke(FunctionName=name, Payload=json.dumps(event or {}).encode(), **options)
    body = json.loads(response["Payload"].read())
    assert "FunctionError" not in response, body
    return body


def assert_none_seen(
    aws: Any, create: Create, unique_name: str, prefix: str, secrets: dict[str, str]
) -> None:
    """A new function, scanning its whole memory for ``prefix``, finds none of ``secrets``."""
    scanner = f"{unique_name}-scanner"
    create(scanner, {"app.py": SCANNER})
    seen = invoke(aws, scanner, {"prefix": prefix})
    assert seen["scanned"] > 1 << 20  # it did read its memory, the zygote's copy among it
    leaked = sorted(label for label, secret in secrets.items() if secret in seen["found"])
    assert not leaked, f"secrets of {leaked} are in another function's sandbox"


def keepers(unique_name: str) -> tuple[str, dict[str, str]]:
    """A prefix, and a SECRET of each of SIZES after it by the function to hold it."""
    prefix = f"env-{uuid.uuid4().hex[:8]}-"
    return prefix, {f"{unique_name}-{size}": prefix + os.urandom(size).hex() for size in SIZES}


def test_a_python_functions_environment_is_not_in_another_functions_sandbox(
    aws: Any, create: Create, unique_name: str
) -> None:
    prefix, secrets = keepers(unique_name)
    for name, secret in secrets.items():
        create(name, {"app.py": PYTHON_KEEPER}, Environment={"Variables": {"SECRET": secret}})
        assert invoke(aws, name) == len(secret)  # the secret did reach its own sandbox
    assert_none_seen(aws, create, unique_name, prefix, secrets)


def test_a_restored_sandboxs_environment_is_not_in_another_functions_sandbox(
    aws: Any, create: Create, unique_name: str
) -> None:
    prefix, secrets = keepers(unique_name)
    for name, secret in secrets.items():
        variables = {"SECRET": secret}
        create(
            name,
            {"app.py": PYTHON_KEEPER},
            Environment={"Variables": variables},
            SnapStart={"ApplyOn": "PublishedVersions"},
        )
        version = aws.publish_version(FunctionName=name)["Version"]
        aws.get_waiter("published_version_active").wait(
            FunctionName=name, Qualifier=version, WaiterConfig=POLL_FAST
        )
        config = aws.get_function_configuration(FunctionName=name, Qualifier=version)
        assert config["SnapStart"]["OptimizationStatus"] == "On"
        # The template's own Init was a spawn; this call is a restore, whose
        # environment the zygote's restore thread wrote into the CLAIM frame.
        response = aws.invoke(FunctionName=name, Qualifier=version, LogType="Tail")
        assert "Restore Duration" in _log_tail(response)
        assert json.loads(response["Payload"].read()) == len(secret)
    assert_none_seen(aws, create, unique_name, prefix, secrets)


def test_a_node_functions_environment_is_not_in_another_functions_sandbox(
    aws: Any, server: Server, create: Create, unique_name: str
) -> None:
    if "nodejs20.x" not in server.http.get("/_ember/runtimes").json()["available"]:
        pytest.skip("the host's node is not Node 20 and nodejs20.x is not installed")
    prefix = f"env-{uuid.uuid4().hex[:8]}-"
    secrets = {}
    for size in SIZES[:-1]:  # two variables: both within the 4 KB
        # NODE_AUTH_TOKEN is read at start, so it picks (or starts) a pool of its own.
        variables = {
            variable: prefix + os.urandom(size).hex() for variable in ("SECRET", "NODE_AUTH_TOKEN")
        }
        secrets.update({f"{variable}/{size}": value for variable, value in variables.items()})
        name = f"{unique_name}-{size}"
        create(
            name,
            {"index.js": NODE_KEEPER},
            Runtime="nodejs20.x",
            Handler="index.handler",
            Environment={"Variables": variables},
        )
        expected = [len(variables["SECRET"]), len(variables["NODE_AUTH_TOKEN"])]
        assert invoke(aws, name) == expected  # its runtime's start, and its CLAIM frame
    # Node's claims took no Python blank: the next Python sandboxes would come from
    # the pool forked before them. Other functions take those first, and the
    # scanner gets a blank forked after (the pool refills at once).
    for spare in range(POOL):
        name = f"{unique_name}-python-{spare}"
        create(name, {"app.py": PYTHON_KEEPER}, Environment={"Variables": {"SECRET": "x"}})
        assert invoke(aws, name) == 1
    assert_none_seen(aws, create, unique_name, prefix, secrets)


def _log_tail(response: dict[str, Any]) -> str:
    return base64.b64decode(response["LogResult"]).decode()
