"""The default backend: sandboxes forked from a zygote per interpreter.

Platform side of ``zygote_main.py``. One ``_Zygote`` per interpreter path
(python3.9 ... python3.14 share a zygote when they resolve to one binary).
A sandbox is a socket pair (stream, length-prefixed frames, see
``ember.runtime.frames``) plus a pipe for output written straight to fd 1/2.

Isolation in force with ``isolated=True`` (needs root): a cgroup per sandbox
(memory = MemorySize, pids.max, a CPU share proportional to memory), a
private mount namespace with the code read-only at /var/task and a
size-limited tmpfs at /tmp, rlimits. ``isolated=False`` is the development
fallback: the same forks, none of the confinement.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from ember.errors import SandboxUnavailable
from ember.runtime import frames
from ember.sandbox import cgroups, isolate, runtimes
from ember.sandbox.base import (
    MAX_STREAMED_RESPONSE,
    InitFailed,
    Outcome,
    OutputSink,
    ResponseSink,
    SandboxRequest,
    SandboxResult,
    SandboxSpec,
    SnapStartRefused,
)

log = logging.getLogger("ember.sandbox")

_HERE = Path(__file__).resolve().parent
_RUNTIME = _HERE.parent / "runtime"
# How long to wait for the zygote's report after a sandbox's socket closed.
_EXIT_REPORT_TIMEOUT = 5.0


class _Exit:
    """How a sandbox's leader process ended, as the zygote reported it."""

    __slots__ = ("exit_code", "oom")

    def __init__(self, exit_code: int | None, oom: bool) -> None:
        self.exit_code = exit_code  # negative: killed by that signal; None: unknown
        self.oom = oom


# The largest frame a sandbox may send: a maximal response plus a maximal
# captured log, with room for the headers. Anything larger (or a frame
# nobody asked for) means the function wrote to the runtime's socket itself.
MAX_FRAME = 6_291_556 + 4 * 1024 * 1024 + 64 * 1024
# One invocation's output kept in memory for its Tail and its result: the
# last this many bytes (what was printed is streamed to the log as it comes).
MAX_OUTPUT = 4 * 1024 * 1024
TRUNCATED = b"[ember: output truncated]\n"
_EXITING_ERROR = b'"errorType":"Runtime.UnhandledPromiseRejection"'
# A streamed response gathered into the body (no ``SandboxRequest.chunk``) is
# kept up to one byte past the buffered limit: enough for the caller to refuse it.
MAX_GATHERED = MAX_FRAME
_STREAM_TOO_LARGE = json.dumps(
    {
        "errorType": "Function.ResponseSizeTooLarge",
        "errorMessage": "Response payload size exceeded maximum allowed payload size "
        f"({MAX_STREAMED_RESPONSE} bytes).",
    }
).encode()
_VIOLATION = "Runtime broke the invocation protocol and was stopped"


class _Channel(asyncio.Protocol):
    """Frames from one sandbox; at most one reply is awaited at a time.

    LOG frames carry output the sandbox sent as it was printed (a line at a
    time): each goes to ``listener`` (the invocation's log stream) at once
    and is kept in ``output`` until the invocation ends, so it survives the
    sandbox being killed or crashing before its reply.
    """

    def __init__(self) -> None:
        # Kept: asyncio.get_running_loop() costs a getpid() system call each time.
        self.loop = asyncio.get_running_loop()
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, int, bytes, bytes]] | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.violated = False  # the sandbox sent something the protocol forbids
        self.output = bytearray()  # LOG frames since the last take_output
        self.truncated = False  # output lost its beginning to MAX_OUTPUT
        self.listener: Callable[[bytes], None] | None = None
        # CHUNK and PRELUDE frames of the invocation: to ``sink`` as they come,
        # else gathered in ``gathered``; ``streamed`` counts them against the limit.
        self.sink: ResponseSink | None = None
        self.gathered = bytearray()
        self.streamed = 0
        self.overflowed = False  # the function streamed past MAX_STREAMED_RESPONSE

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        header = frames.HEADER
        if not self.buffer and len(data) >= header.size:
            # The common case: exactly one whole reply in one read; no copying.
            length, kind = header.unpack_from(data)
            if len(data) == header.size + length and kind < frames.LOG:
                self._deliver_single(data, length, kind)
                return
        buffer = self.buffer
        buffer += data
        header = frames.HEADER
        reply = frames.REPLY
        while len(buffer) >= header.size:
            length, kind = header.unpack_from(buffer)
            if length > MAX_FRAME or length < reply.size:
                self._violate()
                return
            end = header.size + length
            if len(buffer) < end:
                return
            max_rss, log_len = reply.unpack_from(buffer, header.size)
            start = header.size + reply.size
            log_bytes = bytes(buffer[start : start + log_len])
            body = bytes(buffer[start + log_len : end])
            del buffer[:end]
            if kind == frames.LOG:
                self._on_output(log_bytes)
                continue
            if kind == frames.CHUNK or kind == frames.PRELUDE:
                if not self._on_stream(kind, body):
                    return
                continue
            waiter = self.waiter
            self.waiter = None
            if waiter is None or waiter.done():
                self._violate()
                return
            waiter.set_result((kind, max_rss, log_bytes, body))

    def _deliver_single(self, data: bytes, length: int, kind: int) -> None:
        waiter = self.waiter
        self.waiter = None
        if length > MAX_FRAME or length < frames.REPLY.size or waiter is None or waiter.done():
            self._violate()
            return
        max_rss, log_len = frames.REPLY.unpack_from(data, frames.HEADER.size)
        start = frames.HEADER.size + frames.REPLY.size
        waiter.set_result((kind, max_rss, data[start : start + log_len], data[start + log_len :]))

    def _on_output(self, data: bytes) -> None:
        listener = self.listener
        if listener is not None:
            listener(data)
        output = self.output
        output += data
        if len(output) > 2 * MAX_OUTPUT:
            del output[:-MAX_OUTPUT]
            self.truncated = True

    def _on_stream(self, kind: int, data: bytes) -> bool:
        """Forward or gather one piece of a streamed response; False: over the limit
        (the sandbox is cut off and its owner answers Function.ResponseSizeTooLarge)."""
        self.streamed += len(data)
        if self.streamed > MAX_STREAMED_RESPONSE:
            self.overflowed = True
            self._violate()
            return False
        sink = self.sink
        if sink is not None:
            if kind == frames.CHUNK:
                sink.chunk(data)
            else:
                sink.prelude(data)
            return True
        if kind == frames.PRELUDE:
            data += b"\0" * 8  # Lambda's delimiter between the prelude and the body
        if len(self.gathered) <= MAX_GATHERED:
            self.gathered += data[: MAX_GATHERED + 1 - len(self.gathered)]
        return True

    def take_gathered(self) -> bytes:
        """The streamed response gathered for a caller that did not take chunks."""
        data = bytes(self.gathered)
        self.gathered.clear()
        self.streamed = 0
        return data

    def take_output(self, last: bytes = b"") -> bytes:
        """The output received since the last call, then ``last`` (a reply's own)."""
        if last and self.listener is not None:
            self.listener(last)
        if not self.output:
            return last
        data = bytes(self.output) + last
        self.output.clear()
        if self.truncated or len(data) > MAX_OUTPUT:
            self.truncated = False
            data = TRUNCATED + data[-MAX_OUTPUT:]
        return data

    def _violate(self) -> None:
        """Stop listening to a sandbox that broke the protocol; its owner kills it."""
        self.violated = True
        self.buffer.clear()
        if self.transport is not None:
            self.transport.close()
        self.connection_lost(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        self.waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(EOFError())

    def expect(self) -> asyncio.Future[tuple[int, int, bytes, bytes]]:
        waiter = self.loop.create_future()
        if self.closed:
            waiter.set_exception(EOFError())
        else:
            self.waiter = waiter
        return waiter


# Run once at start-up inside a fully isolated sandbox: what it sees must
# match what ember promises, or the server refuses to start.
_PROBE = """
import os

INIT_PID_NAMESPACE = os.readlink("/proc/self/ns/pid")

def handler(event, context):
    status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines()
                  if ":\\t" in line)
    return {"uid": os.getuid(), "pid": os.getpid(), "seccomp": status.get("Seccomp"),
            "no_new_privs": status.get("NoNewPrivs"), "cap_eff": status.get("CapEff"),
            "cap_bnd": status.get("CapBnd"), "processes": sorted(
                name for name in os.listdir("/proc") if name.isdigit()),
            "restored": os.readlink("/proc/self/ns/pid") != INIT_PID_NAMESPACE}
"""
# Environment variables that differ between sandboxes of one version: not part
# of what makes a SnapStart template (a restored sandbox gets its own).
PER_SANDBOX_ENV = frozenset({"AWS_LAMBDA_LOG_STREAM_NAME"})
# Parts of a sandbox's spec the zygote must never read (``_environment_fd``), in
# the order their descriptors follow the message's own.
_UNREAD = ("env", "startup_env")
# What node and the dynamic loader read when they start (not later): a runtime
# started ahead of its function (the zygote's pool) must have been started with
# the function's. Sent unread too, in a memfd of their own: the zygote keys its
# pools by their digest ("startup").
STARTUP_PREFIXES = ("NODE_", "UV_", "LD_", "LC_", "OPENSSL_", "SSL_")
STARTUP_NAMES = frozenset({"LANG", "LANGUAGE", "TZ"})


def startup_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``env`` a runtime reads as it starts (``STARTUP_PREFIXES``)."""
    return {
        name: value
        for name, value in env.items()
        if name in STARTUP_NAMES or name.startswith(STARTUP_PREFIXES)
    }


# Runs zygote_main.py with its configuration read from stdin.
_BOOT = (
    "import json, runpy, sys; boot = json.loads(sys.stdin.readline()); "
    "sys.argv = [boot['main'], sys.argv[1], json.dumps(boot['config'])]; "
    "runpy.run_path(boot['main'], run_name='__main__')"
)


def _remove_stale_run_dirs() -> None:
    """/run/ember-<pid> directories of servers that no longer run."""
    for entry in Path("/run").glob("ember-*"):
        pid = entry.name.removeprefix("ember-")
        if pid.isdigit() and not cgroups.pid_alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _seccomp_module() -> str:
    """The pyseccomp module's file: the zygote loads it by path under any interpreter."""
    spec = importlib.util.find_spec("pyseccomp")
    if spec is None or not spec.origin:
        raise SandboxUnavailable("pyseccomp is not installed: reinstall ember")
    return spec.origin


def _template_key(spec: SandboxSpec, sandbox_spec: dict[str, Any]) -> str:
    """What makes one SnapStart template: everything its sandboxes are told but
    what differs between sandboxes of one version."""
    env = {k: v for k, v in sandbox_spec["env"].items() if k not in PER_SANDBOX_ENV}
    return json.dumps([spec.runtime, {**sandbox_spec, "env": env}], sort_keys=True)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _environment_fd(env: dict[str, str]) -> int:
    """A sealed memfd holding ``env`` as JSON, for the zygote to pass on unread.

    A function's environment is where its secrets live, and every sandbox is a
    copy of the zygote's memory, freed memory included: a value the zygote had
    parsed could be read back by a later sandbox of another function (it was:
    ``tests/security/test_zygote_memory.py``). So the zygote never reads one: it hands
    the descriptor to the new sandbox, or ``sendfile``s it into a CLAIM frame.
    """
    fd = os.memfd_create("ember-environment", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        data = json.dumps(env).encode()
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _refused(code: str, reason: str) -> dict[str, str]:
    return {"reasonCode": code, "reason": reason}


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def _crash_payload(request_id: str, exit_info: _Exit) -> bytes:
    """Lambda's error JSON for a runtime that died mid-invocation."""
    code = exit_info.exit_code
    if code is None:
        reason = "Runtime exited with error: unknown status"
    elif code == 0:
        reason = "Runtime exited without providing a reason"
    elif code > 0:
        reason = f"Runtime exited with error: exit status {code}"
    else:
        name = signal.strsignal(-code) or f"signal {-code}"
        reason = f"Runtime exited with error: signal: {name.lower()}"
    error_type = "Runtime.OutOfMemory" if exit_info.oom else "Runtime.ExitError"
    return json.dumps(
        {"errorType": error_type, "errorMessage": f"RequestId: {request_id} Error: {reason}"}
    ).encode()


def _timeout_payload(request_id: str, timeout: float) -> bytes:
    return json.dumps(
        {
            "errorType": "Sandbox.Timedout",
            "errorMessage": (
                f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds"
            ),
        }
    ).encode()


class _Owner(Protocol):
    def destroy(self, sandbox_id: str) -> None: ...


class ForkedSandbox:
    """A sandbox forked from a zygote (or run by gVisor): see ``ember.sandbox.base.Sandbox``."""

    def __init__(self, zygote: _Owner, spec: SandboxSpec, channel: _Channel) -> None:
        self.spec = spec
        self._zygote = zygote
        self._channel = channel
        self._exit: asyncio.Future[_Exit] = asyncio.get_running_loop().create_future()
        self._destroyed = False
        # (freezer file, frozen value, thawed value) once the zygote reported it.
        self.freezer: tuple[str, str, str] | None = None
        # A custom runtime's cgroup peak-memory file: its bootstrap is a child the
        # runtime API process cannot measure while it runs (RUSAGE_CHILDREN counts
        # only children reaped), so Max Memory Used is the whole sandbox's peak.
        self.memory_peak: str | None = None
        self.frozen = False
        self.pid = 0
        self.init_ms = 0.0
        self.restore_ms: float | None = None
        self.init_log = b""

    @property
    def sandbox_id(self) -> str:
        return self.spec.sandbox_id

    @property
    def alive(self) -> bool:
        return not self._destroyed and not self._channel.closed

    def _exited(self, info: _Exit) -> None:
        if not self._exit.done():
            self._exit.set_result(info)

    async def _exit_info(self) -> _Exit:
        try:
            return await asyncio.wait_for(asyncio.shield(self._exit), _EXIT_REPORT_TIMEOUT)
        except TimeoutError:
            return _Exit(None, False)

    def spawn_failed(self, reason: str) -> None:
        """The zygote could not fork this sandbox: fail the pending Init."""
        waiter = self._channel.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(SandboxUnavailable(f"could not start a sandbox: {reason}"))
        self.destroy()

    @staticmethod
    def _elapsed(started: float) -> float:
        return (time.perf_counter() - started) * 1000

    async def init(
        self, timeout: float, waiter: asyncio.Future[tuple[int, int, bytes, bytes]] | None = None
    ) -> None:
        """Wait for READY (or Init's error); ``waiter``: READY expected since the
        channel opened (a runtime that started ahead may have sent it already)."""
        started = time.perf_counter()
        waiter = waiter or self._channel.expect()
        timer = asyncio.get_running_loop().call_later(timeout, _expire, waiter)
        try:
            kind, _rss, log_bytes, body = await waiter
            log_bytes = self._channel.take_output(log_bytes)
        except EOFError:
            if self._channel.violated:
                self.destroy()
                raise InitFailed(self._lost_payload(""), b"", self._elapsed(started)) from None
            info = await self._exit_info()
            self.destroy()
            payload = json.loads(_crash_payload("", info))
            payload["errorMessage"] = payload["errorMessage"].replace("RequestId:  Error: ", "")
            raise InitFailed(
                json.dumps(payload).encode(),
                self._channel.take_output(),
                (time.perf_counter() - started) * 1000,
            ) from None
        except TimeoutError:
            self.destroy()
            message = f"Init timed out after {timeout:.2f} seconds"
            raise InitFailed(
                json.dumps({"errorType": "Sandbox.Timedout", "errorMessage": message}).encode(),
                self._channel.take_output(),
                timeout * 1000,
            ) from None
        finally:
            timer.cancel()
        if kind == frames.INIT_ERROR:
            self.destroy()
            raise InitFailed(body, log_bytes, (time.perf_counter() - started) * 1000)
        if kind == frames.EXIT:
            payload = json.loads(await self._runtime_exited("", body))
            payload["errorMessage"] = payload["errorMessage"].replace("RequestId:  Error: ", "")
            raise InitFailed(json.dumps(payload).encode(), log_bytes, self._elapsed(started))
        try:
            if kind != frames.READY:
                raise ValueError(f"frame kind {kind} during Init")
            reported = int(json.loads(body)["pid"])
            if not self.pid and reported > 1:  # inside a PID namespace it is 1
                self.pid = reported
        except (ValueError, KeyError, TypeError):
            # User code wrote to the runtime's socket while being imported.
            self.destroy()
            raise InitFailed(self._lost_payload(""), log_bytes, self._elapsed(started)) from None
        self.init_ms = (time.perf_counter() - started) * 1000
        self.init_log = log_bytes

    async def snapshot(self, timeout: float) -> dict[str, str]:
        """Ask a SnapStart template whose Init is done to run its before-snapshot hooks
        and park: {} once parked, else ``{"reasonCode", "reason"}``."""
        channel = self._channel
        waiter = channel.expect()
        assert channel.transport is not None
        channel.transport.write(frames.HEADER.pack(0, frames.SNAPSHOT))
        timer = channel.loop.call_later(timeout, _expire, waiter)
        try:
            kind, _rss, log_bytes, body = await waiter
            self.init_log += channel.take_output(log_bytes)
            answer = json.loads(body) if kind == frames.SNAPSHOT else None
        except TimeoutError:
            return _refused("SnapStartTimeout", f"before-snapshot hooks ran past {timeout:.0f} s")
        except EOFError:
            return _refused("SnapStartHookError", "the runtime exited while being snapshotted")
        except ValueError:
            answer = None
        finally:
            timer.cancel()
        if not isinstance(answer, dict):
            return _refused("SnapStartHookError", "the runtime answered the snapshot wrongly")
        return {str(k): str(v) for k, v in answer.items()}

    async def invoke(self, request: SandboxRequest) -> SandboxResult:
        channel = self._channel
        waiter = channel.expect()
        assert channel.transport is not None
        # A sandbox whose process ended: no write (uvloop raises on a closed transport);
        # the waiter gets its EOFError (now, or from connection_lost): the crash path.
        if not channel.closed and not channel.transport.is_closing():
            channel.transport.write(
                frames.invoke_frame(
                    [
                        request.request_id,
                        str(request.deadline_ms),
                        request.invoked_arn,
                        request.client_context,
                        request.identity,
                        request.trace_id,
                    ],
                    request.payload,
                )
            )
        timer = channel.loop.call_later(request.timeout_seconds, self._time_out, waiter)
        listener = channel.listener = request.output
        channel.sink = request.stream
        if channel.output and listener is not None:
            listener(bytes(channel.output))  # printed between invocations
        try:
            kind, max_rss, log_bytes, body = await waiter
            log_bytes = channel.take_output(log_bytes)
        except TimeoutError:
            return SandboxResult(
                Outcome.FUNCTION_ERROR,
                _timeout_payload(request.request_id, request.timeout_seconds),
                channel.take_output(),
                0,
                reusable=False,
            )
        except EOFError:
            payload = self._lost_payload(request.request_id)
            if channel.overflowed:
                payload = _STREAM_TOO_LARGE
            elif not channel.violated:
                info = await self._exit_info()
                payload = _crash_payload(request.request_id, info)
            self.destroy()
            return SandboxResult(
                Outcome.FUNCTION_ERROR,
                payload,
                channel.take_output(),
                0,
                reusable=False,
            )
        finally:
            timer.cancel()
            channel.listener = None
            channel.sink = None
        if kind == frames.EXIT:
            payload = await self._runtime_exited(request.request_id, body)
            return SandboxResult(
                Outcome.FUNCTION_ERROR, payload, log_bytes, max_rss, reusable=False
            )
        if kind == frames.STREAM_END:
            kind, body = frames.RESULT, channel.take_gathered()
        elif channel.streamed:
            channel.take_gathered()  # an error ended the stream: the error is the body
        outcome = Outcome.OK if kind == frames.RESULT else Outcome.FUNCTION_ERROR
        if self.memory_peak is not None:
            max_rss = max(max_rss, cgroups.read_peak_kb(self.memory_peak))
        # Lambda's Node runtime exits right after reporting an unhandled rejection:
        # the next call must not race that exit on this sandbox.
        reusable = kind == frames.RESULT or _EXITING_ERROR not in body
        return SandboxResult(outcome, body, log_bytes, max_rss, reusable=reusable)

    async def _runtime_exited(self, request_id: str, body: bytes) -> bytes:
        """Lambda's payload for a custom runtime whose process exited (an EXIT frame).

        The sandbox's init reported the runtime's exit status and is ending;
        the zygote's report of that tells whether the OOM killer fired.
        """
        try:
            exit_code: int | None = int(json.loads(body)["exitCode"])
        except (ValueError, KeyError, TypeError):
            exit_code = None
        info = await self._exit_info()
        self.destroy()
        return _crash_payload(request_id, _Exit(exit_code, info.oom))

    def freeze(self) -> None:
        """Stop every process of this idle sandbox until ``thaw`` (cgroup freezer)."""
        if self.freezer is not None and not self.frozen and self.alive:
            self._set_freezer(self.freezer[1])
            self.frozen = True

    def thaw(self) -> None:
        if self.frozen:
            self.frozen = False
            if self.freezer is not None:
                self._set_freezer(self.freezer[2])

    def _set_freezer(self, value: str) -> None:
        assert self.freezer is not None
        try:
            with open(self.freezer[0], "w") as handle:
                handle.write(value)
        except OSError:
            log.warning("cannot write %s to %s", value, self.freezer[0])

    def _lost_payload(self, request_id: str) -> bytes:
        message = f"RequestId: {request_id} Error: {_VIOLATION}" if request_id else _VIOLATION
        return json.dumps({"errorType": "Runtime.ExitError", "errorMessage": message}).encode()

    def _time_out(self, waiter: asyncio.Future[Any]) -> None:
        if not waiter.done():
            waiter.set_exception(TimeoutError())
        self.destroy()

    def destroy(self) -> None:
        if self._destroyed:
            return
        self._destroyed = True
        self._zygote.destroy(self.sandbox_id)
        if self._channel.transport is not None:
            self._channel.transport.close()


class _Zygote:
    """One zygote process and its control socket."""

    def __init__(self, interpreter: str, config: dict[str, Any], sink: OutputSink) -> None:
        self.interpreter = interpreter
        self._config = config
        self._sink = sink
        self._sandboxes: dict[str, ForkedSandbox] = {}
        self._log_fds: dict[str, int] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self._ctl: socket.socket | None = None
        self._hello: asyncio.Future[dict[str, Any]] | None = None
        self._spawning: dict[str, ForkedSandbox] = {}  # spawning, not yet READY
        # Pre-started runtimes being claimed: their socket and log pipe come back
        # with the SPAWNED report; an exit reported before they are in place waits.
        self._handing: dict[str, asyncio.Future[tuple[dict[str, Any], list[int]]]] = {}
        self._early_exits: dict[str, _Exit] = {}
        self._templating: dict[str, asyncio.Future[str]] = {}  # template id -> reason
        self.info: dict[str, Any] = {}

    @property
    def running(self) -> bool:
        return self._ctl is not None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._hello = loop.create_future()
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        # Sandboxes are forks of the zygote, so its command line is their
        # /proc/1/cmdline: keep paths and configuration out of it (stdin).
        self._process = subprocess.Popen(
            [self.interpreter, "-I", "-c", _BOOT, str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            env=env,
            stdin=subprocess.PIPE,
        )
        theirs.close()
        assert self._process.stdin is not None
        boot = json.dumps({"main": str(_HERE / "zygote_main.py"), "config": self._config})
        self._process.stdin.write(boot.encode() + b"\n")
        self._process.stdin.close()
        ours.setblocking(False)
        self._ctl = ours
        loop.add_reader(ours.fileno(), self._on_message)
        try:
            self.info = await asyncio.wait_for(self._hello, 60)
        except TimeoutError:
            await self.close()
            raise SandboxUnavailable(f"the zygote for {self.interpreter} did not start") from None

    def _on_message(self) -> None:
        assert self._ctl is not None
        try:
            data, fds, _flags, _address = socket.recv_fds(self._ctl, 1 << 20, 2)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        if not data:
            for fd in fds:
                os.close(fd)
            self._lost()
            return
        message = json.loads(data)
        kind = message["type"]
        if fds:
            handed = self._handing.get(message.get("id", ""))
            if kind != frames.SPAWNED or handed is None or handed.done():
                for fd in fds:
                    os.close(fd)
            else:
                handed.set_result((message, fds))
            return
        if kind == frames.HELLO and self._hello is not None and not self._hello.done():
            self._hello.set_result(message)
        elif kind == frames.TEMPLATE:
            checked = self._templating.get(message["id"])
            if checked is not None and not checked.done():
                checked.set_result(str(message["reason"]))
        elif kind == frames.EXITED and message["id"] in self._handing:
            self._early_exits[message["id"]] = _Exit(message["exitCode"], message["oom"])
        elif kind == frames.EXITED:
            self._on_exited(message["id"], _Exit(message["exitCode"], message["oom"]))
            if message.get("leftoverCgroups"):
                log.warning("cgroups left behind: %s", message["leftoverCgroups"])
        elif kind == frames.SPAWNED:
            sandbox = self._sandboxes.get(message["id"])
            if sandbox is not None:
                sandbox.pid = int(message["pid"])
                sandbox.freezer = self._freezer(message.get("cgroups") or [])
                if runtimes.serves_runtime_api(sandbox.spec.runtime):
                    sandbox.memory_peak = self._memory_peak(message.get("cgroups") or [])
        elif kind == frames.SPAWN_FAILED and message["id"] in self._handing:
            failed = self._handing[message["id"]]
            if not failed.done():
                failed.set_exception(
                    SandboxUnavailable(f"could not start a sandbox: {message['error']}")
                )
        elif kind == frames.SPAWN_FAILED:
            sandbox = self._spawning.pop(message["id"], None)
            if sandbox is not None:
                sandbox.spawn_failed(message["error"])

    def _freezer(self, paths: list[str]) -> tuple[str, str, str] | None:
        layout = self._config.get("cgroups")
        if not layout:
            return None
        return cgroups.freezer_file(cgroups.CgroupLayout(layout["version"], layout["dirs"]), paths)

    def _memory_peak(self, paths: list[str]) -> str | None:
        layout = self._config.get("cgroups")
        if not layout:
            return None
        return cgroups.memory_peak_file(
            cgroups.CgroupLayout(layout["version"], layout["dirs"]), paths
        )

    def _on_exited(self, sandbox_id: str, info: _Exit) -> None:
        sandbox = self._sandboxes.pop(sandbox_id, None)
        if sandbox is not None:
            sandbox._exited(info)
        fd = self._log_fds.pop(sandbox_id, None)
        if fd is not None:
            self._drain_output(sandbox_id, fd)
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)

    def _drain_output(self, sandbox_id: str, fd: int) -> None:
        chunks = []
        ended = False
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            ended = True  # every writer is gone: the sandbox has exited
        if chunks:
            self._sink(sandbox_id, b"".join(chunks))
        if ended:
            # A pipe at EOF stays readable: watched until the zygote's exit report
            # (cgroups removed, ms later) it would call this on every loop turn.
            asyncio.get_running_loop().remove_reader(fd)

    def _lost(self) -> None:
        """The zygote died: every sandbox it held is gone with it."""
        if self._ctl is None:
            return
        log.error("the zygote for %s exited", self.interpreter)
        asyncio.get_running_loop().remove_reader(self._ctl.fileno())
        self._ctl.close()
        self._ctl = None
        for sandbox_id in list(self._sandboxes):
            self._on_exited(sandbox_id, _Exit(None, False))
        for sandbox in self._spawning.values():
            sandbox.spawn_failed("the zygote exited")
        for handed in self._handing.values():
            if not handed.done():
                handed.set_exception(
                    SandboxUnavailable("could not start a sandbox: the zygote exited")
                )
        if self._hello is not None and not self._hello.done():
            self._hello.set_exception(SandboxUnavailable("the zygote exited during start-up"))

    def _send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        """Send ``message`` (and ``fds``) to the zygote; a sandbox's environment, and
        (Node) the part its runtime reads at start, go as the last descriptors
        instead (``_environment_fd``)."""
        if self._ctl is None:
            raise SandboxUnavailable(f"the zygote for {self.interpreter} is not running")
        spec = message.get("spec")
        unread: list[int] = []
        try:
            if spec is not None:
                for name in _UNREAD:
                    if name in spec:
                        unread.append(_environment_fd(spec[name]))
                spec = {name: value for name, value in spec.items() if name not in _UNREAD}
                message, fds = {**message, "spec": spec}, [*(fds or []), *unread]
            self._send_now(json.dumps(message).encode(), fds)
        finally:
            for fd in unread:
                os.close(fd)

    def _send_now(self, data: bytes, fds: list[int] | None) -> None:
        # A control message is a few KiB and the zygote drains its socket
        # continuously, so a full buffer is a transient condition.
        assert self._ctl is not None
        for _ in range(1000):
            try:
                if fds:
                    socket.send_fds(self._ctl, [data], fds)
                else:
                    self._ctl.send(data)
                return
            except BlockingIOError:
                time.sleep(0.001)
        raise SandboxUnavailable("the zygote's control socket is stuck")

    async def spawn(
        self, spec: SandboxSpec, sandbox_spec: dict[str, Any], init_timeout: float
    ) -> ForkedSandbox:
        if sandbox_spec.get("exec"):
            return await self._spawn_started(spec, sandbox_spec, init_timeout)
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours.setblocking(False)
        log_r, log_w = os.pipe()
        os.set_blocking(log_r, False)
        try:
            _transport, channel = await loop.create_unix_connection(_Channel, sock=ours)
            sandbox = ForkedSandbox(self, spec, channel)
            self._sandboxes[spec.sandbox_id] = sandbox
            self._log_fds[spec.sandbox_id] = log_r
            loop.add_reader(log_r, self._drain_output, spec.sandbox_id, log_r)
            self._spawning[spec.sandbox_id] = sandbox
            self._send(
                {"type": frames.SPAWN, "id": spec.sandbox_id, "spec": sandbox_spec},
                [theirs.fileno(), log_w],
            )
        except BaseException:
            self._sandboxes.pop(spec.sandbox_id, None)
            if self._log_fds.pop(spec.sandbox_id, None) is not None:
                loop.remove_reader(log_r)
            os.close(log_r)
            raise
        finally:
            theirs.close()
            os.close(log_w)
        try:
            await sandbox.init(init_timeout)  # raises InitFailed
        finally:
            self._spawning.pop(spec.sandbox_id, None)
        return sandbox

    async def check_template(self, template_id: str, timeout: float) -> str:
        """The zygote's own check that a template is parked and may be forked: why
        not, or ""."""
        checked: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._templating[template_id] = checked
        try:
            self._send({"type": frames.TEMPLATE, "id": template_id})
            return await asyncio.wait_for(checked, timeout)
        except TimeoutError:
            return "the zygote did not answer"
        finally:
            del self._templating[template_id]

    async def restore(
        self,
        template_id: str,
        spec: SandboxSpec,
        sandbox_spec: dict[str, Any],
        init_timeout: float,
    ) -> ForkedSandbox:
        """A new sandbox forked from a parked template (no Init: it runs the
        after-restore hooks); ``restore_ms`` is from the request to READY."""
        started = time.perf_counter()
        message = {
            "type": frames.RESTORE,
            "id": spec.sandbox_id,
            "template": template_id,
            "spec": sandbox_spec,
        }
        sandbox = await self._spawn_started(spec, sandbox_spec, init_timeout, message)
        sandbox.restore_ms = sandbox.init_ms = (time.perf_counter() - started) * 1000
        return sandbox

    async def _spawn_started(
        self,
        spec: SandboxSpec,
        sandbox_spec: dict[str, Any],
        init_timeout: float,
        message: dict[str, Any] | None = None,
    ) -> ForkedSandbox:
        """A sandbox from the zygote's pool of pre-started runtimes (Node), or forked
        from a SnapStart template (``message``): the zygote made its socket and log
        pipe, and hands them over with SPAWNED."""
        loop = asyncio.get_running_loop()
        sandbox_id = spec.sandbox_id
        handed: asyncio.Future[tuple[dict[str, Any], list[int]]] = loop.create_future()
        self._handing[sandbox_id] = handed
        try:
            self._send(message or {"type": frames.SPAWN, "id": sandbox_id, "spec": sandbox_spec})
            timer = loop.call_later(init_timeout, _expire, handed)
            try:
                reply, fds = await handed
            except TimeoutError:
                self.destroy(sandbox_id)
                raise SandboxUnavailable(
                    "could not start a sandbox: the zygote did not answer"
                ) from None
            finally:
                timer.cancel()
            sock = socket.socket(fileno=fds[0])
            log_r = fds[1]
            sock.setblocking(False)
            os.set_blocking(log_r, False)
            ready: list[asyncio.Future[tuple[int, int, bytes, bytes]]] = []

            def expecting() -> _Channel:
                channel = _Channel()
                ready.append(channel.expect())
                return channel

            try:
                _transport, channel = await loop.create_unix_connection(expecting, sock=sock)
            except BaseException:
                sock.close()
                os.close(log_r)
                self.destroy(sandbox_id)
                raise
            sandbox = ForkedSandbox(self, spec, channel)
            sandbox.pid = int(reply["pid"])
            sandbox.freezer = self._freezer(reply.get("cgroups") or [])
            self._sandboxes[sandbox_id] = sandbox
            self._log_fds[sandbox_id] = log_r
            loop.add_reader(log_r, self._drain_output, sandbox_id, log_r)
        finally:
            del self._handing[sandbox_id]
            early = self._early_exits.pop(sandbox_id, None)
        if early is not None:
            self._on_exited(sandbox_id, early)
        self._spawning[sandbox_id] = sandbox
        try:
            await sandbox.init(init_timeout, ready[0])  # raises InitFailed
        finally:
            self._spawning.pop(sandbox_id, None)
        return sandbox

    def destroy(self, sandbox_id: str) -> None:
        with contextlib.suppress(SandboxUnavailable):
            self._send({"type": frames.DESTROY, "id": sandbox_id})

    async def close(self) -> None:
        """Close the control socket: the zygote kills and reaps everything, then exits."""
        if self._ctl is not None:
            asyncio.get_running_loop().remove_reader(self._ctl.fileno())
            self._ctl.close()
            self._ctl = None
        if self._process is not None:
            try:
                await asyncio.to_thread(self._process.wait, 10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                await asyncio.to_thread(self._process.wait)
        for sandbox_id in list(self._sandboxes):
            self._on_exited(sandbox_id, _Exit(None, False))


def _check_probe(result: SandboxResult, restored: bool) -> None:
    """Refuse to go on unless the probe saw every layer of isolation in force."""
    seen = json.loads(result.body) if result.outcome is Outcome.OK else {}
    zero = "0000000000000000"
    expected = {
        "pid": 1,
        "seccomp": "2",
        "no_new_privs": "1",
        "cap_eff": zero,
        "cap_bnd": zero,
        "processes": ["1"],
        "restored": restored,
    }
    wrong = {k: seen.get(k) for k, v in expected.items() if seen.get(k) != v}
    if not seen or seen.get("uid") == 0 or wrong:
        what = "a sandbox forked from a SnapStart template" if restored else "a sandbox"
        raise SandboxUnavailable(
            f"full isolation failed its start-up check in {what}: {wrong or result.body.decode()}"
        )


TEMPLATE_IDLE = 900.0  # seconds without a restore before a template may be let go


class _Template:
    """A parked SnapStart template and the sandboxes forked from it."""

    def __init__(self, zygote: _Zygote, sandbox: ForkedSandbox, code_dir: str) -> None:
        self.zygote = zygote
        self.sandbox = sandbox
        self.code_dir = code_dir
        self.children: list[ForkedSandbox] = []
        self.used = time.monotonic()


class ZygoteBackend:
    """See ``ember.sandbox.base.SandboxBackend``."""

    def __init__(
        self, *, isolated: bool, sink: OutputSink, init_timeout: float = 10.0, pool: int = 2
    ) -> None:
        self._init_timeout = init_timeout
        self._pool = pool
        self.name = "zygote" if isolated else "process"
        self.isolated = isolated
        self._sink = sink
        self._zygotes: dict[str, _Zygote] = {}
        self._interpreters: dict[str, str] = {}  # runtime -> interpreter path
        # What sandboxes see as /etc: a copy of the few files they need.
        self.etc_dir = f"/run/ember-{os.getpid()}/etc"
        self._cgroups: cgroups.CgroupLayout | None = None
        self._lock = asyncio.Lock()
        # SnapStart templates, by what their sandboxes run (one per version).
        self._templates: dict[str, asyncio.Future[_Template]] = {}
        # Templates a restore failed from, replaced, kept until their forks end.
        self._retired: list[_Template] = []
        self._checked: set[str] = set()  # interpreters whose zygote passed the probe

    async def start(self) -> None:
        if not self.isolated:
            log.warning(
                "sandbox backend 'process': functions run UNISOLATED (no cgroups, "
                "no private mounts); use it for development only"
            )
            return
        problems = []
        if os.geteuid() != 0:
            problems.append("it needs root (cgroups and mount namespaces)")
        layout = cgroups.detect()
        if layout is None:
            problems.append("no cgroup hierarchy with the memory, pids and cpu controllers")
        if problems:
            raise SandboxUnavailable(
                "the isolated sandbox backend cannot run here: "
                + "; ".join(problems)
                + ". Start with --sandbox process to run functions unisolated (development only)."
            )
        assert layout is not None
        for path in cgroups.remove_stale(layout):
            log.info("removed a stale cgroup left by a previous run: %s", path)
        try:
            self._cgroups = cgroups.create_parent(layout)
        except OSError as exc:
            raise SandboxUnavailable(f"cannot create sandbox cgroups: {exc}") from exc
        await asyncio.to_thread(_remove_stale_run_dirs)
        await asyncio.to_thread(isolate.snapshot_etc, self.etc_dir)

    def cgroup_config(self) -> dict[str, Any]:
        """The cgroup layout sandboxes are created under ({} when there is none)."""
        return self._cgroups.as_config() if self._cgroups else {}

    async def runtime_of(self, runtime: str) -> tuple[str, list[str]]:
        """(interpreter, directories it needs) for ``runtime``, as its zygote found them."""
        zygote = await self._zygote_for(runtime)
        return zygote.interpreter, list(zygote.info.get("runtimePaths", []))

    async def prestart(self, runtime: str) -> None:
        """Start ``runtime``'s zygote now, so the first cold start does not pay for it.

        With full isolation, also run one probe sandbox and check from inside
        that every layer is in force; refuse to go on if one is not.
        """
        zygote = await self._zygote_for(runtime)
        # Node and custom runtimes run in the server's own interpreter's zygote,
        # whose probe ran when the server started; each other interpreter's runs once.
        python = runtime in runtimes.PYTHON_RUNTIMES
        if self.isolated and python and zygote.interpreter not in self._checked:
            await self._self_check(runtime)
            self._checked.add(zygote.interpreter)

    async def _self_check(self, runtime: str) -> None:
        code = Path(tempfile.mkdtemp(prefix="ember-probe-"))
        try:
            (code / "probe.py").write_text(_PROBE)
            code.chmod(0o755)
            (code / "probe.py").chmod(0o444)
            spec = SandboxSpec(
                "probe" + os.urandom(6).hex(),
                runtime,
                "probe.handler",
                str(code),
                {"PATH": "/usr/bin:/bin"},
                128,
                16,
                16,
                64,
            )
            try:
                sandbox = await self.create(spec)
            except InitFailed as failure:
                raise SandboxUnavailable(
                    "full isolation failed its start-up check: " + failure.payload.decode()
                ) from None
            request = SandboxRequest(
                "probe", int(time.time() * 1000) + 10_000, "", "", "", "", b"{}", 10.0
            )
            result = await sandbox.invoke(request)
            sandbox.destroy()
            _check_probe(result, restored=False)
            zygote = await self._zygote_for(runtime)
            if zygote.info.get("snapStart"):
                await self._self_check_snap_start(zygote, spec, request)
        finally:
            shutil.rmtree(code, ignore_errors=True)

    async def _self_check_snap_start(
        self, zygote: _Zygote, spec: SandboxSpec, request: SandboxRequest
    ) -> None:
        """The probe again, from a sandbox forked from a SnapStart template. Where
        forking a template fails, SnapStart is off on this host (its versions run
        Init, their state says why); where it works with less isolation than a
        sandbox made whole, the server refuses to start."""
        spec = dataclasses.replace(spec, sandbox_id=spec.sandbox_id + "r", snap_start=True)
        sandbox_spec = await self._sandbox_spec(spec)
        try:
            template = await self._template(spec, sandbox_spec)
            sandbox = await zygote.restore(
                template.sandbox.sandbox_id, spec, sandbox_spec, self._init_timeout
            )
        except (SnapStartRefused, SandboxUnavailable, InitFailed) as exc:
            log.warning("SnapStart is off on this host: its templates cannot be forked: %s", exc)
            zygote.info["snapStart"] = False
            return
        finally:
            made = self._templates.pop(_template_key(spec, sandbox_spec), None)
        try:
            result = await sandbox.invoke(request)
        finally:
            sandbox.destroy()
            if made is not None and made.done() and not made.exception():
                made.result().sandbox.destroy()
        _check_probe(result, restored=True)

    def _config(self) -> dict[str, Any]:
        return {
            "frames": str(_RUNTIME / "frames.py"),
            "pyloop": str(_RUNTIME / "pyloop.py"),
            "rapi": str(_RUNTIME / "rapi.py"),
            "confine": str(_HERE / "confine.py"),
            "cgroups": self._cgroups.as_config() if self._cgroups else {},
            "isolated": self.isolated,
            "isolate": str(_HERE / "isolate.py"),
            "restore": str(_HERE / "restore.py"),
            "hooks": str(_RUNTIME / "snapshot_restore_py.py"),
            "seccomp": _seccomp_module(),
            # Never mounted into a sandbox: ember's own code.
            "hidden": [str(_HERE.parent.parent)],
            "uid_base": 100000,
            "etc": self.etc_dir,
            "pool": self._pool,
            "runtime_dirs": _node_dirs(),
            # Installed runtimes, read-only at isolate.RUNTIMES_MOUNT in every sandbox.
            "runtimes_dir": str(runtimes.runtimes_dir()),
        }

    async def _zygote_for(self, runtime: str) -> _Zygote:
        if runtime not in self._interpreters:
            path = await asyncio.to_thread(runtimes.interpreter_for, runtime)
            if path is None:  # created before the interpreter was removed: never substituted
                raise SandboxUnavailable(f"this host has no interpreter for {runtime}")
            self._interpreters[runtime] = path
        interpreter = self._interpreters[runtime]
        zygote = self._zygotes.get(interpreter)
        if zygote is not None and zygote.running:
            return zygote
        async with self._lock:
            zygote = self._zygotes.get(interpreter)
            if zygote is None or not zygote.running:
                zygote = _Zygote(interpreter, self._config(), self._sink)
                await zygote.start()
                self._zygotes[interpreter] = zygote
                log.info(
                    "zygote for %s started (pid %s, Python %s)",
                    runtime,
                    zygote.info.get("pid"),
                    zygote.info.get("python"),
                )
        return zygote

    async def create(self, spec: SandboxSpec) -> ForkedSandbox:
        sandbox_spec = await self._sandbox_spec(spec)
        if spec.snap_start:
            return await self._restore(spec, sandbox_spec)
        return await self._spawn(spec, sandbox_spec)

    async def _spawn(self, spec: SandboxSpec, sandbox_spec: dict[str, Any]) -> ForkedSandbox:
        zygote = await self._zygote_for(spec.runtime)
        return await zygote.spawn(spec, sandbox_spec, self._init_timeout)

    async def _sandbox_spec(self, spec: SandboxSpec) -> dict[str, Any]:
        """What the zygote is told about a new sandbox of ``spec``."""
        sandbox_spec = {
            "handler": spec.handler,
            "code_dir": spec.code_dir,
            "env": dict(spec.env),
            "tmp_mb": spec.tmp_mb,
            "limits": {
                "memory": spec.memory_mb * 1024 * 1024,
                "pids": spec.pids_max,
                # Lambda gives a full vCPU at 1769 MB; shares are relative weights.
                "cpu_shares": max(2, spec.memory_mb * 1024 // 1769),
            },
            "rlimits": {"nofile": spec.files_max, "fsize": spec.tmp_mb * 1024 * 1024},
            "egress": spec.egress,
            # provided*: the sandbox serves the Runtime API to the package's bootstrap.
            "custom": spec.runtime in runtimes.PROVIDED_RUNTIMES,
            # Only compared, so the zygote (whose memory every sandbox copies) is
            # told no function's name: a digest of it.
            "reuse": _digest(spec.reuse_key) if spec.reuse_key else "",
        }
        if spec.runtime in runtimes.NODE_RUNTIMES:
            # nodejs*: the sandbox execs node, which speaks the frames on the socket.
            command = await asyncio.to_thread(_node_command, spec.runtime, self.isolated)
            sandbox_spec["exec"] = [*command, "--frames"]
            startup = startup_environment(spec.env)
            sandbox_spec["startup_env"] = startup  # sent unread (_send), named by:
            sandbox_spec["startup"] = _digest(json.dumps(startup, sort_keys=True))
        if spec.opt_dir is not None:
            sandbox_spec.update(layer_settings(spec, self.isolated))
        return sandbox_spec

    async def prepare_snap_start(self, spec: SandboxSpec) -> None:
        await self._template(spec, await self._sandbox_spec(spec))

    async def _template(self, spec: SandboxSpec, sandbox_spec: dict[str, Any]) -> _Template:
        """The parked template of ``spec``'s version, made on first use and shared by
        every concurrent caller (raises SnapStartRefused, InitFailed)."""
        if not self.isolated:
            raise SnapStartRefused(
                "SnapStartNotSupported", "SnapStart needs the isolated sandbox backend"
            )
        if spec.runtime not in runtimes.PYTHON_RUNTIMES:
            raise SnapStartRefused(
                "SnapStartNotSupported", f"SnapStart runs Python functions, not {spec.runtime}"
            )
        self._let_go_of_templates()
        key = _template_key(spec, sandbox_spec)
        made = self._templates.get(key)
        if (
            made is not None
            and made.done()
            and not made.exception()
            and not made.result().sandbox.alive  # killed or crashed: made again
        ):
            made = None
        if made is None:
            made = asyncio.ensure_future(self._make_template(spec, sandbox_spec))
            self._templates[key] = made
        try:
            return await asyncio.shield(made)
        except SnapStartRefused:
            raise
        except BaseException:
            # Init failed, or the platform could not start it: tried again next time.
            if self._templates.get(key) is made:
                del self._templates[key]
            raise

    async def _make_template(self, spec: SandboxSpec, sandbox_spec: dict[str, Any]) -> _Template:
        zygote = await self._zygote_for(spec.runtime)
        if not zygote.info.get("snapStart"):
            raise SnapStartRefused(
                "SnapStartNotSupported", "this host cannot fork SnapStart templates (x86_64 only)"
            )
        template_spec = dataclasses.replace(spec, sandbox_id="snap" + os.urandom(6).hex())
        template = await zygote.spawn(template_spec, sandbox_spec, self._init_timeout)
        answer = await template.snapshot(self._init_timeout)
        if not answer:
            reason = await zygote.check_template(template.sandbox_id, self._init_timeout)
            if reason:
                answer = _refused("SnapStartNotReady", reason)
        if answer:
            template.destroy()
            raise SnapStartRefused(answer.get("reasonCode", "SnapStartNotReady"), answer["reason"])
        log.info("SnapStart template %s ready (Init %.1f ms)", spec.sandbox_id, template.init_ms)
        return _Template(zygote, template, spec.code_dir)

    def _let_go_of_templates(self) -> None:
        """Destroy the templates of versions gone (their code was removed) or unused
        for TEMPLATE_IDLE seconds, once no sandbox forked from them lives: their PID
        namespace holds their sandboxes', so those would die with them."""
        now = time.monotonic()
        for old in list(self._retired):
            old.children = [child for child in old.children if child.alive]
            if not old.children:
                old.sandbox.destroy()
                self._retired.remove(old)
        for key, made in list(self._templates.items()):
            if not made.done() or made.exception():
                continue
            template = made.result()
            template.children = [child for child in template.children if child.alive]
            gone = not os.path.isdir(template.code_dir) or not template.sandbox.alive
            if not template.children and (gone or now - template.used > TEMPLATE_IDLE):
                template.sandbox.destroy()
                del self._templates[key]

    async def _restore(self, spec: SandboxSpec, sandbox_spec: dict[str, Any]) -> ForkedSandbox:
        """A sandbox of a SnapStart version, from its template; refused or failing
        templates give an ordinary sandbox (Init runs), never an error."""
        try:
            template = await self._template(spec, sandbox_spec)
        except SnapStartRefused:
            return await self._spawn(spec, sandbox_spec)
        template.used = time.monotonic()
        try:
            sandbox = await template.zygote.restore(
                template.sandbox.sandbox_id, spec, sandbox_spec, self._init_timeout
            )
        except SandboxUnavailable as exc:
            log.warning("SnapStart restore failed (%s): the template is made again", exc)
            self._retire(_template_key(spec, sandbox_spec), template)
            return await self._spawn(spec, sandbox_spec)
        template.children.append(sandbox)
        return sandbox

    def _retire(self, key: str, template: _Template) -> None:
        """Stop restoring from ``template`` (the next restore makes a new one), without
        killing it while sandboxes forked from it run calls: its PID namespace holds
        theirs. ``_let_go_of_templates`` destroys it once they have ended."""
        made = self._templates.get(key)
        if made is not None and made.done() and not made.exception() and made.result() is template:
            del self._templates[key]
        if template not in self._retired:
            self._retired.append(template)
        self._let_go_of_templates()

    async def close(self) -> None:
        for zygote in list(self._zygotes.values()):
            await zygote.close()
        self._zygotes.clear()
        self._templates.clear()
        self._retired.clear()
        if self._cgroups is not None:
            await asyncio.to_thread(cgroups.remove_parent, self._cgroups)
            self._cgroups = None
        await asyncio.to_thread(shutil.rmtree, os.path.dirname(self.etc_dir), True)

    def describe(self) -> dict[str, object]:
        """What isolation is in force, for /health and the start-up log."""
        zygotes = {z.interpreter: z.info.get("python") for z in self._zygotes.values()}
        if not self.isolated:
            return {
                "backend": self.name,
                "isolated": False,
                "warning": "functions run UNISOLATED (--sandbox process): development only",
                "zygotes": zygotes,
            }
        userns = all(z.info.get("userns") for z in self._zygotes.values())
        return {
            "backend": self.name,
            "isolated": True,
            "namespaces": ["pid", "mount", "network", "ipc", "uts"] + (["user"] if userns else []),
            "root": "minimal tmpfs root via pivot_root; code read-only at /var/task",
            "privileges": "unprivileged uid, no capabilities, no_new_privs",
            "seccomp": True,
            "network": "loopback only",
            "cgroups": {
                "version": self._cgroups.version if self._cgroups else None,
                "controllers": sorted(self._cgroups.dirs) if self._cgroups else [],
            },
            "zygotes": zygotes,
        }


def _node_dirs() -> list[str]:
    """The host's own node's prefix, when a sandbox needs it bound (outside /usr)."""
    host = shutil.which("node")
    if host is None:
        return []
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(host)))
    return [] if prefix == "/usr" else [prefix]


def _node_command(runtime: str, isolated: bool) -> list[str]:
    """The node binary and ember's runtime script, as the sandbox sees them.

    The script is copied into the runtimes directory (ember's own tree is never
    mounted into a sandbox), which an isolated sandbox sees at /var/runtime.
    """
    binary = runtimes.node_binary(runtime)
    if binary is None:  # removed since the function was created: never substituted
        raise SandboxUnavailable(f"this host has no node for {runtime}")
    root = runtimes.runtimes_dir()
    script = _copy_node_runtime(root / "_ember") / "index.mjs"
    command = [os.path.realpath(binary), str(script)]
    if isolated:
        inside = isolate.RUNTIMES_MOUNT
        command = [
            inside + path[len(str(root)) :] if path.startswith(str(root) + "/") else path
            for path in command
        ]
    return command


_COPIED: set[Path] = set()  # runtime directories this process has filled


def _copy_node_runtime(target: Path) -> Path:
    """ember's Node runtime files in ``target`` (once per process: they only change
    with ember, which restarts the server)."""
    if target in _COPIED and (target / "index.mjs").exists():
        return target
    for source in sorted(runtimes.NODE_RUNTIME_DIR.iterdir()):
        copy = target / source.name
        data = source.read_bytes()
        if copy.exists() and copy.read_bytes() == data:
            continue
        target.mkdir(parents=True, exist_ok=True)
        partial = copy.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(data)
        partial.chmod(0o644)
        os.replace(partial, copy)
    _COPIED.add(target)
    return target


def layer_settings(spec: SandboxSpec, isolated: bool) -> dict[str, object]:
    """Where a sandbox finds its layers: bound at /opt when isolated, else the host path.

    Lambda puts ``/opt/python/lib/pythonX.Y/site-packages`` and ``/opt/python``
    on sys.path, after the task root; without isolation the host directory
    serves, and PYTHONPATH carries it to the function's own subprocesses.
    """
    assert spec.opt_dir is not None
    python = ("/opt" if isolated else spec.opt_dir) + "/python"
    paths = [f"{python}/lib/{spec.runtime}/site-packages", python]
    settings: dict[str, object] = {"opt_dir": spec.opt_dir, "extra_path": paths}
    if not isolated:
        settings["env"] = {**spec.env, "PYTHONPATH": ":".join(paths)}
    return settings
