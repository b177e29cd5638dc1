"""Nothing unbounded is read: oversized bodies and heads cost the server no memory,
and a request that stalls is closed.

Each attack is sent by hand over a raw socket, unauthenticated (what the server
reads before it knows who calls is the point), to a real ``ember serve``, with
authentication on and off (``--auth none`` once let Starlette read any body
whole). The server's peak resident memory (``VmHWM`` of ``/proc/PID/status``,
reset through ``clear_refs`` before the attacks: those, and a 200 MB chunk trailer)
must stay within 64 MB of its idle ``VmRSS``; and it must still answer afterwards.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import socket
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conftest import ROLE, Server, lambda_client, make_zip

MB = 1024 * 1024
ALLOWED_GROWTH = 64 * MB
CREATE = "/2015-03-31/functions"
READ_TIMEOUT = "2"  # seconds, for the stall tests (the default is 30)
CHUNK = b"A" * MB  # base64's alphabet: a package's body, as far as it goes


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _reset_peak(pid: int) -> None:
    # Writing 5 resets VmHWM to the current RSS (Linux >= 4.0).
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _connect(server: Server) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
    return conn


def _head(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _send_all(conn: socket.socket, parts: Iterator[bytes]) -> bool:
    """Send ``parts`` until the server stops taking them; whether it cut us off."""
    try:
        for part in parts:
            conn.sendall(part)
    except (BrokenPipeError, ConnectionResetError):
        return True
    return False


def _answer(conn: socket.socket) -> bytes:
    """What the server answered before closing (empty if the close reset it)."""
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := conn.recv(65536):
            received += chunk
    return received


def _declared_body(server: Server, size: int, path: str = CREATE) -> bytes:
    with _connect(server) as conn:
        conn.sendall(_head([f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {size}"]))
        _send_all(conn, (CHUNK for _ in range(size // MB)))
        return _answer(conn)


def _chunked_body(server: Server, size: int, path: str = CREATE) -> bytes:
    framed = b"%x\r\n" % len(CHUNK) + CHUNK + b"\r\n"
    with _connect(server) as conn:
        conn.sendall(
            _head([f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Transfer-Encoding: chunked"])
        )
        _send_all(conn, (framed for _ in range(size // MB)))
        return _answer(conn)


def _huge_headers(server: Server, count: int, size: int) -> bytes:
    def parts() -> Iterator[bytes]:
        yield f"GET {CREATE} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        for n in range(count):
            yield f"X-Big-{n}: ".encode()
            yield from (CHUNK for _ in range(size // MB))
            yield b"\r\n"
        yield b"\r\n"

    with _connect(server) as conn:
        _send_all(conn, parts())
        return _answer(conn)


def _huge_trailer(server: Server, size: int) -> bytes:
    """A chunked Invoke whose body ends at once and whose trailer never does."""
    with _connect(server) as conn:
        conn.sendall(
            _head([f"POST {CREATE}/f/invocations HTTP/1.1", "Host: 127.0.0.1"])[:-2]
            + b"Transfer-Encoding: chunked\r\n\r\n1\r\nX\r\n0\r\nX-Trailer: "
        )
        cut = _send_all(conn, (CHUNK for _ in range(size // MB)))
        assert cut, "the server read a 200 MB trailer to its end"
        return _answer(conn)


def _refused_with(answer: bytes, status: int, code: bytes) -> None:
    """Lambda's error shape when the answer got through (a reset may swallow it)."""
    if not answer:
        return
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), head
    assert code in head
    assert b"connection: close" in head.lower()
    assert "message" in json.loads(body)


@pytest.fixture(scope="module", params=["sigv4", "none"])
def attacked(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp(f"bounded-{request.param}") / "data"
    server = Server(data_dir, extra_args=["--auth", request.param]).start()
    aws = lambda_client(server)
    for _ in range(3):  # warm: lazy imports and first-request allocations are idle cost
        aws.list_functions()
        server.health()
    yield server
    server.stop()


def test_oversized_requests_cost_no_memory(attacked: Server) -> None:
    assert attacked.process is not None
    pid = attacked.process.pid
    idle = _status_kb(pid, "VmRSS")
    _reset_peak(pid)

    _refused_with(_declared_body(attacked, 200 * MB), 413, b"RequestEntityTooLargeException")
    _refused_with(_declared_body(attacked, 1100 * MB), 413, b"RequestEntityTooLargeException")
    _refused_with(_chunked_body(attacked, 200 * MB), 413, b"RequestEntityTooLargeException")
    _refused_with(_chunked_body(attacked, 1100 * MB), 413, b"RequestEntityTooLargeException")
    _refused_with(_huge_headers(attacked, 3, 40 * MB), 431, b"RequestHeaderFieldsTooLargeException")
    _huge_trailer(attacked, 200 * MB)
    # MCP's SDK reads its body itself: it is handed one read and bounded already.
    _refused_with(_declared_body(attacked, 200 * MB, "/mcp"), 413, b"RequestEntityTooLarge")
    _refused_with(_chunked_body(attacked, 200 * MB, "/mcp"), 413, b"RequestEntityTooLarge")

    peak = _status_kb(pid, "VmHWM")
    assert peak - idle <= ALLOWED_GROWTH, f"peak RSS {peak / MB:.0f} MB, idle {idle / MB:.0f} MB"
    assert httpx.get(attacked.url + "/health", timeout=10).status_code == 200
    lambda_client(attacked).list_functions()  # and it still serves the API


def test_too_many_headers_are_refused(attacked: Server) -> None:
    lines = [f"GET {CREATE} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"X-Many-{n}: {n}" for n in range(200)]
    with _connect(attacked) as conn:
        conn.sendall(_head(lines))
        answer = _answer(conn)
    assert answer.startswith(b"HTTP/1.1 431 ")
    _refused_with(answer, 431, b"RequestHeaderFieldsTooLargeException")


@pytest.fixture
def impatient(spawn_server: Callable[..., Server]) -> Server:
    return spawn_server(None, "--read-timeout", READ_TIMEOUT)


def test_a_half_sent_head_is_closed(impatient: Server) -> None:
    with _connect(impatient) as conn:
        conn.sendall(f"POST {CREATE} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
        answer = _answer(conn)  # returns once the server closes (the socket waits 60 s)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    _refused_with(answer, 408, b"RequestTimeoutException")


def test_a_connection_that_never_speaks_is_closed(impatient: Server) -> None:
    with _connect(impatient) as conn:
        assert _answer(conn).startswith(b"HTTP/1.1 408 ")


def test_a_head_trickled_byte_by_byte_is_closed(impatient: Server) -> None:
    # Slow loris: each byte comes well within the read timeout, the head never ends.
    with _connect(impatient) as conn:
        conn.sendall(f"GET {CREATE} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
        conn.settimeout(0.5)
        for _ in range(240):  # two minutes at most
            try:
                conn.sendall(b"X")
                answer = conn.recv(65536)
            except TimeoutError:
                continue
            break
        else:
            pytest.fail("the server kept a trickling head open")
    assert answer.startswith(b"HTTP/1.1 408 "), answer


def test_a_half_sent_body_is_closed(impatient: Server) -> None:
    with _connect(impatient) as conn:
        conn.sendall(
            _head([f"POST {CREATE} HTTP/1.1", "Host: 127.0.0.1", "Content-Length: 1000"])
            + b'{"FunctionName": "'
        )
        # Returns once the server closes (the socket would wait 60 s): the app had
        # the request and got a disconnect, so nothing is answered.
        assert _answer(conn) == b""


def _large_package(size: int) -> bytes:
    """A working function's zip of about ``size`` bytes: random (incompressible) ballast
    stored beside the handler."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return {'ok': event}\n")
        archive.writestr("ballast.bin", os.urandom(size))
    return buffer.getvalue()


def test_a_large_package_is_held_in_memory_once(attacked: Server) -> None:
    """A 45 MB CreateFunction body carries a 34 MB zip: the server holds the body, and
    decodes the zip to a temporary file, not beside it in memory (body + zip would be
    1.75 x the body)."""
    assert attacked.process is not None
    pid = attacked.process.pid
    aws = lambda_client(attacked, read_timeout=120)
    small = make_zip({"app.py": "def handler(event, context):\n    return event\n"})
    aws.create_function(  # warm: the first upload's lazy imports are idle cost
        FunctionName="warm-upload",
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": small},
    )
    package = _large_package(45 * MB * 3 // 4 - 64 * 1024)
    body = len(base64.b64encode(package))  # the JSON around it is a few hundred bytes
    idle = _status_kb(pid, "VmRSS")
    _reset_peak(pid)

    aws.create_function(
        FunctionName="large-upload",
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": package},
    )

    peak = _status_kb(pid, "VmHWM")
    assert peak - idle < 1.3 * body, (
        f"peak RSS +{(peak - idle) / MB:.0f} MB, body {body / MB:.0f} MB"
    )
    code = aws.get_function(FunctionName="large-upload")["Configuration"]
    assert code["CodeSize"] == len(package)
    assert code["CodeSha256"] == base64.b64encode(hashlib.sha256(package).digest()).decode()
    answer = aws.invoke(FunctionName="large-upload", Payload=b'"hi"')
    assert json.loads(answer["Payload"].read()) == {"ok": "hi"}
