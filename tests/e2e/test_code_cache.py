"""The worker's unpacked code and merged layers go once nothing needs them.

Every code update unpacks a new tree under ``<data>/code/<sha256>``; without a
sweep a long-running server would keep every version it ever ran. A tree stays
while a function, a published version or a live sandbox uses it, and a call
already running on old code finishes on it.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from e2e_helpers import invoke_json

from conftest import ROLE, Server, lambda_client, make_zip, wait_until

Spawn = Callable[..., Server]

SOURCE = """
import time
VERSION = {version!r}

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {{"version": VERSION}}
"""


def package(version: str) -> bytes:
    return make_zip({"app.py": SOURCE.format(version=version)})


def hex_digest(configuration: dict[str, Any]) -> str:
    """The cache's name for a package: CodeSha256 (base64) as hex."""
    return base64.b64decode(configuration["CodeSha256"]).hex()


def cached(server: Server, kind: str = "code") -> set[str]:
    root = Path(server.data_dir) / kind
    return (
        {p.name for p in root.iterdir() if not p.name.startswith(".")} if root.is_dir() else set()
    )


def test_old_code_is_swept_but_not_from_under_a_running_call(spawn_server: Spawn) -> None:
    server = spawn_server()
    aws = lambda_client(server)
    first = aws.create_function(
        FunctionName="cached",
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": package("one")},
        Timeout=30,
    )
    assert invoke_json(aws, "cached") == {"version": "one"}
    assert hex_digest(first) in cached(server)

    # A call is running on version one when the code changes under it.
    answer: dict[str, Any] = {}
    running = threading.Thread(
        target=lambda: answer.update(invoke_json(aws, "cached", {"sleep": 2}))
    )
    running.start()
    wait_until(lambda: server.health()["sandboxes"]["busy"] == 1)
    second = aws.update_function_code(FunctionName="cached", ZipFile=package("two"))
    aws.get_waiter("function_updated_v2").wait(FunctionName="cached")
    assert invoke_json(aws, "cached") == {"version": "two"}
    assert hex_digest(first) in cached(server)  # still in use by the running call
    running.join(30)
    assert answer == {"version": "one"}
    # Its sandbox retired after the call; the next periodic sweep takes the tree.
    wait_until(lambda: hex_digest(first) not in cached(server), timeout=60)
    assert hex_digest(second) in cached(server)

    # A published version keeps its code after $LATEST moves on.
    aws.publish_version(FunctionName="cached")
    third = aws.update_function_code(FunctionName="cached", ZipFile=package("three"))
    aws.get_waiter("function_updated_v2").wait(FunctionName="cached")
    assert invoke_json(aws, "cached") == {"version": "three"}
    assert invoke_json(aws, "cached", Qualifier="1") == {"version": "two"}
    assert {hex_digest(second), hex_digest(third)} <= cached(server)

    aws.delete_function(FunctionName="cached")
    wait_until(lambda: not cached(server), timeout=60)


def test_merged_layers_go_with_the_last_function_using_them(spawn_server: Spawn) -> None:
    server = spawn_server()
    aws = lambda_client(server)
    layer = aws.publish_layer_version(
        LayerName="shared",
        Content={"ZipFile": make_zip({"python/shared.py": "NAME = 'shared'\n"})},
    )
    source = "import shared\n\ndef handler(event, context):\n    return shared.NAME\n"
    aws.create_function(
        FunctionName="layered",
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": source})},
        Layers=[layer["LayerVersionArn"]],
    )
    assert invoke_json(aws, "layered") == "shared"
    assert len(cached(server, "layers")) == 1
    aws.delete_function(FunctionName="layered")
    wait_until(lambda: not cached(server, "layers") and not cached(server), timeout=60)
    # The layer version itself is still published: only the worker's copy went.
    assert aws.get_layer_version(LayerName="shared", VersionNumber=1)["Version"] == 1
