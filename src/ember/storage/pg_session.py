"""Dedicated PostgreSQL sessions (the feed's LISTEN, each duty's lock) and their reconnects.

These sessions stay outside the pool: a LISTEN and a session advisory lock
belong to one server session for as long as it lives, and a pooled
connection is shared and recycled.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from ember.storage.postgres import Database, redact

log = logging.getLogger("ember.storage")

Session = psycopg.AsyncConnection[tuple[Any, ...]]

CONNECT_TIMEOUT_SECONDS = 5

# The server ends the session of a node that stopped answering (host down,
# network cut) within about 9 s instead of the kernel's two hours, so the
# node's duties go to another node. A killed process's session ends at once.
_SERVER_KEEPALIVE = (
    "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 "
    "-c tcp_keepalives_count=2 -c tcp_user_timeout=9000"
)


async def dedicated(database: Database, role: str) -> Session:
    """A new autocommit session, named ``ember <role> <node_id>`` in pg_stat_activity."""
    options = conninfo_to_dict(database.url).get("options", "")
    return await psycopg.AsyncConnection.connect(
        database.url,
        autocommit=True,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        application_name=session_name(database, role),
        options=f"{options} {_SERVER_KEEPALIVE}".strip(),
    )


def session_name(database: Database, role: str) -> str:
    """The application_name of this node's dedicated session for ``role``."""
    return f"ember {role} {database.node_id}"[:63]  # NAMEDATALEN - 1


class Reconnect:
    """The delay before the next attempt (``first`` doubling up to ``limit``); an
    outage is logged once when it begins and once when it ends, not per attempt."""

    def __init__(self, what: str, database: Database, first: float = 0.2, limit: float = 5.0):
        self._what = what
        self._url = redact(database.url)
        self._first = first
        self._limit = limit
        self._delay = first
        self._failing = False

    def failed(self, exc: BaseException) -> float:
        """Record a lost or refused session; returns how long to wait before retrying."""
        if not self._failing:
            self._failing = True
            log.warning(
                "%s lost its database session (%s: %s); reconnecting to %s",
                self._what,
                type(exc).__name__,
                str(exc).strip() or "no detail",
                self._url,
            )
        delay, self._delay = self._delay, min(self._delay * 2, self._limit)
        return delay

    def succeeded(self) -> None:
        if self._failing:
            log.info("%s reconnected to %s", self._what, self._url)
        self._failing = False
        self._delay = self._first
