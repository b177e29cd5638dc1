"""Invocation logs: Lambda's START / END / REPORT records, kept per function.

The hot path only appends a small tuple to a list; formatting and file
writes happen in ``LogStore.run``, a background loop owned by the server's
lifespan, at least every 0.1 s. ``Tail`` requests format their own record
immediately because the caller is waiting for it.

What a function prints reaches the file while it runs (``OutputStream``:
START, then the lines as the sandbox sends them, then END and REPORT), so
neither the function's death nor a ``kill -9`` of the server takes more
than the last fraction of a second of it. A call that printed nothing is
written as one record at its end, as before.

A function whose LoggingConfig is JSON gets Lambda's JSON platform records
instead (``{"time", "type": "platform.start" | "platform.runtimeDone" |
"platform.report", "record"}``), filtered by its SystemLogLevel; what the
function printed is left as it was written (its runtime formats its own).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

import orjson

TAIL_BYTES = 4096
DEFAULT_READ = 64 * 1024
# The most of one invocation's output written to the file; the rest is
# dropped (after a marker) so that a function printing without end cannot
# fill the server's memory between two writes. Tail still shows the last lines.
MAX_STREAMED = 4 * 1024 * 1024
TRUNCATED = b"[ember: output truncated]\n"
# SystemLogLevel -> the platform records shown at it (Lambda's: start and report
# are INFO, runtimeDone is DEBUG).
_SYSTEM_RECORDS = {
    "DEBUG": frozenset({"platform.start", "platform.runtimeDone", "platform.report"}),
    "INFO": frozenset({"platform.start", "platform.report"}),
    "WARN": frozenset(),
}


class LogFormat(NamedTuple):
    """How one function's platform records are written: Lambda's text, or JSON."""

    json: bool = False
    system_level: str = "INFO"  # JSON only: DEBUG, INFO or WARN

    def shows(self, record_type: str) -> bool:
        return record_type in _SYSTEM_RECORDS.get(self.system_level, _SYSTEM_RECORDS["INFO"])


TEXT = LogFormat()


def _now() -> str:
    """Lambda's JSON ``time``: ``2026-12-06T06:20:00.123Z``."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def platform_record(kind: str, record: dict[str, Any]) -> bytes:
    """One JSON platform record, as Lambda writes it to the log group."""
    return orjson.dumps({"time": _now(), "type": kind, "record": record}) + b"\n"


class InvocationLog(NamedTuple):
    function: str
    request_id: str
    version: str
    output: bytes  # what the function printed (Init output first on a cold start)
    error_line: bytes  # a line Lambda adds for a failure, or b""
    duration_ms: float
    memory_mb: int
    max_memory_mb: int
    init_ms: float | None  # set on a cold start only
    # None: the output is written with this record. Otherwise START and the
    # output were streamed already and this is what ends it (b"" or b"\n").
    streamed: bytes | None = None
    log_format: LogFormat = TEXT
    status: str = "success"  # JSON's platform.report: success, error or timeout
    # Set on a cold start from a SnapStart template (then init_ms is None): reported
    # as Lambda reports a restore, billed rounded up to the millisecond.
    restore_ms: float | None = None

    def render(self, whole: bool = True) -> bytes:
        """The record; only what follows the streamed output unless ``whole``."""
        if self.log_format.json:
            return self._render_json(whole)
        report = (
            f"REPORT RequestId: {self.request_id}\tDuration: {self.duration_ms:.2f} ms\t"
            f"Billed Duration: {max(1, math.ceil(self.duration_ms))} ms\t"
            f"Memory Size: {self.memory_mb} MB\tMax Memory Used: {self.max_memory_mb} MB\t"
        )
        if self.init_ms is not None:
            report += f"Init Duration: {self.init_ms:.2f} ms\t"
        if self.restore_ms is not None:
            report += (
                f"Restore Duration: {self.restore_ms:.2f} ms\t"
                f"Billed Restore Duration: {math.ceil(self.restore_ms)} ms\t"
            )
        if not whole and self.streamed is not None:
            head, output = b"", self.streamed
        else:
            head, output = _start_line(self.request_id, self.version), self.output
            if output and not output.endswith(b"\n"):
                output += b"\n"
        return b"".join(
            (
                head,
                output,
                self.error_line,
                f"END RequestId: {self.request_id}\n".encode(),
                report.encode(),
                b"\n",
            )
        )

    def _render_json(self, whole: bool) -> bytes:
        shows = self.log_format.shows
        if not whole and self.streamed is not None:
            head, output = b"", self.streamed
        else:
            head = _start_record(self.request_id, self.version, self.log_format)
            output = self.output
            if output and not output.endswith(b"\n"):
                output += b"\n"
        metrics: dict[str, Any] = {
            "durationMs": round(self.duration_ms, 2),
            "billedDurationMs": max(1, math.ceil(self.duration_ms)),
            "memorySizeMB": self.memory_mb,
            "maxMemoryUsedMB": self.max_memory_mb,
        }
        if self.init_ms is not None:
            metrics["initDurationMs"] = round(self.init_ms, 2)
        if self.restore_ms is not None:
            metrics["restoreDurationMs"] = round(self.restore_ms, 2)
            metrics["billedRestoreDurationMs"] = math.ceil(self.restore_ms)
        done = {"requestId": self.request_id, "status": self.status}
        report = {**done, "metrics": metrics}
        return b"".join(
            (
                head,
                output,
                self.error_line,
                platform_record("platform.runtimeDone", done)
                if shows("platform.runtimeDone")
                else b"",
                platform_record("platform.report", report) if shows("platform.report") else b"",
            )
        )

    def tail(self) -> str:
        """``X-Amz-Log-Result``: base64 of the last 4 KB of this invocation's log."""
        return base64.b64encode(self.render()[-TAIL_BYTES:]).decode()


def _start_line(request_id: str, version: str) -> bytes:
    return f"START RequestId: {request_id} Version: {version}\n".encode()


def _start_record(request_id: str, version: str, log_format: LogFormat) -> bytes:
    if not log_format.json:
        return _start_line(request_id, version)
    if not log_format.shows("platform.start"):
        return b""
    return platform_record("platform.start", {"requestId": request_id, "version": version})


class OutputStream:
    """One invocation's output, handed to the log file as the sandbox sends it.

    Called by the sandbox layer with each chunk; START (and a cold start's
    Init output) is written before the first one only, so a call that prints
    nothing costs nothing here.
    """

    __slots__ = (
        "_init_log",
        "_log_format",
        "_pending",
        "_written",
        "ends_line",
        "function",
        "request_id",
        "version",
    )

    def __init__(
        self,
        pending: list[tuple[str, bytes | InvocationLog]],
        function: str,
        request_id: str,
        version: str,
        init_log: bytes,
        log_format: LogFormat = TEXT,
    ) -> None:
        self._pending = pending
        self._log_format = log_format
        self.function = function
        self.request_id = request_id
        self.version = version
        self._init_log = init_log  # a cold start's Init output, written after START
        self._written = -1  # bytes written so far; -1: nothing yet
        self.ends_line = True

    def _head(self) -> bytes:
        init_log = self._init_log
        if init_log and not init_log.endswith(b"\n"):
            init_log += b"\n"
        return _start_record(self.request_id, self.version, self._log_format) + init_log

    def begin(self, init_ms: float | None, init_log: bytes) -> None:
        """The call starts in its sandbox: a cold start's Init output goes after START."""
        self._init_log = init_log

    def __call__(self, data: bytes) -> None:
        if not data:
            return
        written = self._written
        if written < 0:
            self._pending.append((self.function, self._head()))
            written = 0
        size = len(data)
        if written + size <= MAX_STREAMED:
            self._pending.append((self.function, data))
            self.ends_line = data.endswith(b"\n")
        elif written <= MAX_STREAMED:  # the chunk that crosses the limit: the last one written
            kept = data[: MAX_STREAMED - written]
            if kept and not kept.endswith(b"\n"):
                kept += b"\n"
            self._pending.append((self.function, kept + TRUNCATED))
            self.ends_line = True
        self._written = written + size

    def end(self) -> bytes | None:
        """``InvocationLog.streamed``: None when nothing was written."""
        if self._written < 0:
            return None
        return b"" if self.ends_line else b"\n"


class LogStore:
    """``<root>/<function>.log``, rotated once past ``max_bytes``."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self._root = root
        self._max_bytes = max_bytes
        self._pending: list[tuple[str, bytes | InvocationLog]] = []
        self._wake = asyncio.Event()
        self._stopping = False

    def record(self, entry: InvocationLog) -> None:
        # No wake-up per record: the writer polls (see ``run``), readers flush.
        self._pending.append((entry.function, entry))

    def stream(
        self,
        function: str,
        request_id: str,
        version: str,
        init_log: bytes,
        log_format: LogFormat = TEXT,
    ) -> OutputStream:
        """A stream for one invocation's output; ``record`` its end with ``streamed``."""
        return OutputStream(self._pending, function, request_id, version, init_log, log_format)

    def raw(self, function: str, data: bytes) -> None:
        """Output a sandbox wrote straight to its fd 1 or 2, outside any record."""
        self._pending.append((function, data))
        self._wake.set()

    def _path(self, function: str) -> Path:
        return self._root / f"{function}.log"

    def flush(self) -> None:
        """Write everything pending (called by ``run``, and once more at shutdown)."""
        # Emptied in place: open OutputStreams append to this very list.
        pending = self._pending.copy()
        self._pending.clear()
        by_function: dict[str, list[bytes]] = {}
        for function, entry in pending:
            data = entry if isinstance(entry, bytes) else entry.render(whole=False)
            by_function.setdefault(function, []).append(data)
        if not by_function:
            return
        self._root.mkdir(parents=True, exist_ok=True)
        for function, chunks in by_function.items():
            path = self._path(function)
            with open(path, "ab") as handle:
                handle.write(b"".join(chunks))
                size = handle.tell()
            if size > self._max_bytes:
                os.replace(path, path.with_suffix(".log.1"))

    async def run(self, interval: float = 0.1) -> None:
        """Write records in batches every ``interval`` seconds until ``stop``."""
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            self.flush()
        self.flush()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def lines(self, function: str, request_id: str) -> str:
        """The log lines of one invocation of ``function``, from the file or the one
        rotated before it; "" when neither has them."""
        self.flush()
        for path in (self._path(function), self._path(function).with_suffix(".log.1")):
            try:
                found = lines_of(path.read_bytes(), request_id)
            except FileNotFoundError:
                continue
            if found:
                return found
        return ""

    def read(self, function: str, since: int | None) -> tuple[str, int]:
        """Log text from byte offset ``since`` (or the recent tail) and the next offset."""
        self.flush()
        path = self._path(function)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return "", 0
        start = max(0, size - DEFAULT_READ)
        if since is not None:
            start = since if 0 <= since <= size else 0  # rotated: start over
        with open(path, "rb") as handle:
            handle.seek(start)
            data = handle.read(max(0, size - start))
        if since is None and start > 0:
            data = data[data.find(b"\n") + 1 :]
        return data.decode("utf-8", "replace"), start + len(data) if since is not None else size


def lines_of(data: bytes, request_id: str) -> str:
    """The lines of ``request_id`` in log text ``data``: from its START to the end of its
    REPORT line (the output of calls running beside it may be interleaved); "" if absent."""
    start = data.rfind(b"START RequestId: " + request_id.encode())
    if start < 0:
        return ""
    report = data.find(b"REPORT RequestId: " + request_id.encode(), start)
    end = len(data) if report < 0 else data.find(b"\n", report)
    return data[start : len(data) if end < 0 else end + 1].decode("utf-8", "replace")


def error_line(request_id: str, error_type: str, message: str) -> bytes:
    """The line Lambda's runtime logs when a call fails."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    if error_type == "Sandbox.Timedout":
        return f"{stamp}Z {request_id} {message.split('Error: ', 1)[-1]}\n".encode()
    return f"[ERROR] {error_type}: {message}\n".encode()


def json_error_line(error: dict[str, Any]) -> bytes:
    """The same in the JSON log format: the error payload, stamped, at level ERROR."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    return orjson.dumps({"timestamp": stamp, "log_level": "ERROR", **error}) + b"\n"
