"""Helpers shared by the end-to-end tests: what a user checks on a response.

A plain module rather than ``tests/e2e/conftest.py``: test modules import
helpers with ``from conftest import ...``, which must keep meaning the root
conftest, and a second conftest module would shadow it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

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
