"""The in-sandbox runtime, loaded the way the zygote loads it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import load_runtime_module

frames = load_runtime_module("_ember_frames", "frames.py")
pyloop = load_runtime_module("_ember_pyloop", "pyloop.py")


@pytest.fixture
def task_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("good_mod", "broken_mod", "syntax_mod"):
        sys.modules.pop(name, None)


def test_handler_lookup_errors_use_lambdas_types(task_root: Path) -> None:
    (task_root / "good_mod.py").write_text("def handler(e, c):\n    return e\n")
    (task_root / "broken_mod.py").write_text("raise RuntimeError('startup fails')\n")
    (task_root / "syntax_mod.py").write_text("def (:\n")
    assert pyloop.load_handler("good_mod.handler")({"a": 1}, None) == {"a": 1}
    cases = {
        "nodot": "Runtime.MalformedHandlerName",
        "missing_mod.handler": "Runtime.ImportModuleError",
        "good_mod.nope": "Runtime.HandlerNotFound",
        "broken_mod.handler": "RuntimeError",
        "syntax_mod.handler": "Runtime.UserCodeSyntaxError",
    }
    for handler, error_type in cases.items():
        with pytest.raises(pyloop.InitError) as caught:
            pyloop.load_handler(handler)
        assert caught.value.payload["errorType"] == error_type
        assert caught.value.payload["requestId"] == ""
    with pytest.raises(pyloop.InitError) as caught:
        pyloop.load_handler("missing_mod.handler")
    assert caught.value.payload["errorMessage"] == (
        "Unable to import module 'missing_mod': No module named 'missing_mod'"
    )


def test_context_attributes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "fn")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
    client_context = '{"custom": {"k": "v"}, "client": {"app_title": "t"}, "env": {"e": "1"}}'
    context = pyloop.LambdaContext("rid", 2**62, "arn:x", client_context, "")
    assert context.function_name == "fn"
    assert context.memory_limit_in_mb == "256"
    assert context.aws_request_id == "rid"
    assert context.client_context.custom == {"k": "v"}
    assert context.client_context.client.app_title == "t"
    assert context.identity.cognito_identity_id is None
    assert context.get_remaining_time_in_millis() > 0


def test_frames_roundtrip() -> None:
    frame = frames.invoke_frame(["rid", "1", "arn", "", "", "trace"], b'{"a":1}')
    length, kind = frames.HEADER.unpack_from(frame)
    assert kind == frames.INVOKE and length == len(frame) - frames.HEADER.size
    reply = frames.reply_frame(frames.RESULT, 7, b"log", b"body")
    _, kind = frames.HEADER.unpack_from(reply)
    rss, log_len = frames.REPLY.unpack_from(reply, frames.HEADER.size)
    assert (kind, rss, log_len) == (frames.RESULT, 7, 3)
    assert reply.endswith(b"logbody")


class _Recorder:
    """A socket stand-in: the frames sent, decoded as (kind, log, body)."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, bytes, bytes]] = []

    def sendall(self, data: bytes) -> None:
        length, kind = frames.HEADER.unpack_from(data)
        assert len(data) == frames.HEADER.size + length
        _rss, log_len = frames.REPLY.unpack_from(data, frames.HEADER.size)
        start = frames.HEADER.size + frames.REPLY.size
        self.frames.append((kind, data[start : start + log_len], data[start + log_len :]))


def test_each_printed_line_leaves_at_once_and_silence_sends_nothing() -> None:
    sock = _Recorder()
    capture = pyloop._Capture(pyloop._Outlet(sock))
    capture.outlet.reply(frames.RESULT, b"1")
    assert sock.frames == [(frames.RESULT, b"", b"1")]  # one frame for a silent call
    print("first", file=capture.stdout)
    capture.stderr.write("second\nunfinished")
    assert sock.frames[1:] == [
        (frames.LOG, b"first\n", b""),
        (frames.LOG, b"second\nunfinished", b""),
    ]
    capture.stdout.write("tail")
    capture.outlet.reply(frames.RESULT, b"2")
    assert sock.frames[-1] == (frames.RESULT, b"tail", b"2")


def test_a_long_unfinished_line_is_sent_in_bounded_frames() -> None:
    sock = _Recorder()
    capture = pyloop._Capture(pyloop._Outlet(sock))
    capture.stdout.write("z" * (3 * pyloop.MAX_LOG_FRAME))
    assert [len(log) for _, log, _ in sock.frames] == [pyloop.MAX_LOG_FRAME] * 3


def test_an_iterator_streams_a_frame_per_item_after_the_output_before_it() -> None:
    sock = _Recorder()
    capture = pyloop._Capture(pyloop._Outlet(sock))

    def handler() -> object:
        yield {"statusCode": 201}
        capture.stdout.write("before\n")
        yield "é"
        yield b""
        yield b"x" * (pyloop.MAX_LOG_FRAME + 1)

    pyloop._stream(capture.outlet, handler())
    assert [(kind, log, len(body)) for kind, log, body in sock.frames] == [
        (frames.PRELUDE, b"", len(b'{"statusCode": 201}')),
        (frames.LOG, b"before\n", 0),
        (frames.CHUNK, b"", 2),
        (frames.CHUNK, b"", pyloop.MAX_LOG_FRAME),
        (frames.CHUNK, b"", 1),
    ]
    with pytest.raises(TypeError, match="yields bytes or str, not int"):
        pyloop._stream(capture.outlet, iter(["a", 1]))
