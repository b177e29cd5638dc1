"""Observability routes: ``/metrics``, a function's invocation history and series,
one invocation by request id, and the counters ``ember top`` shows.

``GET /_ember/functions/{name}/invocations``: ``since``/``until`` (as the audit
log's: ISO 8601, Unix seconds or an age such as ``10m``), ``outcome`` (success,
error, timeout; repeat it or separate with commas), ``limit`` 1..1000 (default
50) and ``next`` (the previous page's ``NextMarker``). Who may reach
``/metrics`` unsigned is the Frontend's decision (``api.app``).
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ember.api import names
from ember.api.audit import iso, parse_instant, parse_limit, parse_marker
from ember.api.http import endpoint, json_response
from ember.api.services import Services
from ember.control import arns
from ember.errors import InvalidParameterValue, ResourceNotFound
from ember.observe.base import DEFAULT_LIMIT, HistoryQuery
from ember.observe.metrics import CONTENT_TYPE
from ember.observe.recorder import Recorder
from ember.observe.records import DURATION_BOUNDS_MS, OUTCOMES, InvocationRecord

METRICS_PATH = "/metrics"
# The console plots a day; a longer range is refused rather than silently cut.
MAX_SERIES_SECONDS = 25 * 3600


def parse_outcomes(values: list[str]) -> tuple[str, ...]:
    outcomes = tuple(o.strip() for value in values for o in value.split(",") if o.strip())
    unknown = [o for o in outcomes if o not in OUTCOMES]
    if unknown:
        raise InvalidParameterValue(
            f"Invalid outcome {unknown[0]!r}: one of {', '.join(OUTCOMES)}."
        )
    return outcomes


def document(record: InvocationRecord) -> dict[str, object]:
    body = record.document(iso(record.start))
    body["FunctionName"] = arns.bare(record.function)
    return body


def routes(services: Services) -> list[Route]:
    if services.recorder is None:
        return []
    recorder: Recorder = services.recorder

    def function_key(request: Request) -> str:
        ref = names.function(request.scope, services.arns, request.path_params["name"])
        if services.registry.lookup(ref.key) is None:
            raise ResourceNotFound(f"Function not found: {services.arns.function(ref.key)}")
        return ref.key

    @endpoint
    async def list_invocations(request: Request, request_id: str) -> Response:
        key = function_key(request)
        params, now = request.query_params, time.time()
        since, until = params.get("since"), params.get("until")
        limit = parse_limit(params.get("limit")) if "limit" in params else DEFAULT_LIMIT
        query = HistoryQuery(
            function=key,
            since=None if since is None else parse_instant("since", since, now),
            until=None if until is None else parse_instant("until", until, now),
            outcomes=parse_outcomes(params.getlist("outcome")),
            limit=limit,
            after=parse_marker(params.get("next")),
        )
        page = await recorder.query(query)
        body = {
            "Invocations": [document(record) for record in page.records],
            "NextMarker": page.next.marker() if page.next else None,
        }
        return json_response(body, request_id)

    @endpoint
    async def get_invocation(request: Request, request_id: str) -> Response:
        wanted = request.path_params["id"]
        records = [
            record
            for record in await recorder.find(wanted)
            if names.owned(request.scope, services.arns, record.function)
        ]
        if not records:
            raise ResourceNotFound(f"No invocation with request id {wanted} is recorded.")
        newest = records[0]
        body = {
            "Invocation": document(newest),
            # An async event's earlier attempts share its request id.
            "Attempts": [document(record) for record in records],
            "Logs": services.logs.lines(newest.function, wanted),
        }
        return json_response(body, request_id)

    @endpoint
    async def series(request: Request, request_id: str) -> Response:
        key = function_key(request)
        params, now = request.query_params, time.time()
        since = parse_instant("since", params.get("since", "1h"), now)
        until = parse_instant("until", params["until"], now) if "until" in params else now + 60
        if not 0 < until - since <= MAX_SERIES_SECONDS + 60:
            raise InvalidParameterValue(
                f"Invalid range: since must be before until, at most {MAX_SERIES_SECONDS} s apart."
            )
        points = await recorder.series(key, int(since), int(until))
        body = {"FunctionName": arns.bare(key), "Points": [p.document() for p in points]}
        return json_response(body, request_id)

    @endpoint
    async def top(request: Request, request_id: str) -> Response:
        rows = [
            {
                "FunctionName": arns.bare(row.function),
                "Invocations": row.invocations,
                "Errors": row.errors,
                "Throttles": row.throttles,
                "ColdStarts": row.cold_starts,
                "ConcurrentExecutions": row.concurrent,
                "DurationBuckets": row.durations,
            }
            for row in recorder.snapshot()
            if names.owned(request.scope, services.arns, row.function)
        ]
        body = {
            "Time": time.time(),
            "Node": services.node.node_id,
            "DurationBoundsMs": list(DURATION_BOUNDS_MS),
            "Functions": rows,
        }
        return json_response(body, request_id)

    async def metrics(request: Request) -> Response:
        exposition = services.metrics
        if exposition is None:
            return Response(b"", status_code=404)
        return Response(exposition.render(), media_type=CONTENT_TYPE)

    return [
        Route("/_ember/functions/{name}/invocations", list_invocations, methods=["GET"]),
        Route("/_ember/functions/{name}/series", series, methods=["GET"]),
        Route("/_ember/invocations/{id}", get_invocation, methods=["GET"]),
        Route("/_ember/top", top, methods=["GET"]),
        Route(METRICS_PATH, metrics, methods=["GET"]),
    ]
