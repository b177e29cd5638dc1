"""The history file's writer: a process of its own, at the lowest CPU priority (SCHED_IDLE).

``SqliteHistoryStore`` (``sqlite.py``) starts it as ``python -m
ember.observe.history_writer FILE`` and sends it one request at a time on its
stdin; each gets one answer on its stdout. Both are frames: a 4-byte
big-endian length, then a JSON object (orjson). Requests: ``{"op": "write",
"records": [[...]], "minutes": [[...]]}`` (rows in ``sql.COLUMNS`` and
``sql.MINUTE_COLUMNS`` order, one transaction), ``{"op": "trim", "functions":
[...], "keep": n}``, ``{"op": "trim_series", "before": seconds}``. Answers:
``{"ok": value}`` or ``{"error": "..."}``; the first frame, ``{"ok": "ready"}``,
says the file is open and migrated. EOF on stdin ends it, after the request
in hand; SIGINT and SIGTERM do not (a Ctrl-C to the process group must not
cut a batch in half: the server closes the pipe when it is done with it).

Why a process and not a thread of the server: the writer binds every row's
values in Python, holding the GIL a few microseconds per row, thousands of
rows a second; as a thread it held up the event loop's calls (warm p50 +5 %
with recording on in bench_observability), as a process it waits for a free
core and never for the GIL.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from ember.observe import sql
from ember.storage.sqlite import open_wal

HEADER_BYTES = 4

# steps[i] takes the file from version i to i + 1 (PRAGMA user_version).
STEPS: tuple[str, ...] = (
    """
CREATE TABLE invocations (
    id INTEGER PRIMARY KEY,
    function TEXT NOT NULL,
    request_id TEXT NOT NULL,
    version TEXT NOT NULL,
    origin TEXT NOT NULL,
    start REAL NOT NULL,
    duration_ms REAL NOT NULL,
    billed_ms INTEGER NOT NULL,
    init_ms REAL,
    outcome TEXT NOT NULL,
    error_type TEXT,
    memory_size_mb INTEGER NOT NULL,
    memory_used_mb INTEGER NOT NULL,
    sandbox_id TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    node TEXT NOT NULL
);
CREATE INDEX invocations_function ON invocations (function, start, id);
CREATE INDEX invocations_request ON invocations (request_id);
CREATE TABLE invocation_minutes (
    function TEXT NOT NULL,
    minute INTEGER NOT NULL,
    node TEXT NOT NULL,
    invocations INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    throttles INTEGER NOT NULL,
    max_concurrency INTEGER NOT NULL,
    durations TEXT NOT NULL,
    PRIMARY KEY (function, minute, node)
);
CREATE INDEX invocation_minutes_minute ON invocation_minutes (minute);
""",
    # A record is its request id, start and node: written again (its batch resent after
    # the writer died between its commit and its answer), it is not stored twice.
    """
DELETE FROM invocations WHERE id NOT IN
    (SELECT MIN(id) FROM invocations GROUP BY request_id, start, node);
DROP INDEX invocations_request;
CREATE UNIQUE INDEX invocations_request ON invocations (request_id, start, node);
""",
)


def read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    """The next request, or None at EOF."""
    head = stream.read(HEADER_BYTES)
    if len(head) < HEADER_BYTES:
        return None
    body = stream.read(int.from_bytes(head, "big"))
    value: dict[str, Any] = orjson.loads(body)
    return value


def frame(value: object) -> bytes:
    body = orjson.dumps(value)
    return len(body).to_bytes(HEADER_BYTES, "big") + body


def write(db: sqlite3.Connection, request: dict[str, Any]) -> int:
    """One batch in one transaction; a record already stored is skipped."""
    records, minutes = request["records"], request["minutes"]
    with db:  # one transaction for the batch
        db.execute("BEGIN")
        db.executemany(INSERT_NEW, records)
        db.executemany(sql.upsert_minute_sql("?"), minutes)
    return len(records)


def trim(db: sqlite3.Connection, request: dict[str, Any]) -> int:
    keep = int(request["keep"])
    gone = 0
    with db:
        db.execute("BEGIN")
        for function in request["functions"]:
            gone += db.execute(sql.trim_sql("?"), (function, function, keep - 1)).rowcount
    return gone


def trim_series(db: sqlite3.Connection, request: dict[str, Any]) -> int:
    statement = "DELETE FROM invocation_minutes WHERE minute < ?"
    return db.execute(statement, (int(request["before"]) // 60,)).rowcount


INSERT_NEW = sql.insert_sql("?").replace("INSERT INTO", "INSERT OR IGNORE INTO", 1)
OPERATIONS = {"write": write, "trim": trim, "trim_series": trim_series}


def serve(path: Path, requests: BinaryIO, answers: BinaryIO) -> None:
    db = open_wal(path, STEPS, synchronous="NORMAL")
    try:
        answers.write(frame({"ok": "ready"}))
        answers.flush()
        while (request := read_frame(requests)) is not None:
            try:
                answer: dict[str, object] = {"ok": OPERATIONS[request["op"]](db, request)}
            except (sqlite3.Error, KeyError, TypeError, ValueError) as error:
                answer = {"error": f"{type(error).__name__}: {error}"}
            answers.write(frame(answer))
            answers.flush()
    finally:
        db.close()


def main() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    # Runs only on a core nothing else wants (SCHED_IDLE), so it never delays the calls
    # it records; where that policy is refused, the lowest priority of the normal one.
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)
    serve(Path(sys.argv[1]), sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
