"""What the event source mapping tests (RabbitMQ and NATS) share."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

from conftest import ROLE, Server, make_zip


def recorded(path: Path) -> list[dict[str, Any]]:
    """The events a recorder function wrote to ``path``, one JSON line each. A function
    killed mid-write (``crash``) leaves a torn line, which is skipped: the batch it carried
    was never acknowledged, so it comes again. Recorders start each record on a new line
    so that a torn one never swallows the next."""
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        if line.strip():
            with contextlib.suppress(json.JSONDecodeError):
                found.append(json.loads(line))
    return found


def crash(server: Server) -> None:
    """kill -9 of ember and of its sandboxes with it, as a host that dies: a batch being
    handled when it happens is lost with them unless it was left unacknowledged."""
    assert server.process is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGKILL)
    server.stop(signal.SIGKILL)


def deploy_recorder(
    aws: Any, name: str, source: str, record: Path, fail_first: str = "", slow: float = 0
) -> None:
    """A function (``source``) told where to record what it receives (``RECORD``), which
    message ids to fail on first delivery (``FAIL_FIRST``) and how long to take (``SLOW``)."""
    aws.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Timeout=3,
        Code={"ZipFile": make_zip({"app.py": source})},
        Environment={
            "Variables": {"RECORD": str(record), "FAIL_FIRST": fail_first, "SLOW": str(slow)}
        },
    )
