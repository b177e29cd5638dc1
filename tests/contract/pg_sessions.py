"""Helpers of the cluster contract tests: waiting inside an event loop, and the
dedicated sessions (feed, duties) a node holds, seen from the server's side."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

import psycopg


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = 30.0
) -> None:
    """Wait until ``condition()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = condition()
        if await outcome if inspect.isawaitable(outcome) else outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.05)


async def session_pids(url: str, application_name: str) -> list[int]:
    """Server pids of the sessions named ``application_name`` on the database of ``url``."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database()",
            (application_name,),
        )
        return [int(pid) for (pid,) in await cursor.fetchall()]


async def terminate(url: str, pid: int) -> None:
    """End one server session as a crash or a network cut would (pg_terminate_backend)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
