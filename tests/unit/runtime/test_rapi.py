"""The Runtime API server, loaded the way the zygote loads it.

The state machine and the HTTP parser are checked directly; the supervisor
is run for real: it forks a shell-script bootstrap and serves HTTP on a free
loopback port, while the test plays both the worker (frames over a socket
pair) and the runtime (raw HTTP requests).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import load_runtime_module, wait_until

frames = load_runtime_module("_ember_frames", "frames.py")
rapi = load_runtime_module("_ember_rapi", "rapi.py")

NEXT = "/2018-06-01/runtime/invocation/next"


def request(method: str, path: str, body: bytes = b"", **headers: str) -> Any:
    parsed = rapi.Request(method, path, "HTTP/1.1", {k.lower(): v for k, v in headers.items()})
    parsed.body = body
    return parsed


def invocation(request_id: str, payload: bytes = b'{"a": 1}', context: str = "") -> Any:
    meta = [request_id, "1700000000000", "arn:aws:lambda:us-east-1:0:function:f", context, "", ""]
    frame = frames.invoke_frame(meta, payload)
    return rapi.Invocation(frame[frames.HEADER.size :])


def started_api() -> Any:
    """A RuntimeApi whose runtime finished Init and holds one event."""
    api = rapi.RuntimeApi()
    assert api.handle(request("GET", NEXT)) is None  # parked: no event yet
    api.offer(invocation("req-1"))
    status, _headers, body = api.take()
    assert status == 200 and body == b'{"a": 1}'
    return api


# --- the state machine -----------------------------------------------------------


def test_first_next_ends_init_and_an_event_carries_lambdas_headers() -> None:
    api = rapi.RuntimeApi()
    assert api.handle(request("GET", NEXT)) is None
    assert [kind for kind, _ in api.outbox] == [frames.READY]
    api.offer(invocation("req-1", context='{"custom": {"k": "v"}}'))
    status, headers, body = api.take()
    named = dict(headers)
    assert status == 200 and body == b'{"a": 1}'
    assert named["Lambda-Runtime-Aws-Request-Id"] == "req-1"
    assert named["Lambda-Runtime-Deadline-Ms"] == "1700000000000"
    assert named["Lambda-Runtime-Invoked-Function-Arn"].endswith(":function:f")
    assert named["Lambda-Runtime-Trace-Id"].startswith("Root=1-")
    assert named["Lambda-Runtime-Client-Context"] == '{"custom": {"k": "v"}}'
    # Lambda leaves out headers that have no value.
    assert "Lambda-Runtime-Cognito-Identity" not in named


def test_response_then_a_second_answer_is_an_invalid_state_transition() -> None:
    api = started_api()
    path = "/2018-06-01/runtime/invocation/req-1/response"
    assert api.handle(request("POST", path, b'{"ok": true}')) == (202, [], b'{"status":"OK"}')
    assert api.outbox[-1] == (frames.RESULT, b'{"ok": true}')
    status, _, body = api.handle(request("POST", path, b"{}"))
    assert status == 403
    assert json.loads(body)["errorType"] == "InvalidStateTransition"
    status, _, body = api.handle(request("POST", path.replace("response", "error"), b"{}"))
    assert status == 403


def test_an_unknown_request_id_is_invalid() -> None:
    api = started_api()
    status, _, body = api.handle(request("POST", "/2018-06-01/runtime/invocation/nope/response"))
    assert status == 400
    assert json.loads(body) == {
        "errorMessage": "Invalid request ID",
        "errorType": "InvalidRequestID",
    }
    # The invocation is still open: the right id is accepted afterwards.
    path = "/2018-06-01/runtime/invocation/req-1/response"
    assert api.handle(request("POST", path, b"1"))[0] == 202


def test_an_oversized_response_is_413_and_the_invoker_gets_lambdas_error() -> None:
    api = started_api()
    oversized = request("POST", "/2018-06-01/runtime/invocation/req-1/response")
    oversized.too_large = True
    status, _, body = api.handle(oversized)
    assert status == 413
    assert json.loads(body) == {
        "errorMessage": "Exceeded maximum allowed payload size (6291556 bytes).",
        "errorType": "RequestEntityTooLarge",
    }
    kind, payload = api.outbox[-1]
    assert kind == frames.ERROR
    assert json.loads(payload)["errorType"] == "Function.ResponseSizeTooLarge"
    # The environment stays usable: the next /next takes the next event.
    assert api.handle(request("GET", NEXT)) is None
    api.offer(invocation("req-2"))
    assert api.take()[0] == 200


def test_error_bodies_pass_through_and_plain_text_is_wrapped() -> None:
    api = started_api()
    error = {"errorMessage": "kaboom", "errorType": "ValueError", "stackTrace": []}
    path = "/2018-06-01/runtime/invocation/req-1/error"
    assert api.handle(request("POST", path, json.dumps(error).encode()))[0] == 202
    assert api.outbox[-1] == (frames.ERROR, json.dumps(error).encode())
    api.handle(request("GET", NEXT))
    api.offer(invocation("req-2"))
    api.take()
    path = "/2018-06-01/runtime/invocation/req-2/error"
    typed = request("POST", path, b"it broke", **{"Lambda-Runtime-Function-Error-Type": "X.Y"})
    api.handle(typed)
    assert json.loads(api.outbox[-1][1]) == {"errorMessage": "it broke", "errorType": "X.Y"}


def test_init_error_ends_init_and_is_refused_afterwards() -> None:
    api = rapi.RuntimeApi()
    body = b'{"errorMessage": "bad", "errorType": "Runtime.ImportModuleError"}'
    assert api.handle(request("POST", "/2018-06-01/runtime/init/error", body))[0] == 202
    assert api.outbox == [(frames.INIT_ERROR, body)]
    later = started_api()
    status, _, payload = later.handle(request("POST", "/2018-06-01/runtime/init/error", b"{}"))
    assert status == 403 and b"InvalidStateTransition" in payload


def test_next_while_an_event_is_unanswered_is_refused() -> None:
    api = started_api()
    status, _, body = api.handle(request("GET", NEXT))
    assert status == 403 and b"InvalidStateTransition" in body


def test_exit_is_reported_only_when_someone_waits() -> None:
    assert rapi.RuntimeApi().exited(2) is True  # during Init
    running = started_api()
    assert running.exited(-9) is True
    assert json.loads(running.outbox[-1][1]) == {"exitCode": -9}
    idle = started_api()
    idle.handle(request("POST", "/2018-06-01/runtime/invocation/req-1/response", b"1"))
    assert idle.exited(0) is False
    # An event that arrived just as the runtime died is answered too.
    idle.offer(invocation("req-2"))
    assert idle.exited(0) is True


def test_unknown_paths_and_methods() -> None:
    api = rapi.RuntimeApi()
    assert api.handle(request("GET", "/2018-06-01/runtime/restore/next"))[0] == 404
    assert api.handle(request("GET", "/elsewhere"))[0] == 404
    assert api.handle(request("POST", NEXT))[0] == 405


# --- the HTTP parser -------------------------------------------------------------


def test_parser_reads_split_content_length_and_chunked_bodies() -> None:
    parser = rapi.Parser()
    assert parser.feed(b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhe") == []
    (first,) = parser.feed(b"lloGET /b HTTP/1.1\r\n\r\n")[:1]
    assert first.body == b"hello"
    chunked = rapi.Parser()
    head = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert chunked.feed(head + b"3\r\nabc\r\n4;x=y\r\nde") == []
    (done,) = chunked.feed(b"fg\r\n0\r\n\r\n")
    assert done.body == b"abcdefg" and done.keep_alive


def test_parser_drops_an_oversized_body_but_reads_past_it() -> None:
    parser = rapi.Parser(limit=10)
    data = b"POST /a HTTP/1.1\r\nContent-Length: 20\r\n\r\n" + b"x" * 20
    (request_,) = parser.feed(data + b"GET /b HTTP/1.0\r\n\r\n")[:1]
    assert request_.too_large and request_.body == b""
    assert parser.buffer == b"" or parser.feed(b"") == []


def test_parser_refuses_garbage() -> None:
    with pytest.raises(rapi.BadRequest):
        rapi.Parser().feed(b"hello there\r\n\r\n")


def test_parser_keeps_trailers_with_the_headers() -> None:
    parser = rapi.Parser()
    head = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    (done,) = parser.feed(head + b"2\r\nab\r\n0\r\nX-One: 1\r\nX-Two: 2\r\n\r\n")
    assert done.body == b"ab"
    assert done.headers["x-one"] == "1" and done.headers["x-two"] == "2"


STREAMING = {"Lambda-Runtime-Function-Response-Mode": "streaming"}


def streaming_head(request_id: str, **headers: str) -> bytes:
    lines = [f"POST /2018-06-01/runtime/invocation/{request_id}/response HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in {**STREAMING, **headers}.items()]
    return ("\r\n".join([*lines, "Transfer-Encoding: chunked", "", ""])).encode()


def running(request_id: str) -> Any:
    api = rapi.RuntimeApi()
    api.handle(request("GET", NEXT))
    api.offer(invocation(request_id))
    api.take()
    api.outbox.clear()
    return api


def test_a_streaming_response_leaves_chunk_by_chunk_then_ends() -> None:
    api = running("req-1")
    parser = rapi.Parser(on_head=api.stream_to)
    assert parser.feed(streaming_head("req-1") + b"3\r\none\r\n") == []
    assert api.outbox == [(frames.CHUNK, b"one")]
    (done,) = parser.feed(b"3\r\ntwo\r\n0\r\n\r\n")
    assert done.streamed and done.body == b""
    assert api.handle(done)[0] == 202
    assert api.outbox == [(frames.CHUNK, b"one"), (frames.CHUNK, b"two"), (frames.STREAM_END, b"")]


def test_a_streaming_responses_prelude_and_error_trailers() -> None:
    api = running("req-2")
    parser = rapi.Parser(on_head=api.stream_to)
    head = streaming_head("req-2", **{"Content-Type": rapi.HTTP_INTEGRATION})
    parser.feed(head + b'5\r\n{"a":\r\n')
    assert api.outbox == []  # the prelude is not complete yet
    body = b"1}" + b"\0" * 8 + b"hi"
    error = b"eyJlcnJvck1lc3NhZ2UiOiAibm8ifQ=="  # {"errorMessage": "no"}
    trailers = b"Lambda-Runtime-Function-Error-Type: Custom.No\r\n"
    trailers += b"Lambda-Runtime-Function-Error-Body: " + error + b"\r\n\r\n"
    (done,) = parser.feed(b"%x\r\n%s\r\n0\r\n%s" % (len(body), body, trailers))
    api.handle(done)
    assert api.outbox[:2] == [(frames.PRELUDE, b'{"a":1}'), (frames.CHUNK, b"hi")]
    kind, payload = api.outbox[2]
    assert kind == frames.ERROR and json.loads(payload) == {"errorMessage": "no"}


def test_a_response_for_another_request_does_not_stream() -> None:
    api = running("req-3")
    parser = rapi.Parser(on_head=api.stream_to)
    (done,) = parser.feed(streaming_head("other") + b"1\r\nx\r\n0\r\n\r\n")
    assert not done.streamed and api.outbox == []
    assert api.handle(done)[0] == 400


# --- the supervisor, for real ------------------------------------------------------

BOOTSTRAP = """#!/bin/sh
echo "$AWS_LAMBDA_RUNTIME_API" > "$ADDRESS_FILE"
echo "bootstrap says hello"
exec sleep 60
"""


class Worker:
    """The worker's end of the frame socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(30)

    def read(self) -> tuple[int, bytes, bytes]:
        """The next reply, with the output of the LOG frames sent before it (as the worker)."""
        output = b""
        while True:
            header = self._exact(frames.HEADER.size)
            length, kind = frames.HEADER.unpack(header)
            data = self._exact(length)
            _rss, log_len = frames.REPLY.unpack_from(data)
            start = frames.REPLY.size
            output += data[start : start + log_len]
            if kind != frames.LOG:
                return kind, output, data[start + log_len :]

    def read_frame(self) -> tuple[int, bytes]:
        """One frame as sent: its kind and its log bytes."""
        length, kind = frames.HEADER.unpack(self._exact(frames.HEADER.size))
        data = self._exact(length)
        _rss, log_len = frames.REPLY.unpack_from(data)
        return kind, data[frames.REPLY.size : frames.REPLY.size + log_len]

    def _exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            assert chunk, "the supervisor closed the frame socket"
            data += chunk
        return data


def http(address: tuple[str, int], method: str, path: str, body: bytes = b"") -> socket.socket:
    sock = socket.create_connection(address, timeout=30)
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)
    return sock


def reply(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(rest) < int(headers["content-length"]):
        rest += sock.recv(65536)
    sock.close()
    return int(lines[0].split()[1]), headers, rest


@pytest.fixture
def supervised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A supervisor serving a sleeping bootstrap; yields (worker, address, supervisor)."""
    (tmp_path / "bootstrap").write_text(BOOTSTRAP)
    (tmp_path / "bootstrap").chmod(0o755)
    address_file = tmp_path / "address"
    monkeypatch.setenv("ADDRESS_FILE", str(address_file))
    ours, theirs = socket.socketpair()
    supervisor = rapi.Supervisor(theirs.fileno(), theirs.fileno(), str(tmp_path), 0)
    supervisor.start([str(tmp_path / "bootstrap")], dict(os.environ))
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(supervisor.serve()))
    thread.start()
    text = wait_until(lambda: address_file.exists() and address_file.read_text().strip())
    host, port = text.split(":")
    assert host == "127.0.0.1" and int(port) == supervisor.port
    try:
        yield Worker(ours), (host, int(port)), supervisor, result
    finally:
        ours.close()
        thread.join(30)
        theirs.close()


def test_supervisor_relays_one_invocation_with_the_bootstraps_output(supervised: Any) -> None:
    worker, address, _supervisor, _result = supervised
    waiting = http(address, "GET", NEXT)
    kind, log, body = worker.read()
    assert kind == frames.READY and json.loads(body)["pid"] > 0
    assert b"bootstrap says hello" in log
    meta = ["rid-1", "1700000000000", "arn:aws:lambda:us-east-1:0:function:f", "", "", "tr"]
    worker.sock.sendall(frames.invoke_frame(meta, b'{"n": 1}'))
    status, headers, event = reply(waiting)
    assert status == 200 and event == b'{"n": 1}'
    assert headers["lambda-runtime-aws-request-id"] == "rid-1"
    assert headers["lambda-runtime-trace-id"] == "tr"
    # The wrong id, then the answer, then the answer again.
    assert reply(http(address, "POST", "/2018-06-01/runtime/invocation/x/response"))[0] == 400
    path = "/2018-06-01/runtime/invocation/rid-1/response"
    assert reply(http(address, "POST", path, b'{"r": 2}'))[0] == 202
    assert worker.read()[0::2] == (frames.RESULT, b'{"r": 2}')
    status, _, body = reply(http(address, "POST", path, b"{}"))
    assert status == 403 and json.loads(body)["errorType"] == "InvalidStateTransition"


def test_supervisor_answers_413_for_an_oversized_response(supervised: Any) -> None:
    worker, address, _supervisor, _result = supervised
    waiting = http(address, "GET", NEXT)
    assert worker.read()[0] == frames.READY
    worker.sock.sendall(frames.invoke_frame(["rid-2", "0", "arn", "", "", ""], b"{}"))
    reply(waiting)
    big = b"x" * (rapi.MAX_RESPONSE + 1)
    status, _, body = reply(
        http(address, "POST", "/2018-06-01/runtime/invocation/rid-2/response", big)
    )
    assert status == 413 and json.loads(body)["errorType"] == "RequestEntityTooLarge"
    kind, _log, payload = worker.read()
    assert kind == frames.ERROR
    assert json.loads(payload)["errorType"] == "Function.ResponseSizeTooLarge"


def test_a_bootstrap_killed_mid_invocation_is_reported_with_its_status(supervised: Any) -> None:
    worker, address, supervisor, result = supervised
    waiting = http(address, "GET", NEXT)
    assert worker.read()[0] == frames.READY
    worker.sock.sendall(frames.invoke_frame(["rid-3", "0", "arn", "", "", ""], b"{}"))
    reply(waiting)
    os.kill(supervisor.pid, signal.SIGKILL)
    kind, _log, body = worker.read()
    assert kind == frames.EXIT and json.loads(body) == {"exitCode": -signal.SIGKILL}
    wait_until(lambda: result)
    assert result == [1]


def test_a_missing_bootstrap_is_an_invalid_entrypoint(tmp_path: Path) -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert rapi.run(theirs.fileno(), theirs.fileno(), str(tmp_path), 0) == 1
        kind, _log, body = Worker(ours).read()
    assert kind == frames.INIT_ERROR
    assert json.loads(body)["errorType"] == "Runtime.InvalidEntrypoint"
    assert "Couldn't find valid bootstrap(s)" in json.loads(body)["errorMessage"]


def test_the_bootstraps_lines_are_sent_as_they_are_printed(supervised: Any) -> None:
    # No reply is due (the bootstrap never asks for an event): the line comes on its own.
    worker, _address, _supervisor, _result = supervised
    kind, log = worker.read_frame()
    assert (kind, log) == (frames.LOG, b"bootstrap says hello\n")
