"""What each console page shows, read from the services the API uses (never SQL).

Every read is authorized first as the API request that would read the same
data (``Access`` from the API's own route table), so a policy written for the
API governs the console too: a user denied ``lambda:ListFunctions`` cannot list
functions here either. Functions are storage keys; pages show bare names.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote

from ember.api import names
from ember.api.concurrency import limits_document
from ember.api.queue import dead_letter_json
from ember.api.services import Services
from ember.api.workers import worker_json
from ember.auth.base import PRINCIPAL_SCOPE_KEY, Authorizer
from ember.auth.principals import Principal
from ember.control import arns
from ember.control.arns import Arns
from ember.control.models import FunctionRecord
from ember.errors import ResourceNotFound
from ember.invoke.service import InvokeCommand, InvokeResult
from ember.observe.base import HistoryPage, HistoryQuery
from ember.observe.records import SeriesPoint

API = "/2015-03-31/functions"
FUNCTIONS_PAGE = 50
HOUR, DAY = 3600, 86400
RANGES = {"1h": HOUR, "24h": DAY}


@dataclass(frozen=True)
class FunctionRow:
    """One line of the functions table: the last hour's counts and a sparkline's points."""

    record: FunctionRecord
    invocations: int
    errors: int
    per_minute: list[int]  # the last hour, oldest first, 0 for minutes without calls


class Console:
    """The reads and the few actions of the console, for one ``principal`` at a time."""

    def __init__(self, services: Services, authorizer: Authorizer) -> None:
        self.services = services
        self._authorizer = authorizer

    def scope_of(self, principal: Principal) -> dict[str, Any]:
        """A scope for ``ember.api.names``: who is asking decides which account's names."""
        return {PRINCIPAL_SCOPE_KEY: principal}

    async def allow(self, principal: Principal, method: str, path: str, query: str = "") -> None:
        """Raise AccessDenied unless ``principal`` may make the API request ``method path``."""
        access = self._authorizer.access_of(principal, method, path, query)
        await self._authorizer.authorize(principal, access)

    def key(self, principal: Principal, name: str) -> str:
        key = names.function(self.scope_of(principal), self.services.arns, name).key
        if self.services.registry.lookup(key) is None:
            raise ResourceNotFound(f"Function not found: {self.services.arns.function(key)}")
        return key

    # -- functions ------------------------------------------------------------

    async def functions(
        self, principal: Principal, marker: str | None
    ) -> tuple[list[FunctionRow], str | None]:
        await self.allow(principal, "GET", API)
        page = self.services.registry.page(
            marker, FUNCTIONS_PAGE, account=names.account(self.scope_of(principal), self.arns)
        )
        now = int(time.time())
        rows = [await self._row(record, now) for record in page.functions]
        return rows, page.next_marker

    async def _row(self, record: FunctionRecord, now: int) -> FunctionRow:
        points = await self._series(record.name, now - HOUR, now + 60)
        per_minute = minutes_of(points, now - HOUR, now, "invocations")
        return FunctionRow(
            record,
            sum(p.invocations for p in points),
            sum(p.errors for p in points),
            per_minute,
        )

    async def _series(self, key: str, since: int, until: int) -> list[SeriesPoint]:
        recorder = self.services.recorder
        return [] if recorder is None else await recorder.series(key, since, until)

    # -- one function -----------------------------------------------------------

    async def function(self, principal: Principal, name: str) -> dict[str, Any]:
        await self.allow(principal, "GET", f"{API}/{quote(name)}")
        key = self.key(principal, name)
        registry = self.services.registry
        versions, _ = registry.versions_page(key, None, 50)
        aliases, _ = registry.aliases_page(key, None, None, 50)
        return {
            "record": registry.get(key),
            "bare": arns.bare(key),
            "arn": self.arns.function(key),
            "versions": versions,
            "aliases": [alias.configuration(self.arns) for alias in aliases],
            "limits": limits_document(arns.bare(key), self.services.throttle.limits.get(key)),
        }

    async def series(self, principal: Principal, name: str, window: int) -> dict[str, Any]:
        """uPlot's data: ``[times, invocations, errors, throttles, p50, p99, concurrency]``,
        one column per minute of the window (0, or null for durations, without calls)."""
        await self.allow(principal, "GET", f"/_ember/functions/{quote(name)}/series")
        key = self.key(principal, name)
        now = int(time.time())
        since = now - window
        points = await self._series(key, since, now + 60)
        columns = ["invocations", "errors", "throttles", "p50_ms", "p99_ms", "max_concurrency"]
        return {
            "function": arns.bare(key),
            "data": [
                [minute * 60 for minute in range(since // 60, now // 60 + 1)],
                *(minutes_of(points, since, now, column) for column in columns),
            ],
        }

    async def history(self, principal: Principal, name: str, query: HistoryQuery) -> HistoryPage:
        await self.allow(principal, "GET", f"/_ember/functions/{quote(name)}/invocations")
        recorder = self.services.recorder
        if recorder is None:
            return HistoryPage([], None)
        return await recorder.query(query, fresh=True)

    async def logs(self, principal: Principal, name: str, since: int | None) -> tuple[str, int]:
        await self.allow(principal, "GET", f"/_ember/functions/{quote(name)}/logs")
        return self.services.logs.read(self.key(principal, name), since)

    async def invoke(self, principal: Principal, name: str, payload: bytes) -> InvokeResult:
        """The Test form's call: a RequestResponse Invoke with the log tail, as the API's."""
        await self.allow(principal, "POST", f"{API}/{quote(name)}/invocations")
        command = InvokeCommand(
            function=self.key(principal, name),
            payload=payload,
            log_tail=True,
            caller=principal.arn,
            account=principal.account_id,
        )
        return await self.services.invocations.invoke(command)

    # -- the async queue ------------------------------------------------------------

    async def queue(self, principal: Principal) -> list[dict[str, Any]]:
        await self.allow(principal, "GET", "/_ember/queue")
        if self.services.asynchronous is None:
            return []
        scope = self.scope_of(principal)
        return [
            {**asdict(stats), "function": arns.bare(stats.function)}
            for stats in await self.services.asynchronous.queue.statistics()
            if names.owned(scope, self.arns, stats.function)
        ]

    async def dead_letters(self, principal: Principal, name: str) -> list[dict[str, Any]]:
        await self.allow(principal, "GET", f"/_ember/functions/{quote(name)}/dead-letters")
        if self.services.asynchronous is None:
            return []
        letters = await self.services.asynchronous.queue.dead_letters(
            self.key(principal, name), None, 100
        )
        return [dead_letter_json(letter, with_payload=True) for letter in letters]

    async def redrive(self, principal: Principal, name: str, ids: Sequence[str] | None) -> int:
        path = f"/_ember/functions/{quote(name)}/dead-letters/redrive"
        await self.allow(principal, "POST", path)
        if self.services.asynchronous is None:
            return 0
        queue = self.services.asynchronous.queue
        return await queue.redrive(self.key(principal, name), list(ids) if ids else None)

    # -- the platform ---------------------------------------------------------------

    async def sandboxes(self, principal: Principal) -> dict[str, Any]:
        await self.allow(principal, "GET", "/_ember/sandboxes")
        scope = self.scope_of(principal)
        mine = [
            {**sandbox, "function": arns.bare(str(sandbox["function"]))}
            for sandbox in await self.services.executor.sandboxes()
            if names.owned(scope, self.arns, str(sandbox["function"]))
        ]
        return {"sandboxes": mine, "workers": await self._workers(principal)}

    async def _workers(self, principal: Principal) -> list[dict[str, Any]] | None:
        """The cluster's worker hosts (``/_ember/workers``), for whoever may list them;
        None on an embedded node, which has none."""
        if self.services.roster.membership is None:
            return None
        await self.allow(principal, "GET", "/_ember/workers")
        listing = await self.services.roster.list()
        return [worker_json(info) for info in listing.workers]

    async def limits(self, principal: Principal) -> list[dict[str, Any]]:
        await self.allow(principal, "GET", "/_ember/limits")
        scope = self.scope_of(principal)
        return [
            limits_document(arns.bare(key), rules)
            for key, rules in sorted(self.services.throttle.limits.rules.items())
            if names.owned(scope, self.arns, key)
        ]

    @property
    def arns(self) -> Arns:
        return self.services.arns


def minutes_of(points: list[SeriesPoint], since: int, now: int, column: str) -> list[Any]:
    """``column`` of ``points`` at every minute from ``since`` to ``now``: 0 for counts
    and None for durations where a minute had no calls (uPlot leaves a gap)."""
    by_minute = {point.time // 60: point for point in points}
    absent = None if column.endswith("_ms") else 0
    return [
        getattr(by_minute[minute], column) if minute in by_minute else absent
        for minute in range(since // 60, now // 60 + 1)
    ]


__all__ = ["RANGES", "Console", "FunctionRow", "minutes_of"]
