"""The native Python runtime: Init once, then serve invokes over the socket.

Runs inside a freshly forked sandbox. ``run`` imports the handler (Init),
reports READY or INIT_ERROR, then loops: read one INVOKE frame, call
``handler(event, context)``, answer with RESULT or ERROR; a handler that
returns an iterator streams: a CHUNK frame per item, then STREAM_END. Output written to
``sys.stdout`` / ``sys.stderr`` / ``logging`` leaves as it is written, a LOG
frame per line on the same socket (``_Outlet``), so it is ordered with the
result and survives the process being killed; an unfinished last line rides
in the reply, and a call that prints nothing sends nothing extra.

Imported by the zygote as ``_ember_pyloop`` under the function's own
interpreter: standard library only, Python 3.9 syntax.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.machinery
import io
import json
import logging
import os
import random
import resource
import sys
import threading
import time
import traceback
from typing import Any, Callable

import _ember_frames as frames  # type: ignore[import-not-found]

# An unfinished line is sent once this long; no LOG frame is longer than
# MAX_LOG_FRAME (the worker bounds a frame's size).
FLUSH_AT = 64 * 1024
MAX_LOG_FRAME = 1024 * 1024


class InitError(Exception):
    """Init failed; ``payload`` is the error JSON Lambda would report."""

    def __init__(self, error_type: str, message: str, stack: list[str] | None = None) -> None:
        super().__init__(message)
        self.payload = {
            "errorMessage": message,
            "errorType": error_type,
            "requestId": "",
            "stackTrace": stack or [],
        }


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, raw: dict[str, Any]) -> None:
        self.cognito_identity_id = raw.get("cognitoIdentityId")
        self.cognito_identity_pool_id = raw.get("cognitoIdentityPoolId")


class Client:
    __slots__ = (
        "app_package_name",
        "app_title",
        "app_version_code",
        "app_version_name",
        "installation_id",
    )

    def __init__(self, raw: dict[str, Any]) -> None:
        self.installation_id = raw.get("installation_id")
        self.app_title = raw.get("app_title")
        self.app_version_name = raw.get("app_version_name")
        self.app_version_code = raw.get("app_version_code")
        self.app_package_name = raw.get("app_package_name")


class ClientContext:
    __slots__ = ("client", "custom", "env")

    def __init__(self, raw: dict[str, Any]) -> None:
        client = raw.get("client")
        self.client = Client(client) if isinstance(client, dict) else None
        self.custom = raw.get("custom")
        self.env = raw.get("env")


class LambdaContext:
    """The context object, with every attribute Lambda's Python runtime gives."""

    __slots__ = (
        "_deadline_ms",
        "aws_request_id",
        "client_context",
        "function_name",
        "function_version",
        "identity",
        "invoked_function_arn",
        "log_group_name",
        "log_stream_name",
        "memory_limit_in_mb",
        "tenant_id",
    )

    def __init__(
        self, request_id: str, deadline_ms: int, arn: str, client_context: str, identity: str
    ) -> None:
        env = os.environ
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.aws_request_id = request_id
        self.invoked_function_arn = arn
        self._deadline_ms = deadline_ms
        self.identity = CognitoIdentity(json.loads(identity) if identity else {})
        self.client_context = ClientContext(json.loads(client_context)) if client_context else None
        self.tenant_id = None

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def __repr__(self) -> str:
        return (
            "LambdaContext([aws_request_id={0},log_group_name={1},log_stream_name={2},"
            "function_name={3},memory_limit_in_mb={4},function_version={5},"
            "invoked_function_arn={6}])".format(
                self.aws_request_id,
                self.log_group_name,
                self.log_stream_name,
                self.function_name,
                self.memory_limit_in_mb,
                self.function_version,
                self.invoked_function_arn,
            )
        )


class _Outlet(io.RawIOBase):
    """What ``sys.stdout`` and ``sys.stderr`` write to: sent to the worker line by line.

    Each completed line (or 64 KiB of an unfinished one) leaves the sandbox at
    once as a LOG frame, so a timeout, ``os._exit``, a segfault or the OOM
    killer cannot take what was printed before it, as on Lambda. A function
    that prints nothing sends nothing extra. The rest of an unfinished line
    rides in the next reply frame (``take``). One lock orders these frames
    with the replies when a handler's threads print.
    """

    def __init__(self, sock: Any) -> None:
        super().__init__()
        self.sock = sock
        self.pending = bytearray()
        self.lock = threading.Lock()
        self.raw_fd = -1  # in a process the handler forked: its fd 1, not frames

    def forked(self) -> None:
        """In a child the handler forked: frames from two processes would interleave
        on the one socket, so the child's output goes to fd 1 (the raw output pipe)."""
        self.lock = threading.Lock()
        self.raw_fd = 1

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        size = len(data)
        with self.lock:
            pending = self.pending
            pending += data
            if b"\n" in data or len(pending) >= FLUSH_AT:
                self._send_pending()
        return size

    def _send_pending(self) -> None:
        pending = self.pending
        if self.raw_fd >= 0:
            view = memoryview(bytes(pending))
            pending.clear()
            with contextlib.suppress(OSError):  # nobody reads it any more: dropped
                while view:
                    view = view[os.write(self.raw_fd, view) :]
            return
        for start in range(0, len(pending), MAX_LOG_FRAME):
            chunk = bytes(pending[start : start + MAX_LOG_FRAME])
            self.sock.sendall(frames.reply_frame(frames.LOG, 0, chunk, b""))
        pending.clear()

    def chunk(self, data: bytes, kind: int = frames.CHUNK) -> None:
        """Send a piece of a streamed response at once, after the output printed before it."""
        with self.lock:
            if self.pending:
                self._send_pending()
            for start in range(0, len(data), MAX_LOG_FRAME):
                piece = data[start : start + MAX_LOG_FRAME]
                self.sock.sendall(frames.reply_frame(kind, 0, b"", piece))

    def reply(self, kind: int, body: bytes) -> None:
        """Send one reply frame, with the unfinished line written so far."""
        with self.lock:
            pending = self.pending
            if len(pending) > MAX_LOG_FRAME:
                self._send_pending()
            log = bytes(pending)
            pending.clear()
            self.sock.sendall(frames.reply_frame(kind, _max_rss_kb(), log, body))


class _Capture:
    """``sys.stdout`` and ``sys.stderr``: two text streams over one outlet."""

    def __init__(self, outlet: Any) -> None:
        self.outlet = outlet
        self.stdout = io.TextIOWrapper(
            outlet, encoding="utf-8", errors="replace", write_through=True
        )
        self.stderr = io.TextIOWrapper(
            outlet, encoding="utf-8", errors="replace", write_through=True
        )


class _Discard:
    """A socket stand-in for ``prewarm``: nothing leaves a sandbox not yet claimed."""

    def sendall(self, data: bytes) -> None:
        pass


class _RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self.request_id
        return True


def _install_logging(stream: io.TextIOWrapper) -> _RequestIdFilter:
    """Give the root logger Lambda's handler: tab-separated text at WARNING by default,
    or JSON records at AWS_LAMBDA_LOG_LEVEL when AWS_LAMBDA_LOG_FORMAT is JSON."""
    handler = logging.StreamHandler(stream)
    json_format = os.environ.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == "JSON"
    if json_format:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(
                "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
                "%Y-%m-%dT%H:%M:%S",
            )
        )
        handler.formatter.converter = time.gmtime  # type: ignore[union-attr]
    handler.terminator = ""
    request_filter = _RequestIdFilter()
    handler.addFilter(request_filter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(_json_level() if json_format else logging.WARNING)
    return request_filter


# ApplicationLogLevel -> Python's level (Lambda maps TRACE to DEBUG).
_LEVELS = {
    "TRACE": logging.DEBUG,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "ERROR": logging.ERROR,
    "FATAL": logging.CRITICAL,
}
# LogRecord attributes that are not a caller's ``extra`` fields.
_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "aws_request_id",
    "message",
    "asctime",
    "taskName",
}


def _json_level() -> int:
    return _LEVELS.get(os.environ.get("AWS_LAMBDA_LOG_LEVEL", "INFO").upper(), logging.INFO)


class _JsonFormatter(logging.Formatter):
    """Lambda's JSON application log record: timestamp, level, message, logger,
    requestId, a caller's ``extra`` fields, and the error of ``logger.exception``."""

    def format(self, record: logging.LogRecord) -> str:
        level = min(50, max(0, record.levelno)) // 10 * 10
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        result: dict[str, Any] = {
            "timestamp": "{0}.{1:03d}Z".format(stamp, int(record.msecs)),
            "level": logging.getLevelName(level),
            "message": record.getMessage(),
            "logger": record.name,
        }
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            result["errorType"] = type(error).__name__
            result["errorMessage"] = _message(error)
            result["stackTrace"] = traceback.format_tb(record.exc_info[2])
            result["location"] = "{0}:{1}:{2}".format(
                record.pathname, record.funcName, record.lineno
            )
        request_id = getattr(record, "aws_request_id", "")
        if request_id:
            result["requestId"] = request_id
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and key not in result:
                result[key] = value
        return json.dumps(result, default=str, ensure_ascii=False) + "\n"


def _stack(tb: Any) -> list[str]:
    return traceback.format_list(traceback.extract_tb(tb))


def load_handler(handler: str) -> Callable[[Any, Any], Any]:
    """Import ``module.function`` from the task root, Lambda's way (Init)."""
    try:
        module_name, function_name = handler.rsplit(".", 1)
    except ValueError as exc:
        raise InitError(
            "Runtime.MalformedHandlerName", "Bad handler '{0}': {1}".format(handler, exc)
        ) from None
    module_name = module_name.replace("/", ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InitError(
            "Runtime.ImportModuleError",
            "Unable to import module '{0}': {1}".format(module_name, exc),
        ) from None
    except SyntaxError as exc:
        raise InitError(
            "Runtime.UserCodeSyntaxError",
            "Syntax error in module '{0}': {1}".format(module_name, exc),
            _stack(exc.__traceback__),
        ) from None
    except Exception as exc:
        # An exception raised by the module's own top-level code.
        raise InitError(type(exc).__name__, _message(exc), _stack(exc.__traceback__)) from None
    function = getattr(module, function_name, None)
    if function is None:
        raise InitError(
            "Runtime.HandlerNotFound",
            "Handler '{0}' missing on module '{1}'".format(function_name, module_name),
        )
    return function  # type: ignore[no-any-return]


def _message(exc: BaseException) -> str:
    """``str(exc)``, which user code can make raise."""
    try:
        return str(exc)
    except Exception:
        return "<exception str() failed>"


def _error_payload(exc: BaseException, request_id: str) -> bytes:
    tb = exc.__traceback__
    # Drop the runtime's own frame: the stack starts in user code, as on Lambda.
    tb = tb.tb_next if tb is not None else None
    return json.dumps(
        {
            "errorMessage": _message(exc),
            "errorType": type(exc).__name__,
            "requestId": request_id,
            "stackTrace": _stack(tb),
        }
    ).encode("utf-8")


def _stream(outlet: _Outlet, chunks: Any) -> None:
    """Send what an iterator handler yields as it yields it (an ember extension:
    Lambda's Python runtime cannot stream). ``str`` is sent as UTF-8; a dict
    yielded first is the HTTP prelude of a function URL (``statusCode``,
    ``headers``, ``cookies``); any other item ends the stream with a TypeError,
    as the handler's own error would.
    """
    first = True
    for item in chunks:
        if isinstance(item, str):
            item = item.encode("utf-8")
        elif isinstance(item, dict) and first:
            outlet.chunk(json.dumps(item).encode("utf-8"), frames.PRELUDE)
            first = False
            continue
        elif not isinstance(item, (bytes, bytearray, memoryview)):
            raise TypeError(
                "a streamed response yields bytes or str, not {0}".format(type(item).__name__)
            )
        first = False
        if item:
            outlet.chunk(bytes(item))


def _max_rss_kb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _read_exact(rfile: io.BufferedReader, size: int) -> bytes:
    data = rfile.read(size)
    if data is None or len(data) < size:
        raise EOFError
    return data


def prewarm() -> None:
    """Exercise Init's code paths in a pre-forked sandbox before it is claimed.

    A fork shares the zygote's pages copy-on-write; the first write to each
    (a reference count is enough) costs a page fault, which is expensive
    under nested virtualisation. Taking those faults while the sandbox waits
    for a function moves them off the cold-start path.
    """
    capture = _Capture(_Outlet(_Discard()))
    capture.stdout.write("prewarm\n")
    capture.outlet.reply(frames.RESULT, b"")
    json.loads(json.dumps({"a": [1, 2.5, "x", None, True], "b": {"c": "d"}}))
    code = compile("def handler(event, context):\n    return event\n", "<prewarm>", "exec")
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    # Not the traceback machinery: only a failing Init or invoke formats a
    # stack, and warming it (linecache reads and tokenizes source files) was
    # half of this function's cost in every sandbox created.
    LambdaContext("", 0, "", "", "").get_remaining_time_in_millis()
    _max_rss_kb()
    # Init's own set-up; ``run`` installs it again at the claim, replacing
    # the root logger's handler and level, so nothing of this one remains.
    _install_logging(capture.stdout)
    _prewarm_import()


def _prewarm_import() -> None:
    """The path-based finder and the source loader Init imports the handler with.

    Through a private finder on a standard-library directory: nothing is
    imported, and sys.modules and the import caches are left as they were.
    """
    try:
        finder = importlib.machinery.FileFinder(
            os.path.dirname(json.__file__),
            (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES),
        )
        finder.find_spec("_ember_prewarm_absent")
        spec = finder.find_spec("decoder")
        if spec is not None and spec.origin:
            importlib.machinery.SourceFileLoader(spec.name, spec.origin).get_data(spec.origin)
    except (ImportError, OSError):
        pass  # only a warm-up: Init works the same without it


def _hooks(kind: str) -> list[Any]:
    hooks = sys.modules.get("snapshot_restore_py")
    if hooks is None:
        return []
    return list(getattr(hooks, "get_" + kind)())


def _refusal(outlet: _Outlet) -> dict[str, str]:
    """Why this process cannot be a template ({} when it can): what a fork would
    lose (other threads) or share with its siblings (sockets, other open files)."""
    threads = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
    if threads:
        return {
            "reasonCode": "SnapStartThreadsRunning",
            "reason": "Init left threads running ({0}): a snapshot holds only one thread. "
            "Stop them in a register_before_snapshot hook.".format(", ".join(threads)),
        }
    held = []
    for name in os.listdir("/proc/self/fd"):
        if int(name) > 3:
            with contextlib.suppress(OSError):
                held.append(os.readlink("/proc/self/fd/" + name))
    held = [h for h in held if not h.startswith("/proc/")]  # the listing's own
    if held:
        sockets = [h for h in held if h.startswith("socket:")]
        return {
            "reasonCode": "SnapStartSocketsOpen" if sockets else "SnapStartFilesOpen",
            "reason": "Init left {0} open ({1}): every sandbox started from the snapshot "
            "would share them. Close them in a register_before_snapshot hook.".format(
                "network sockets" if sockets else "files", ", ".join(sorted(held))
            ),
        }
    return {}


def _snapshot(outlet: _Outlet, sock: Any) -> bool:
    """Run the before-snapshot hooks, check this process can be forked, and park:
    blocked in ``read(3)`` until the zygote forks it (returns True in the new
    sandbox) or the platform closes the socket (False)."""
    try:
        hooks = _hooks("before_snapshot")
        while hooks:
            func, args, kwargs = hooks.pop()  # latest registered first, as AWS's runtime
            func(*args, **kwargs)
    except Exception as exc:
        refusal = {
            "reasonCode": "SnapStartHookError",
            "reason": "a before-snapshot hook raised {0}: {1}".format(
                type(exc).__name__, _message(exc)
            ),
        }
    else:
        refusal = _refusal(outlet)
    if not refusal:
        gc.collect()
        gc.freeze()  # shared with every sandbox forked from here: the collector leaves it
    outlet.reply(frames.SNAPSHOT, json.dumps(refusal).encode("utf-8"))
    if refusal:
        return False
    fd = sock.fileno()
    while True:
        got = os.read(fd, 1)
        if got == b"R":  # only ever seen in a new sandbox (sandbox/restore.py)
            return True
        if not got:
            return False


def _restored(outlet: _Outlet, rfile: Any) -> bool:
    """A new sandbox forked from the template: take its environment, make its
    randomness its own, run the after-restore hooks, report READY."""
    started = time.perf_counter()
    length, kind = frames.HEADER.unpack(_read_exact(rfile, frames.HEADER.size))
    claim = json.loads(_read_exact(rfile, length))
    if kind != frames.CLAIM:
        return False
    os.environ.clear()
    os.environ.update(claim["env"])
    random.seed()  # os.urandom and secrets draw from the kernel: already unique
    try:
        for func, args, kwargs in _hooks("after_restore"):
            func(*args, **kwargs)
    except Exception as exc:
        payload = {
            "errorMessage": _message(exc),
            "errorType": type(exc).__name__,
            "requestId": "",
            "stackTrace": _stack(exc.__traceback__),
        }
        outlet.reply(frames.INIT_ERROR, json.dumps(payload).encode("utf-8"))
        return False
    restore_ms = (time.perf_counter() - started) * 1000.0
    info = {"pid": os.getpid(), "initMs": restore_ms, "restored": True}
    outlet.reply(frames.READY, json.dumps(info).encode("utf-8"))
    return True


def run(sock: Any, handler_name: str) -> int:
    """Init and serve invokes until the worker closes the socket.

    Returns the process exit status; ``sys.exit`` inside a handler propagates
    out of here so that the worker sees the runtime exit, as on Lambda.
    """
    outlet = _Outlet(sock)
    os.register_at_fork(after_in_child=outlet.forked)
    capture = _Capture(outlet)
    sys.stdout = capture.stdout
    sys.stderr = capture.stderr
    request_filter = _install_logging(capture.stdout)
    started = time.perf_counter()
    try:
        handler = load_handler(handler_name)
    except InitError as exc:
        body = json.dumps(exc.payload).encode("utf-8")
        outlet.reply(frames.INIT_ERROR, body)
        return 1
    init_ms = (time.perf_counter() - started) * 1000.0
    info = json.dumps({"pid": os.getpid(), "initMs": init_ms}).encode("utf-8")
    outlet.reply(frames.READY, info)

    rfile = sock.makefile("rb")
    environ = os.environ
    header_size = frames.HEADER.size
    meta_len_size = frames.META_LEN.size
    while True:
        try:
            length, kind = frames.HEADER.unpack(_read_exact(rfile, header_size))
            data = _read_exact(rfile, length)
        except EOFError:
            return 0
        if kind == frames.SNAPSHOT:
            # A SnapStart template: park, and go on here only as a restored sandbox.
            if not _snapshot(outlet, sock) or not _restored(outlet, rfile):
                return 0
            continue
        (meta_len,) = frames.META_LEN.unpack_from(data)
        meta = data[meta_len_size : meta_len_size + meta_len].decode("utf-8").split("\0")
        event_bytes = data[meta_len_size + meta_len :]
        request_id = meta[0]
        request_filter.request_id = request_id
        trace_id, traceparent = frames.trace_headers(meta[5])
        environ["_X_AMZN_TRACE_ID"] = trace_id
        environ["TRACEPARENT"] = traceparent
        try:
            context = LambdaContext(request_id, int(meta[1]), meta[2], meta[3], meta[4])
            result = handler(json.loads(event_bytes), context)
            if hasattr(result, "__next__"):
                _stream(outlet, result)
                outlet.reply(frames.STREAM_END, b"")
                continue
        except Exception as exc:
            kind, body = frames.ERROR, _error_payload(exc, request_id)
        except BaseException:
            # sys.exit, KeyboardInterrupt...: the runtime exits, as on Lambda,
            # after sending this invocation's output.
            outlet.reply(frames.LOG, b"")
            raise
        else:
            try:
                kind, body = frames.RESULT, json.dumps(result).encode("utf-8")
            except Exception as exc:
                kind = frames.ERROR
                body = json.dumps(
                    {
                        "errorMessage": "Unable to marshal response: {0}".format(_message(exc)),
                        "errorType": "Runtime.MarshalError",
                        "requestId": request_id,
                        "stackTrace": [],
                    }
                ).encode("utf-8")
        outlet.reply(kind, body)
