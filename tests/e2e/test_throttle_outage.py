"""Throttling through a Redis outage: a real redis-server killed and restarted
under a real ``ember serve --throttle-backend redis``, driven by boto3.

deny (the default) answers 503 ServiceException during the outage; allow
admits calls without rate limits. Either way /health says so, and throttling
resumes by itself when Redis answers again.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from conftest import ROLE, Server, free_port, lambda_client, make_zip, wait_until

Spawn = Callable[..., Server]

APP = """
def handler(event, context):
    return {"ok": True}
"""


@dataclass
class RedisServer:
    """A redis-server of one test: no persistence, its own directory and port."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        with open(self.directory / "redis.log", "ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", *args, "--save", "", "--appendonly", "no"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._answers, timeout=30)
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"redis-server exited: {(self.directory / 'redis.log').read_text()}"
            )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    directory = tmp_path / "redis"
    directory.mkdir()
    instance = RedisServer(directory).start()
    yield instance
    instance.kill()


def outcome(aws: Any, name: str) -> int | str:
    """200, or the error code the call was refused with."""
    try:
        return int(aws.invoke(FunctionName=name, Payload=b"{}")["StatusCode"])
    except aws.exceptions.ClientError as exc:
        status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
        return f"{status} {exc.response['Error']['Code']}"


def throttle_health(server: Server) -> dict[str, Any]:
    return dict(server.health()["throttle"])


def serve_one_limited_function(
    spawn_server: Spawn, redis_server: RedisServer, unavailable: str, name: str
) -> tuple[Server, Any]:
    """A server on ``redis_server`` with ``name`` limited to 1 call an hour."""
    server = spawn_server(
        None,
        "--throttle-backend",
        "redis",
        "--redis-url",
        redis_server.url,
        "--throttle-unavailable",
        unavailable,
    )
    aws = lambda_client(server)
    aws.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": APP})},
    )
    limit = {"algorithm": "fixed-window", "rate": "1/h"}
    response = server.http.put(f"/_ember/functions/{name}/limits", json=limit, timeout=10)
    assert response.status_code == 200, response.text
    assert [outcome(aws, name) for _ in range(2)] == [200, "429 TooManyRequestsException"]
    assert throttle_health(server) == {
        "backend": "redis",
        "available": True,
        "unavailable": unavailable,
        "since": None,
    }
    return server, aws


def restart_and_see_throttling_resume(server: Server, redis_server: RedisServer) -> None:
    redis_server.start()  # same port, empty: the counts start afresh
    wait_until(lambda: throttle_health(server)["available"], timeout=30)
    assert throttle_health(server)["since"] is None


def test_deny_refuses_calls_while_redis_is_gone_and_resumes_after(
    spawn_server: Spawn, redis_server: RedisServer, unique_name: str
) -> None:
    server, aws = serve_one_limited_function(spawn_server, redis_server, "deny", unique_name)

    redis_server.kill()
    assert [outcome(aws, unique_name) for _ in range(3)] == ["503 ServiceException"] * 3
    with pytest.raises(aws.exceptions.ServiceException) as refused:
        aws.invoke(FunctionName=unique_name, Payload=b"{}")
    assert refused.value.response["Error"]["Message"] == (
        f"Throttling is unavailable: Redis at 127.0.0.1:{redis_server.port} cannot be "
        "reached; calls are refused (--throttle-unavailable deny)."
    )
    health = throttle_health(server)
    assert health["available"] is False and health["unavailable"] == "deny"
    assert isinstance(health["since"], str)

    restart_and_see_throttling_resume(server, redis_server)
    assert [outcome(aws, unique_name) for _ in range(2)] == [200, "429 TooManyRequestsException"]
    assert server.output().count("throttling is unavailable") == 1  # said once per outage


def test_allow_admits_calls_unthrottled_while_redis_is_gone_and_resumes_after(
    spawn_server: Spawn, redis_server: RedisServer, unique_name: str
) -> None:
    server, aws = serve_one_limited_function(spawn_server, redis_server, "allow", unique_name)

    redis_server.kill()
    assert [outcome(aws, unique_name) for _ in range(3)] == [200, 200, 200]
    health = throttle_health(server)
    assert health["available"] is False and health["unavailable"] == "allow"

    restart_and_see_throttling_resume(server, redis_server)
    assert [outcome(aws, unique_name) for _ in range(2)] == [200, "429 TooManyRequestsException"]


def test_a_redis_that_stops_answering_is_an_outage_too(
    spawn_server: Spawn, redis_server: RedisServer, unique_name: str
) -> None:
    server, aws = serve_one_limited_function(spawn_server, redis_server, "deny", unique_name)
    assert redis_server.process is not None

    # Stopped, not killed: connections are accepted but never answered.
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        assert [outcome(aws, unique_name) for _ in range(3)] == ["503 ServiceException"] * 3
        assert throttle_health(server)["available"] is False
    finally:
        redis_server.process.send_signal(signal.SIGCONT)

    wait_until(lambda: throttle_health(server)["available"], timeout=30)
    # Redis kept its counts: the hour's one call is still spent.
    assert outcome(aws, unique_name) == "429 TooManyRequestsException"
