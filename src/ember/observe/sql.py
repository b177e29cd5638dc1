"""What the SQLite and PostgreSQL history stores share: columns, rows, statements.

Statements are written with ``{m}`` for the placeholder (``?`` or ``%s``).
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from ember.audit.base import Position
from ember.observe.base import HistoryQuery
from ember.observe.records import InvocationRecord, Minute

# The stored columns of a record: ``InvocationRecord``'s fields, in order (after the id).
COLUMNS: tuple[str, ...] = (
    "function",
    "request_id",
    "version",
    "origin",
    "start",
    "duration_ms",
    "billed_ms",
    "init_ms",
    "outcome",
    "error_type",
    "memory_size_mb",
    "memory_used_mb",
    "sandbox_id",
    "trace_id",
    "node",
)
MINUTE_COLUMNS = (
    "function",
    "minute",
    "node",
    "invocations",
    "errors",
    "throttles",
    "max_concurrency",
    "durations",
)


def insert_sql(m: str) -> str:
    return (
        f"INSERT INTO invocations ({', '.join(COLUMNS)}) VALUES ({', '.join([m] * len(COLUMNS))})"
    )


def upsert_minute_sql(m: str) -> str:
    """Replaces the node's row of the minute: each write carries the whole minute."""
    updated = ", ".join(f"{c} = excluded.{c}" for c in MINUTE_COLUMNS[3:])
    return (
        f"INSERT INTO invocation_minutes ({', '.join(MINUTE_COLUMNS)}) "
        f"VALUES ({', '.join([m] * len(MINUTE_COLUMNS))}) "
        f"ON CONFLICT (function, minute, node) DO UPDATE SET {updated}"
    )


def trim_sql(m: str) -> str:
    """The position of the oldest record of the function to keep (in the order pages
    read, on the same index); everything before it goes."""
    return (
        f"DELETE FROM invocations WHERE function = {m} AND (start, id) < "
        f"(SELECT start, id FROM invocations WHERE function = {m} "
        f"ORDER BY start DESC, id DESC LIMIT 1 OFFSET {m})"
    )


def series_sql(m: str) -> str:
    return (
        f"SELECT {', '.join(MINUTE_COLUMNS)} FROM invocation_minutes "
        f"WHERE function = {m} AND minute >= {m} AND minute < {m} ORDER BY minute"
    )


def minute_row(minute: Minute, node: str) -> tuple[object, ...]:
    return (
        minute.function,
        minute.minute,
        node,
        minute.invocations,
        minute.errors,
        minute.throttles,
        minute.max_concurrency,
        orjson.dumps(minute.counts()).decode(),
    )


def from_row(row: Sequence[object]) -> tuple[InvocationRecord, Position]:
    """``(id, *COLUMNS)`` as read back by either backend."""
    id_, *values = row
    (fn, rid, version, origin, start, duration, billed, init, outcome, error, size, used, sid) = (
        values[:13]
    )
    trace_id, node = values[13:15]
    record = InvocationRecord(
        str(fn),
        str(rid),
        str(version),
        str(origin),
        float(start),  # type: ignore[arg-type]
        float(duration),  # type: ignore[arg-type]
        int(billed),  # type: ignore[call-overload]
        None if init is None else float(init),  # type: ignore[arg-type]
        str(outcome),
        None if error is None else str(error),
        int(size),  # type: ignore[call-overload]
        int(used),  # type: ignore[call-overload]
        str(sid),
        str(trace_id),
        str(node),
    )
    return record, Position(record.start, int(id_))  # type: ignore[call-overload]


def minute_of(row: Sequence[object]) -> Minute:
    """A row of MINUTE_COLUMNS as read back (the node is not kept)."""
    function, minute, _node, invocations, errors, throttles, concurrency, durations = row
    return Minute(
        str(function),
        int(minute),  # type: ignore[call-overload]
        int(invocations),  # type: ignore[call-overload]
        int(errors),  # type: ignore[call-overload]
        int(throttles),  # type: ignore[call-overload]
        int(concurrency),  # type: ignore[call-overload]
        [int(n) for n in orjson.loads(str(durations))],
    )


def select_sql(query: HistoryQuery, m: str) -> tuple[str, list[object]]:
    """The SELECT of ``query`` (one row beyond its limit)."""
    where = [f"function = {m}"]
    params: list[object] = [query.function]
    if query.since is not None:
        where.append(f"start >= {m}")
        params.append(query.since)
    if query.until is not None:
        where.append(f"start < {m}")
        params.append(query.until)
    if query.outcomes:
        where.append(f"outcome IN ({', '.join([m] * len(query.outcomes))})")
        params += list(query.outcomes)
    if query.after is not None:
        where.append(f"(start, id) < ({m}, {m})")
        params += [query.after.time, query.after.id]
    sql = (
        f"SELECT id, {', '.join(COLUMNS)} FROM invocations WHERE {' AND '.join(where)} "
        f"ORDER BY start DESC, id DESC LIMIT {m}"
    )
    return sql, [*params, query.limit + 1]


def find_sql(m: str) -> str:
    return (
        f"SELECT id, {', '.join(COLUMNS)} FROM invocations WHERE request_id = {m} "
        "ORDER BY start DESC, id DESC LIMIT 100"
    )
