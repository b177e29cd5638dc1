"""ember's worker hosts (``/_ember/workers``): list them, drain one; documented in docs/api.md."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ember.api.http import endpoint, json_response
from ember.api.services import Services
from ember.scheduling.base import WorkerInfo
from ember.scheduling.roster import state_of


def worker_json(info: WorkerInfo) -> dict[str, Any]:
    load = info.load
    return {
        "id": info.worker_id,
        "address": info.address,
        "state": state_of(info).value,
        "memoryMB": info.memory_mb,
        "memoryReservedMB": load.memory_reserved_mb,
        "sandboxes": load.sandboxes,
        "maxSandboxes": info.max_sandboxes,
        "busy": load.busy,
        "runtimes": list(info.runtimes),
        "isolation": info.isolation,
        "lastHeartbeatSecondsAgo": round(info.silence, 3),
        "started": info.started,
    }


def routes(services: Services) -> list[Route]:
    roster = services.roster

    @endpoint
    async def list_workers(request: Request, request_id: str) -> Response:
        listing = await roster.list()
        body: dict[str, Any] = {"workers": [worker_json(w) for w in listing.workers]}
        if listing.note is not None:
            body["note"] = listing.note
        return json_response(body, request_id)

    @endpoint
    async def drain(request: Request, request_id: str) -> Response:
        return json_response(worker_json(await roster.drain(request.path_params["id"])), request_id)

    return [
        Route("/_ember/workers", list_workers, methods=["GET"]),
        Route("/_ember/workers/{id}/drain", drain, methods=["POST"]),
    ]
