"""Helpers of the asynchronous-invocation end-to-end tests: logs, dead letters, records."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

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


def logs(url: str, name: str) -> str:
    response = httpx.get(f"{url}/_ember/functions/{name}/logs", params={"since": 0}, timeout=10)
    return str(response.json().get("logs", "")) if response.status_code == 200 else ""


def starts(url: str, name: str, request_id: str) -> int:
    return logs(url, name).count(f"START RequestId: {request_id} ")


def records(url: str, name: str) -> list[dict[str, Any]]:
    """Invocation records a DESTINATION_PRINTER function received, in order."""
    return [json.loads(found) for found in RECORD.findall(logs(url, name))]


def dead_letters(url: str, name: str, payload: bool = False) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    params = {"limit": "1000", "payload": "1" if payload else "0"}
    while True:
        page = httpx.get(f"{url}/_ember/functions/{name}/dead-letters", params=params, timeout=30)
        page.raise_for_status()
        body = page.json()
        found.extend(body["deadLetters"])
        if not body.get("next"):
            return found
        params["after"] = body["next"]


def queue_stats(url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{url}/_ember/queue", timeout=10).json())


def function_stats(url: str, name: str) -> dict[str, Any] | None:
    for row in queue_stats(url)["functions"]:
        if row["function"] == name:
            return dict(row)
    return None


def drained(url: str, name: str) -> bool:
    row = function_stats(url, name)
    return row is None or (row["depth"] == 0 and row["inFlight"] == 0)
