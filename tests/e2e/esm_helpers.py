"""What the event source mapping tests (RabbitMQ and NATS) share."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any

from conftest import ROLE, Server, make_zip


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
