"""The lane: Invoke read and answered whole by ember's HTTP protocol, without the ASGI
cycle (``ember.api.wire``), beside uvicorn's cycle for every other request.

Raw sockets against a real ``ember serve --auth none``: what a client may do on one
connection (pipelining, a body in pieces, ``Connection: close``, HTTP/1.0,
``Expect: 100-continue``, going away mid-call) must be answered as through the
ASGI path, and the two paths must answer the same request alike.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROLE, Server, lambda_client, make_zip

SOURCE = """
import time

def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    time.sleep(event.get("sleep", 0))
    return {"echo": event}
"""
READ_TIMEOUT = "2"


def _path(function: str) -> str:
    return f"/2015-03-31/functions/{function}/invocations"


def _request(path: str, body: bytes, *headers: str, method: str = "POST") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _chunked(path: str, body: bytes, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Transfer-Encoding: chunked", *headers]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return head + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"


class Reader:
    """Responses off one connection, one at a time (Content-Length framed)."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.buffer = b""

    def _fill(self) -> bool:
        chunk = self.conn.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            assert self._fill(), f"closed before a whole head: {self.buffer!r}"
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            assert name.lower() not in headers, f"{name} twice: {head!r}"
            headers[name.lower()] = value.strip()
        status = int(status_line.split()[1])
        if status == 100:
            return status, headers, b""
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            assert self._fill(), "closed before the whole body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    def closed(self) -> bool:
        """Whether the server closes the connection now (nothing more comes)."""
        self.conn.settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            return not self.buffer and not self._fill()
        return True


@contextlib.contextmanager
def connection(server: Server) -> Iterator[tuple[socket.socket, Reader]]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        yield conn, Reader(conn)


@pytest.fixture(scope="module")
def lane_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    data_dir = tmp_path_factory.mktemp("lane") / "data"
    server = Server(data_dir, extra_args=["--auth", "none", "--read-timeout", READ_TIMEOUT])
    server.start()
    aws = lambda_client(server)
    aws.create_function(
        FunctionName="lane",
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": SOURCE})},
    )
    yield server, "lane"
    server.stop()


def test_pipelined_calls_are_answered_in_order(lane_server: tuple[Server, str]) -> None:
    server, function = lane_server
    path = _path(function)
    with connection(server) as (conn, reader):
        conn.sendall(
            _request(path, b'{"n": 1}')
            + _request(path, b'{"n": 2}')
            + _request(f"/2015-03-31/functions/{function}", b"", method="GET")  # not the lane
            + _chunked(path, b'{"n": 3}')  # not the lane either
            + _request(path, b'{"n": 4}')
        )
        answers = [reader.response() for _ in range(5)]
    assert [status for status, _, _ in answers] == [200] * 5
    echoed = [json.loads(body)["echo"]["n"] for _, _, body in answers[:2] + answers[3:]]
    assert echoed == [1, 2, 3, 4]
    assert json.loads(answers[2][2])["Configuration"]["FunctionName"] == function


def test_a_body_in_pieces_is_read_whole(lane_server: tuple[Server, str]) -> None:
    server, function = lane_server
    request = _request(_path(function), b'{"n": 5, "pad": "' + b"x" * 200_000 + b'"}')
    with connection(server) as (conn, reader):
        for start in range(0, len(request), 70_000):
            conn.sendall(request[start : start + 70_000])
            time.sleep(0.05)
        status, headers, body = reader.response()
    assert status == 200, body
    assert json.loads(body)["echo"]["n"] == 5
    assert headers["x-amz-executed-version"] == "$LATEST"


def test_connection_close_and_http_1_0_close_after_the_answer(
    lane_server: tuple[Server, str],
) -> None:
    server, function = lane_server
    with connection(server) as (conn, reader):
        conn.sendall(_request(_path(function), b'{"n": 6}', "Connection: close"))
        status, headers, _ = reader.response()
        assert status == 200 and headers["connection"] == "close"
        assert reader.closed()
    with connection(server) as (conn, reader):
        conn.sendall(_request(_path(function), b'{"n": 7}').replace(b"HTTP/1.1", b"HTTP/1.0", 1))
        status, _, body = reader.response()
        assert status == 200 and json.loads(body)["echo"]["n"] == 7
        assert reader.closed()


def test_expect_100_continue_is_answered_before_the_body(lane_server: tuple[Server, str]) -> None:
    server, function = lane_server
    body = b'{"n": 8}'
    request = _request(_path(function), body, "Expect: 100-continue")
    with connection(server) as (conn, reader):
        conn.sendall(request[: -len(body)])
        assert reader.response()[0] == 100
        conn.sendall(body)
        status, _, answer = reader.response()
    assert status == 200 and json.loads(answer)["echo"]["n"] == 8


def _comparable(answer: tuple[int, dict[str, str], bytes]) -> tuple[int, set[str], Any]:
    status, headers, body = answer
    names = set(headers) - {"date"}  # the rest (values aside) must match
    loaded = json.loads(body)
    if isinstance(loaded, dict):  # the request id differs per call
        loaded.pop("requestId", None)
    return status, names, loaded


@pytest.mark.parametrize(
    ("event", "host"),
    [
        (b'{"n": 9}', "127.0.0.1"),
        (b'{"fail": true}', "127.0.0.1"),  # a function error: X-Amz-Function-Error
        (b"not json", "127.0.0.1"),  # refused by the service
        (b'{"n": 10}', "elsewhere.example"),  # refused by the Host check
    ],
)
def test_the_lane_and_the_asgi_path_answer_alike(
    lane_server: tuple[Server, str], event: bytes, host: str
) -> None:
    server, function = lane_server
    answers = []
    for request in (_request, _chunked):  # chunked bodies take uvicorn's cycle
        with connection(server) as (conn, reader):
            conn.sendall(request(_path(function), event).replace(b"127.0.0.1", host.encode()))
            answers.append(reader.response())
    lane, asgi = answers
    assert _comparable(lane) == _comparable(asgi)
    for name in ("x-amz-executed-version", "x-amz-function-error", "x-amzn-errortype"):
        assert lane[1].get(name) == asgi[1].get(name)
    assert lane[1]["server"] == "uvicorn" and lane[1]["date"]
    if host != "127.0.0.1":
        assert lane[0] == 421


def test_a_client_gone_mid_call_costs_the_server_nothing(lane_server: tuple[Server, str]) -> None:
    server, function = lane_server
    with connection(server) as (conn, _):
        conn.sendall(_request(_path(function), b'{"sleep": 0.5}'))
        time.sleep(0.1)  # the call runs
    time.sleep(0.8)  # and ends, with no one to answer
    with connection(server) as (conn, reader):
        conn.sendall(_request(_path(function), b'{"n": 11}'))
        status, _, body = reader.response()
    assert status == 200 and json.loads(body)["echo"]["n"] == 11
    assert "Traceback" not in server.output()


def test_a_half_sent_body_is_closed(lane_server: tuple[Server, str]) -> None:
    server, function = lane_server
    with connection(server) as (conn, reader):
        request = _request(_path(function), b'{"n": 12, "pad": "' + b"x" * 100 + b'"}')
        conn.sendall(request[:-20])
        started = time.monotonic()
        assert reader.closed()  # within the read timeout (2 s), unanswered
        assert time.monotonic() - started < 20


@pytest.fixture
def stopping(spawn_server: Callable[..., Server], tmp_path: Path) -> Server:
    server = spawn_server(tmp_path / "data", "--auth", "none")
    lambda_client(server).create_function(
        FunctionName="lane",
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": SOURCE})},
    )
    return server


def test_a_call_running_at_shutdown_is_answered_then_closed(stopping: Server) -> None:
    with connection(stopping) as (conn, reader):
        conn.sendall(_request(_path("lane"), b'{"n": 13}'))
        assert reader.response()[0] == 200  # warm
        conn.sendall(_request(_path("lane"), b'{"sleep": 1, "n": 14}'))
        time.sleep(0.3)
        assert stopping.process is not None
        stopping.process.send_signal(signal.SIGTERM)
        status, headers, body = reader.response()
        assert status == 200 and json.loads(body)["echo"]["n"] == 14
        assert headers["connection"] == "close"
        assert reader.closed()
    assert stopping.process.wait(30) == 0
