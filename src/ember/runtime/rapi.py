"""The Lambda Runtime API for custom runtimes, served inside the sandbox.

For the runtimes ``provided``, ``provided.al2`` and ``provided.al2023`` the
forked sandbox process becomes the sandbox's init, as Lambda's init does
inside its microVM: it serves the Runtime API over HTTP on loopback
(``127.0.0.1:9001`` in the sandbox's own network namespace; a free port with
``--sandbox process``), starts the package's ``bootstrap`` as its child with
``AWS_LAMBDA_RUNTIME_API`` pointing there, and relays between the worker's
frames (``frames.py``) and the runtime's HTTP calls:

- the bootstrap's first ``GET /invocation/next`` ends Init: ``READY``;
  ``POST /init/error`` ends it with the runtime's payload: ``INIT_ERROR``;
- an ``INVOKE`` frame answers the pending ``/next`` long poll;
- ``POST /invocation/{id}/response`` or ``/error`` becomes ``RESULT`` or
  ``ERROR``; a response posted with ``Lambda-Runtime-Function-Response-Mode:
  streaming`` goes out as it arrives, a ``CHUNK`` per read (its HTTP prelude,
  if any, a ``PRELUDE``), then ``STREAM_END``, or ``ERROR`` from its error
  trailers;
- a bootstrap that exits becomes ``EXIT`` (its exit status) and the sandbox
  ends.

The bootstrap's stdout and stderr are read by this process and sent to the
worker as they come, a LOG frame per batch of complete lines (an unfinished
line rides with the next reply), so they reach the invocation's log as a
Python handler's output does, and survive the runtime being killed. One
thread, one ``selectors`` loop: the process is PID 1 of its namespace, forks
the bootstrap, and reaps orphans.

Imported by the zygote as ``_ember_rapi`` under any python3.9+ interpreter:
standard library only, Python 3.9 syntax.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ctypes
import errno
import json
import os
import resource
import select
import selectors
import signal
import socket
import time
from typing import Callable, Dict, List, Optional, Tuple

import _ember_frames as frames  # type: ignore[import-not-found]

PORT = 9001  # where Lambda serves it
PREFIX = "/2018-06-01/runtime/"
BOOTSTRAPS = ("/var/task/bootstrap", "/opt/bootstrap")
# Lambda's limit on a response: 6 MB plus 100 bytes.
MAX_RESPONSE = 6 * 1024 * 1024 + 100
MAX_HEAD = 64 * 1024
# A streaming response of this content type starts with an HTTP prelude (JSON)
# ended by 8 NUL bytes (Node's HttpResponseStream.from writes the same).
HTTP_INTEGRATION = "application/vnd.awslambda.http-integration-response"
PRELUDE_END = b"\0" * 8
MAX_LOG = 4 * 1024 * 1024  # an unfinished line kept for one reply
# Complete lines are sent at once; an unfinished one once this long. No LOG
# frame is longer than MAX_LOG_FRAME (the worker bounds a frame's size).
FLUSH_AT = 64 * 1024
MAX_LOG_FRAME = 1024 * 1024
_NOT_ALLOWED = (
    "State transition from {0} to {1} failed for runtime. Error: State transition is not allowed"
)
_TOO_LARGE_FOR_INVOKER = json.dumps(
    {
        "errorMessage": "Response payload size exceeded maximum allowed payload size "
        "({0} bytes).".format(MAX_RESPONSE),
        "errorType": "Function.ResponseSizeTooLarge",
    }
).encode()

# The runtime's states (names as Lambda's Runtime API reports them).
STARTED = "Started"  # bootstrap running, not yet asked for an event: Init
READY = "Ready"  # waiting in /next for an event
RUNNING = "Running"  # an event was handed out; no answer yet
ANSWERED = "RuntimeResponseSentState"  # answered; the next /next makes it Ready
INIT_FAILED = "InitError"  # /init/error was posted: the sandbox is finished


class Request:
    """One parsed HTTP request. ``too_large``: the body was over the limit (and dropped)."""

    __slots__ = ("body", "headers", "method", "path", "streamed", "too_large", "version")

    def __init__(self, method: str, path: str, version: str, headers: Dict[str, str]) -> None:
        self.method = method
        self.path = path
        self.version = version
        self.headers = headers  # with the trailers of a chunked body, once read
        self.body = b""
        self.too_large = False
        self.streamed = False  # the body went to a ``Parser.on_head`` sink as it came

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"


class BadRequest(Exception):
    """The bytes on a connection are not HTTP/1.x: answer 400 and close it."""


class Parser:
    """Incremental HTTP/1.x request parser (Content-Length and chunked bodies).

    Bodies over ``limit`` bytes are counted and dropped, not kept, so that an
    oversized response can be answered with 413 once it has been read. A body
    for which ``on_head`` returns a sink goes there as it arrives instead.
    """

    def __init__(
        self,
        limit: int = MAX_RESPONSE,
        on_head: Optional[Callable[[Request], Optional[Callable[[bytes], None]]]] = None,
    ) -> None:
        self.limit = limit
        self.on_head = on_head
        self._sink: Optional[Callable[[bytes], None]] = None
        self.buffer = bytearray()
        self._request: Optional[Request] = None
        self._body: List[bytes] = []
        self._size = 0
        self._remaining = 0  # bytes of a Content-Length body still to come
        self._chunked = False
        self._chunk_left = -1  # -1: a chunk-size line is expected next
        # Set when a request head asked for ``100 Continue`` before its body.
        self.wants_continue = False

    def feed(self, data: bytes) -> List[Request]:
        """Add bytes; return every request they completed (raises BadRequest)."""
        self.buffer += data
        done: List[Request] = []
        while True:
            request = self._step()
            if request is None:
                return done
            done.append(request)

    def _step(self) -> Optional[Request]:
        if self._request is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    raise BadRequest("request head too large")
                return None
            self._request = self._head(bytes(self.buffer[:end]).decode("latin-1"))
            del self.buffer[: end + 4]
        if self._chunked:
            if not self._read_chunks():
                return None
        elif self._remaining:
            take = min(self._remaining, len(self.buffer))
            self._keep(bytes(self.buffer[:take]))
            del self.buffer[:take]
            self._remaining -= take
            if self._remaining:
                return None
        return self._finish()

    def _head(self, text: str) -> Request:
        lines = text.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise BadRequest("bad request line")
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise BadRequest("bad header line")
            headers[name.strip().lower()] = value.strip()
        request = Request(parts[0], parts[1], parts[2], headers)
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._chunked = True
        else:
            try:
                self._remaining = int(headers.get("content-length", "0"))
            except ValueError:
                raise BadRequest("bad Content-Length") from None
            if self._remaining < 0:
                raise BadRequest("bad Content-Length")
        if headers.get("expect", "").lower() == "100-continue":
            self.wants_continue = True
        if self.on_head is not None:
            self._sink = self.on_head(request)
            request.streamed = self._sink is not None
        return request

    def _read_chunks(self) -> bool:
        """Consume chunks from the buffer; True once the last one (and trailers) arrived."""
        while True:
            if self._chunk_left == -1:
                end = self.buffer.find(b"\r\n")
                if end < 0:
                    return False
                try:
                    self._chunk_left = int(bytes(self.buffer[:end]).split(b";")[0], 16)
                except ValueError:
                    raise BadRequest("bad chunk size") from None
                del self.buffer[: end + 2]
                if self._chunk_left == 0:
                    self._chunk_left = -2  # trailers follow
            if self._chunk_left == -2:
                end = self.buffer.find(b"\r\n")
                if end < 0:
                    return False
                line = bytes(self.buffer[:end]).decode("latin-1")
                del self.buffer[: end + 2]
                if end == 0:  # the blank line after the (optional) trailers
                    self._chunk_left = -1
                    self._chunked = False
                    return True
                name, sep, value = line.partition(":")
                if sep and self._request is not None:  # a trailer: kept with the headers
                    self._request.headers[name.strip().lower()] = value.strip()
                continue
            if len(self.buffer) < self._chunk_left + 2:
                take = min(len(self.buffer), self._chunk_left)
                self._keep(bytes(self.buffer[:take]))
                del self.buffer[:take]
                self._chunk_left -= take
                return False
            self._keep(bytes(self.buffer[: self._chunk_left]))
            del self.buffer[: self._chunk_left + 2]
            self._chunk_left = -1

    def _keep(self, data: bytes) -> None:
        if self._sink is not None:
            if data:
                self._sink(data)
            return
        self._size += len(data)
        if self._size <= self.limit:
            self._body.append(data)
        else:
            self._body = []

    def _finish(self) -> Request:
        request = self._request
        assert request is not None
        request.too_large = self._size > self.limit
        request.body = b"" if request.too_large else b"".join(self._body)
        self._request = None
        self._sink = None
        self._body = []
        self._size = 0
        return request


def response_bytes(
    status: int, body: bytes, headers: Optional[List[Tuple[str, str]]] = None
) -> bytes:
    """One HTTP/1.1 response, head and body in one buffer (one write, no Nagle stall)."""
    reasons = {
        200: "OK",
        202: "Accepted",
        400: "Bad Request",
        403: "Forbidden",
        404: "Not Found",
        405: "Method Not Allowed",
        413: "Request Entity Too Large",
        500: "Internal Server Error",
    }
    lines = ["HTTP/1.1 {0} {1}".format(status, reasons.get(status, "Unknown"))]
    extra = list(headers or [])
    if not any(name.lower() == "content-type" for name, _ in extra):
        extra.append(("Content-Type", "application/json"))
    extra.append(("Content-Length", str(len(body))))
    lines += ["{0}: {1}".format(name, value) for name, value in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def error_body(error_type: str, message: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type}).encode()


class Invocation:
    """One event from the worker, as the runtime will see it."""

    __slots__ = ("headers", "payload", "request_id")

    def __init__(self, frame: bytes) -> None:
        (meta_len,) = frames.META_LEN.unpack_from(frame)
        start = frames.META_LEN.size
        meta = frame[start : start + meta_len].decode("utf-8").split(frames.META_SEPARATOR)
        self.request_id = meta[0]
        self.payload = frame[start + meta_len :]
        trace_id, traceparent = frames.trace_headers(meta[5])
        headers = [
            ("Lambda-Runtime-Aws-Request-Id", meta[0]),
            ("Lambda-Runtime-Deadline-Ms", meta[1]),
            ("Lambda-Runtime-Invoked-Function-Arn", meta[2]),
            ("Lambda-Runtime-Trace-Id", trace_id),
        ]
        if traceparent:  # the same trace in W3C's form, for OpenTelemetry runtimes
            headers.append(("traceparent", traceparent))
        # Lambda sends these two only when they have a value.
        if meta[3]:
            headers.append(("Lambda-Runtime-Client-Context", meta[3]))
        if meta[4]:
            headers.append(("Lambda-Runtime-Cognito-Identity", meta[4]))
        self.headers = headers


def _peak_rss_kb(pid: int) -> int:
    """``VmHWM`` of process ``pid`` in KiB; 0 when it cannot be read."""
    try:
        with open("/proc/{0}/status".format(pid), "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def function_error(body: bytes, error_type: str) -> bytes:
    """The error payload the invoker gets for a runtime's ``/error`` post.

    A JSON object is passed through as the runtime wrote it (awslambdaric's
    errorMessage, errorType, requestId, stackTrace); anything else is wrapped.
    """
    with contextlib.suppress(ValueError):
        if isinstance(json.loads(body), dict):
            return body
    message = body.decode("utf-8", "replace")
    return error_body(error_type or "Runtime.Unknown", message)


class _StreamIn:
    """A streaming response's body into CHUNK frames; an HTTP integration response's
    prelude (its JSON up to 8 NUL bytes) into one PRELUDE frame first."""

    def __init__(self, outbox: List[Tuple[int, bytes]], http: bool) -> None:
        self.outbox = outbox
        self.head: Optional[bytearray] = bytearray() if http else None

    def feed(self, data: bytes) -> None:
        head = self.head
        if head is not None:
            head += data
            end = head.find(PRELUDE_END)
            if end < 0:
                if len(head) > MAX_HEAD:  # no prelude after all: all of it is body
                    self.head = None
                    self.outbox.append((frames.CHUNK, bytes(head)))
                return
            self.head = None
            self.outbox.append((frames.PRELUDE, bytes(head[:end])))
            data = bytes(head[end + len(PRELUDE_END) :])
            if not data:
                return
        self.outbox.append((frames.CHUNK, data))


def _stream_end(trailers: Dict[str, str]) -> Tuple[int, bytes]:
    """How a streamed response ended: STREAM_END, or ERROR from the error trailers
    (``Lambda-Runtime-Function-Error-Type``, ``-Error-Body`` in base64)."""
    error_type = trailers.get("lambda-runtime-function-error-type", "")
    encoded = trailers.get("lambda-runtime-function-error-body", "")
    if not error_type and not encoded:
        return frames.STREAM_END, b""
    try:
        body = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        body = encoded.encode("utf-8", "replace")
    return frames.ERROR, function_error(body, error_type)


class RuntimeApi:
    """The Runtime API's state machine for one sandbox, without any I/O.

    ``handle`` answers a request with ``(status, headers, body)`` or None for
    a ``/next`` long poll that must wait for an event; what it has to tell
    the worker it appends to ``outbox`` as ``(frame kind, body)``.
    """

    def __init__(self) -> None:
        self.state = STARTED
        self.current: Optional[Invocation] = None  # the event handed out last
        self.pending: Optional[Invocation] = None  # an event no /next has taken yet
        self.outbox: List[Tuple[int, bytes]] = []
        self.started = time.perf_counter()

    def offer(self, invocation: Invocation) -> None:
        """An event arrived from the worker."""
        self.pending = invocation

    def take(self) -> Optional[Tuple[int, List[Tuple[str, str]], bytes]]:
        """Hand the pending event to a waiting ``/next``, if there is one."""
        if self.pending is None or self.state != READY:
            return None
        self.current, self.pending = self.pending, None
        self.state = RUNNING
        return 200, self.current.headers, self.current.payload

    def handle(self, request: Request) -> Optional[Tuple[int, List[Tuple[str, str]], bytes]]:
        path = request.path.split("?", 1)[0]
        if not path.startswith(PREFIX):
            return 404, [], error_body("NotFound", "Unknown path: " + path)
        route = path[len(PREFIX) :].split("/")
        if route == ["invocation", "next"]:
            if request.method != "GET":
                return 405, [], error_body("MethodNotAllowed", "Use GET")
            return self._next()
        answer = len(route) == 3 and route[0] == "invocation" and route[2] in ("response", "error")
        if not answer and route != ["init", "error"]:
            return 404, [], error_body("NotFound", "Unknown path: " + path)
        if request.method != "POST":
            return 405, [], error_body("MethodNotAllowed", "Use POST")
        if answer:
            return self._answer(request, route[1], route[2] == "response")
        return self._init_error(request)

    def _forbidden(self, target: str) -> Tuple[int, List[Tuple[str, str]], bytes]:
        message = _NOT_ALLOWED.format(self.state, target)
        return 403, [], error_body("InvalidStateTransition", message)

    def _next(self) -> Optional[Tuple[int, List[Tuple[str, str]], bytes]]:
        if self.state == STARTED:
            init_ms = (time.perf_counter() - self.started) * 1000.0
            body = json.dumps({"pid": os.getpid(), "initMs": init_ms}).encode()
            self.outbox.append((frames.READY, body))
        elif self.state not in (ANSWERED, READY):
            return self._forbidden(READY)
        self.state = READY
        return self.take()

    def _init_error(self, request: Request) -> Tuple[int, List[Tuple[str, str]], bytes]:
        if self.state != STARTED:
            return self._forbidden(INIT_FAILED)
        error_type = request.headers.get("lambda-runtime-function-error-type", "")
        self.outbox.append((frames.INIT_ERROR, function_error(request.body, error_type)))
        self.state = INIT_FAILED
        return 202, [], b'{"status":"OK"}'

    def _answer(
        self, request: Request, request_id: str, success: bool
    ) -> Tuple[int, List[Tuple[str, str]], bytes]:
        if self.state != RUNNING:
            return self._forbidden("InvocationResponse" if success else "InvocationErrorResponse")
        assert self.current is not None
        if request_id != self.current.request_id:
            return 400, [], error_body("InvalidRequestID", "Invalid request ID")
        self.state = ANSWERED
        if request.streamed:
            self.outbox.append(_stream_end(request.headers))
            return 202, [], b'{"status":"OK"}'
        if request.too_large:
            self.outbox.append((frames.ERROR, _TOO_LARGE_FOR_INVOKER))
            message = "Exceeded maximum allowed payload size ({0} bytes).".format(MAX_RESPONSE)
            return 413, [], error_body("RequestEntityTooLarge", message)
        if success:
            self.outbox.append((frames.RESULT, request.body))
        else:
            error_type = request.headers.get("lambda-runtime-function-error-type", "")
            self.outbox.append((frames.ERROR, function_error(request.body, error_type)))
        return 202, [], b'{"status":"OK"}'

    def stream_to(self, request: Request) -> Optional[Callable[[bytes], None]]:
        """For the head of the running invocation's streaming response (header
        ``Lambda-Runtime-Function-Response-Mode: streaming``): where its body goes,
        a CHUNK frame per piece as it arrives. Anything else is read whole."""
        headers = request.headers
        if headers.get("lambda-runtime-function-response-mode", "").lower() != "streaming":
            return None
        route = request.path.split("?", 1)[0][len(PREFIX) :].split("/")
        current = self.current
        if (
            request.method != "POST"
            or self.state != RUNNING
            or current is None
            or route != ["invocation", current.request_id, "response"]
        ):
            return None
        http = headers.get("content-type", "").lower().startswith(HTTP_INTEGRATION)
        return _StreamIn(self.outbox, http).feed

    def exited(self, exit_code: int) -> bool:
        """The bootstrap exited; queue EXIT unless no one waits for an answer."""
        if self.state in (STARTED, RUNNING) or self.pending is not None:
            self.outbox.append((frames.EXIT, json.dumps({"exitCode": exit_code}).encode()))
            return True
        return False


class _Connection:
    """One HTTP connection from the runtime."""

    def __init__(
        self,
        sock: socket.socket,
        on_head: Optional[Callable[[Request], Optional[Callable[[bytes], None]]]] = None,
    ) -> None:
        self.sock = sock
        self.parser = Parser(on_head=on_head)
        self.out = bytearray()
        self.waiting: Optional[Request] = None  # a /next held open for an event
        self.close_after = False


PR_SET_PDEATHSIG = 1


def _exec_runtime(argv: List[str], env: Dict[str, str], output_fd: int, task_root: str) -> None:
    """In the forked child: become the runtime, or exit as a shell would (126, 127)."""
    try:
        with contextlib.suppress(Exception):
            # Die with the sandbox's init, even without a PID namespace.
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        for signum in (signal.SIGPIPE, signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        os.chdir(task_root)
        os.execve(argv[0], argv, env)
    except OSError as exc:
        message = "fork/exec {0}: {1}\n".format(argv[0], os.strerror(exc.errno or 0))
        with contextlib.suppress(OSError):
            os.write(2, message.encode())
        os._exit(127 if exc.errno == errno.ENOENT else 126)
    finally:
        os._exit(127)


def find_bootstrap(task_root: str) -> Optional[str]:
    """The runtime's entry point: the package's ``bootstrap``, else a layer's."""
    for path in (os.path.join(task_root, "bootstrap"), "/opt/bootstrap"):
        if os.path.isfile(path):
            return path
    return None


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``, blocking or not."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])


def _exit_code(status: int) -> int:
    return int(os.waitstatus_to_exitcode(status))


class Supervisor:
    """The sandbox's init: serves the Runtime API and runs the bootstrap."""

    def __init__(self, read_fd: int, write_fd: int, task_root: str, port: int) -> None:
        # The worker's frames: one socket (both fds the same) or a pair of pipes.
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.task_root = task_root
        self.api = RuntimeApi()
        self.selector = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(16)
        self.listener.setblocking(False)
        self.port = int(self.listener.getsockname()[1])
        self.connections: Dict[int, _Connection] = {}
        self.frame_buffer = bytearray()
        self.log = bytearray()
        self.log_fd = -1
        self.pid = 0
        self.pidfd = -1
        self.status: Optional[int] = None  # the bootstrap's wait status once reaped
        self.reap_orphans = os.getpid() == 1

    # --- the bootstrap --------------------------------------------------------

    def start(self, argv: List[str], env: Dict[str, str]) -> None:
        """Fork and exec ``argv`` (the bootstrap, or a runtime's command line) with
        the Runtime API's address in its environment."""
        env = dict(env)
        env["AWS_LAMBDA_RUNTIME_API"] = "127.0.0.1:{0}".format(self.port)
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            _exec_runtime(argv, env, write_fd, self.task_root)  # never returns
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        self.pid = pid
        self.log_fd = read_fd
        self.selector.register(read_fd, selectors.EVENT_READ, "log")
        with contextlib.suppress(AttributeError, OSError):
            self.pidfd = os.pidfd_open(pid)
            self.selector.register(self.pidfd, selectors.EVENT_READ, "pidfd")

    def _reap(self) -> None:
        """Collect the bootstrap's status (and, as PID 1, any orphan's)."""
        if self.status is not None or not self.pid:
            return
        while True:
            try:
                pid, status = os.waitpid(-1 if self.reap_orphans else self.pid, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid:
                self.status = status
                return

    def _drain_log(self) -> None:
        while self.log_fd >= 0:
            try:
                chunk = os.read(self.log_fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.selector.unregister(self.log_fd)
                os.close(self.log_fd)
                self.log_fd = -1
                return
            self.log += chunk
            self._send_lines(chunk)

    def _send_lines(self, chunk: bytes) -> None:
        """Send the complete lines read so far (or a long unfinished one) as LOG frames."""
        log = self.log
        end = log.rfind(b"\n") + 1 if b"\n" in chunk else 0
        if len(log) >= FLUSH_AT and not end:
            end = len(log)
        for start in range(0, end, MAX_LOG_FRAME):
            data = bytes(log[start : min(end, start + MAX_LOG_FRAME)])
            write_all(self.write_fd, frames.reply_frame(frames.LOG, 0, data, b""))
        del log[:end]

    def _take_log(self) -> bytes:
        self._drain_log()
        data = bytes(self.log)
        self.log.clear()
        if len(data) > MAX_LOG:
            data = b"[ember: output truncated]\n" + data[-MAX_LOG:]
        return data

    def _rss_kb(self) -> int:
        """The running bootstrap's peak RSS (VmHWM), or this process's if larger.

        Not RUSAGE_CHILDREN: it counts only children already reaped, never the
        running bootstrap. The worker takes the sandbox cgroup's peak over this
        where it has one (the bootstrap's own children included).
        """
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return max(own, _peak_rss_kb(self.pid) if self.pid and self.status is None else 0)

    # --- frames ---------------------------------------------------------------

    def _flush_outbox(self) -> None:
        while self.api.outbox:
            kind, body = self.api.outbox.pop(0)
            if kind == frames.CHUNK or kind == frames.PRELUDE:
                # Output goes in the reply that ends the invocation, not in a chunk.
                frame = frames.reply_frame(kind, 0, b"", body)
            else:
                frame = frames.reply_frame(kind, self._rss_kb(), self._take_log(), body)
            write_all(self.write_fd, frame)

    def _on_channel(self) -> bool:
        """Read INVOKE frames; False once the worker closed the socket."""
        try:
            data = os.read(self.read_fd, 1 << 20)
        except BlockingIOError:
            return True
        except OSError:
            data = b""
        if not data:
            return False
        self.frame_buffer += data
        header = frames.HEADER
        while len(self.frame_buffer) >= header.size:
            length, _kind = header.unpack_from(self.frame_buffer)
            if len(self.frame_buffer) < header.size + length:
                break
            frame = bytes(self.frame_buffer[header.size : header.size + length])
            del self.frame_buffer[: header.size + length]
            self.api.offer(Invocation(frame))
            self._hand_out()
        return True

    def _hand_out(self) -> None:
        """Answer the waiting ``/next`` with the pending event, if both exist."""
        for connection in self.connections.values():
            if connection.waiting is not None:
                answer = self.api.take()
                if answer is None:
                    return
                self._respond(connection, connection.waiting, answer)
                return

    # --- HTTP -----------------------------------------------------------------

    def _accept(self) -> None:
        try:
            sock, _addr = self.listener.accept()
        except OSError:
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections[sock.fileno()] = _Connection(sock, self.api.stream_to)
        self.selector.register(sock, selectors.EVENT_READ, "http")

    def _close(self, connection: _Connection) -> None:
        self.connections.pop(connection.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(connection.sock)
        connection.sock.close()

    def _on_http(self, connection: _Connection, events: int) -> None:
        if events & selectors.EVENT_WRITE:
            self._write(connection)
        if not events & selectors.EVENT_READ:
            return
        try:
            data = connection.sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close(connection)
            return
        try:
            requests = connection.parser.feed(data)
        except BadRequest as exc:
            connection.close_after = True
            connection.out += response_bytes(400, error_body("BadRequest", str(exc)))
            self._write(connection)
            return
        if connection.parser.wants_continue:
            # curl waits for this (up to a second) before sending a larger body.
            connection.parser.wants_continue = False
            if not requests:
                connection.out += b"HTTP/1.1 100 Continue\r\n\r\n"
                self._write(connection)
        for request in requests:
            answer = self.api.handle(request)
            if answer is None:
                connection.waiting = request
            else:
                self._respond(connection, request, answer)
        self._flush_outbox()

    def _respond(
        self,
        connection: _Connection,
        request: Request,
        answer: Tuple[int, List[Tuple[str, str]], bytes],
    ) -> None:
        status, headers, body = answer
        if connection.waiting is request:
            connection.waiting = None
        if not request.keep_alive:
            connection.close_after = True
        connection.out += response_bytes(status, body, headers)
        self._write(connection)

    def _write(self, connection: _Connection) -> None:
        try:
            sent = connection.sock.send(connection.out)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close(connection)
            return
        del connection.out[:sent]
        if connection.out:
            self.selector.modify(
                connection.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, "http"
            )
            return
        if connection.close_after:
            self._close(connection)
            return
        with contextlib.suppress(KeyError, ValueError):
            self.selector.modify(connection.sock, selectors.EVENT_READ, "http")

    # --- the loop -------------------------------------------------------------

    def serve(self) -> int:
        """Relay until the worker closes the socket or the bootstrap exits; the exit status."""
        os.set_blocking(self.read_fd, False)
        self.selector.register(self.listener, selectors.EVENT_READ, "listen")
        self.selector.register(self.read_fd, selectors.EVENT_READ, "channel")
        while True:
            # Without a pidfd, poll for the bootstrap's exit.
            timeout = 1.0 if self.pidfd >= 0 else 0.05
            for key, events in self.selector.select(timeout):
                if key.data == "listen":
                    self._accept()
                elif key.data == "channel":
                    if not self._on_channel():
                        return self._stop(0)
                elif key.data == "log":
                    self._drain_log()
                elif key.data == "pidfd":
                    self.selector.unregister(self.pidfd)
                    os.close(self.pidfd)
                    self.pidfd = -2  # exited: no more polling
                elif key.data == "http":
                    connection = self.connections.get(key.fd)
                    if connection is not None:
                        self._on_http(connection, events)
            self._reap()
            if self.status is not None:
                code = _exit_code(self.status)
                if self.api.exited(code):
                    self._drain_rest()
                    self._flush_outbox()
                return self._stop(code if code > 0 else 1)

    def _drain_rest(self) -> None:
        """Read what the exited bootstrap (or its children) left in the pipe."""
        if self.log_fd >= 0:
            os.set_blocking(self.log_fd, True)
            deadline = time.monotonic() + 0.5
            while self.log_fd >= 0 and time.monotonic() < deadline:
                ready = selectors.DefaultSelector()
                ready.register(self.log_fd, selectors.EVENT_READ)
                if not ready.select(max(0.0, deadline - time.monotonic())):
                    ready.close()
                    break
                ready.close()
                os.set_blocking(self.log_fd, False)
                self._drain_log()

    def _stop(self, code: int) -> int:
        if self.status is None and self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
        for connection in list(self.connections.values()):
            self._close(connection)
        self.listener.close()
        self.selector.close()
        return code


def run(
    read_fd: int, write_fd: int, task_root: str, port: int, command: Optional[List[str]] = None
) -> int:
    """Serve one custom-runtime sandbox; return the exit status.

    Frames from the worker are read from ``read_fd`` and replies written to
    ``write_fd`` (the same socket in a forked sandbox; stdin and stdout under
    gVisor). ``port`` 0 picks a free one (no network namespace of its own).

    Init ends with READY (the runtime's first ``/next``) or INIT_ERROR; a
    missing or unusable bootstrap is Lambda's ``Runtime.InvalidEntrypoint``.
    ``command``: a managed runtime's own (Node: its binary and ember's runtime
    script) instead of the package's bootstrap.
    """
    if command:
        supervisor = Supervisor(read_fd, write_fd, task_root, port)
        supervisor.start(list(command), dict(os.environ))
        return supervisor.serve()
    bootstrap = find_bootstrap(task_root)
    if bootstrap is None:
        message = "Couldn't find valid bootstrap(s): [{0} /opt/bootstrap]".format(
            os.path.join(task_root, "bootstrap")
        )
        body = error_body("Runtime.InvalidEntrypoint", message)
        write_all(write_fd, frames.reply_frame(frames.INIT_ERROR, 0, b"", body))
        return 1
    if not os.access(bootstrap, os.X_OK):
        message = "fork/exec {0}: permission denied".format(bootstrap)
        body = error_body("Runtime.InvalidEntrypoint", message)
        write_all(write_fd, frames.reply_frame(frames.INIT_ERROR, 0, b"", body))
        return 1
    supervisor = Supervisor(read_fd, write_fd, task_root, port)
    supervisor.start([bootstrap], dict(os.environ))
    return supervisor.serve()
