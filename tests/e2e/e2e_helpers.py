"""Helpers shared by the end-to-end tests: what a user checks on a response.

A plain module rather than ``tests/e2e/conftest.py``: test modules import
helpers with ``from conftest import ...``, which must keep meaning the root
conftest, and a second conftest module would shadow it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import uuid
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ember.cli.credentials import Credentials

if TYPE_CHECKING:
    from conftest import Server

ACCOUNT = "000000000000"
REGION = "us-east-1"
# LastModified as Lambda writes it: 2026-11-28T13:07:49.123+0000.
LAST_MODIFIED = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")
# Request ids are UUIDs on AWS; users quote them when reporting a problem.
REQUEST_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# A handler that reports which code and configuration an invocation ran with.
ECHO = """
import os

def handler(event, context):
    return {"version": VERSION, "env": os.environ.get("GREETING"), "event": event}
"""


def echo_source(version: str) -> str:
    return f"VERSION = {version!r}\n{ECHO}"


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def code_sha256(package: bytes) -> str:
    """Lambda's CodeSha256: base64 of the raw digest, not hex."""
    return base64.b64encode(hashlib.sha256(package).digest()).decode()


def shared_credentials_file(server: Server, directory: Path) -> Path:
    """A shared-credentials file with ``server``'s key as profile [ember].

    The server's own ``<data dir>/credentials`` when it wrote one; otherwise
    (a server that verifies no signatures) a file in ``directory`` holding the
    suite's fixed key, so that tools pointed at it behave the same either way.
    """
    if server.credentials_file.is_file():
        return server.credentials_file
    keys = server.credentials
    path = directory / "credentials"
    path.write_text(
        f"[ember]\naws_access_key_id = {keys.access_key}\n"
        f"aws_secret_access_key = {keys.secret_key}\nregion = {keys.region}\n"
    )
    return path


# What a user key of the tests may do: everything, in its own account.
ALLOW_ALL = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "lambda:*", "Resource": "*"}],
    }
)


def new_caller(server: Server, user: str) -> Credentials:
    """An access key of its own for a new user ``user-<random>``, allowed everything.

    Made through ``POST /_ember/keys`` when the server verifies signatures (it
    wrote a credentials file); a server that verifies none tells callers apart
    by the access key id alone, so a fresh id is enough there.
    """
    name = f"{user}-{uuid.uuid4().hex[:6]}"
    if not server.credentials_file.is_file():
        return replace(server.credentials, access_key=f"AKIA{name.upper()}", source=name)
    body = {"UserName": name, "Policy": ALLOW_ALL}
    created = server.http.post("/_ember/keys", json=body, timeout=10)
    assert created.status_code == 201, created.text
    keys = created.json()
    return Credentials(
        keys["AccessKeyId"], keys["SecretAccessKey"], None, server.credentials.region, name
    )


def invoke_json(aws: Any, name: str, event: Any = None, **params: Any) -> Any:
    """Invoke synchronously and decode the result; fails on a function error."""
    response = aws.invoke(FunctionName=name, Payload=json.dumps(event or {}).encode(), **params)
    body = response["Payload"].read()
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response, body
    return json.loads(body)


def request_id_of(response: dict[str, Any]) -> str:
    """The response's x-amzn-RequestId, checked to look like AWS's."""
    request_id = str(response["ResponseMetadata"]["RequestId"])
    assert REQUEST_ID.match(request_id), request_id
    return request_id


# -- sandboxes, seen from the host -------------------------------------------------
#
# A sandbox's runtime is PID 1 of its own PID namespace, so ``os.getpid()`` in a
# function says nothing about which sandbox ran it. A function tells its sandboxes
# apart by a module-level token (fresh on every Init), and the host pid of a
# sandbox is known only to the server, through ``GET /_ember/sandboxes``.

# Source lines giving a function a per-Init token; prepend to a handler's source.
TOKEN_SOURCE = "import uuid\nTOKEN = uuid.uuid4().hex\n"


def pid_gone(pid: int) -> bool:
    """True once no process (not even a zombie) has this host pid."""
    return not os.path.exists(f"/proc/{pid}")


def namespace_pids(pid: int) -> list[int]:
    """``NSpid`` of a host pid: its pid in each PID namespace, outermost first."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return [int(field) for field in line.split()[1:]]
    raise AssertionError(f"no NSpid line for pid {pid}")


def read_in_sandbox(pid: int, path: str) -> str:
    """Read ``path`` as the sandbox whose runtime has host pid ``pid`` sees it
    (through ``/proc/<pid>/root``, which root on the host may follow)."""
    return (Path(f"/proc/{pid}/root") / path.lstrip("/")).read_text()
