"""Helpers of the asynchronous-invocation end-to-end tests: logs, dead letters, records."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conftest import Server

DESTINATION_PRINTER = """
import json

def handler(event, context):
    print("RECORD " + json.dumps(event))
    return {"ok": True}
"""

ALWAYS_FAILS = """
def handler(event, context):
    raise ValueError("boom " + context.aws_request_id)
"""

RECORD = re.compile(r"^RECORD (.*)$", re.MULTILINE)


def logs(server: Server, name: str) -> str:
    response = server.http.get(f"/_ember/functions/{name}/logs", params={"since": 0}, timeout=10)
    return str(response.json().get("logs", "")) if response.status_code == 200 else ""


def starts(server: Server, name: str, request_id: str) -> int:
    return logs(server, name).count(f"START RequestId: {request_id} ")


def records(server: Server, name: str) -> list[dict[str, Any]]:
    """Invocation records a DESTINATION_PRINTER function received, in order."""
    return [json.loads(found) for found in RECORD.findall(logs(server, name))]


def dead_letters(server: Server, name: str, payload: bool = False) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    params = {"limit": "1000", "payload": "1" if payload else "0"}
    while True:
        page = server.http.get(f"/_ember/functions/{name}/dead-letters", params=params, timeout=30)
        page.raise_for_status()
        body = page.json()
        found.extend(body["deadLetters"])
        if not body.get("next"):
            return found
        params["after"] = body["next"]


def queue_stats(server: Server) -> dict[str, Any]:
    return dict(server.http.get("/_ember/queue", timeout=10).json())


def function_stats(server: Server, name: str) -> dict[str, Any] | None:
    for row in queue_stats(server)["functions"]:
        if row["function"] == name:
            return dict(row)
    return None


def drained(server: Server, name: str) -> bool:
    row = function_stats(server, name)
    return row is None or (row["depth"] == 0 and row["inFlight"] == 0)
