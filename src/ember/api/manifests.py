"""The Kubernetes-style API of Function manifests, under ``/_ember/apis/ember.dev/v1``.

Parse, call ``FunctionObjects``, render. There is no route that writes
``status``: only the controller does, in-process. Documented in docs/manifests.md.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ember.api import names
from ember.api.http import endpoint, json_response, read_json
from ember.api.services import Services
from ember.control.models import FunctionRecord
from ember.control.objects import FunctionObjects, listing
from ember.manifests import API_VERSION

PREFIX = f"/_ember/apis/{API_VERSION}"


def _dry_run(request: Request) -> bool:
    return request.query_params.get("dryRun", "") in ("All", "all", "true")


def routes(services: Services) -> list[Route]:
    objects: FunctionObjects | None = services.manifests
    if objects is None:
        return []
    store: FunctionObjects = objects

    def account(request: Request) -> str:
        return names.account(request.scope, services.arns)

    def records(request: Request) -> list[FunctionRecord]:
        """The caller's account's functions."""
        marker, found = None, []
        while True:
            page = services.registry.page(marker, None, account=account(request))
            found.extend(page.functions)
            if not (marker := page.next_marker):
                return found

    def render_list(items: list[dict[str, object]], request_id: str) -> Response:
        body = {"apiVersion": API_VERSION, "kind": "FunctionList", "items": items}
        return json_response(body, request_id)

    @endpoint
    async def list_all(request: Request, request_id: str) -> Response:
        selector = request.query_params.get("labelSelector")
        found = listing(store, records(request), None, selector, account(request))
        return render_list(found, request_id)

    @endpoint
    async def list_namespace(request: Request, request_id: str) -> Response:
        selector = request.query_params.get("labelSelector")
        namespace = request.path_params["ns"]
        found = listing(store, records(request), namespace, selector, account(request))
        return render_list(found, request_id)

    @endpoint
    async def create(request: Request, request_id: str) -> Response:
        body = await store.create(
            request.path_params["ns"], await read_json(request), account(request)
        )
        return json_response(body, request_id, status=201)

    @endpoint
    async def read(request: Request, request_id: str) -> Response:
        body = store.get(request.path_params["ns"], request.path_params["name"], account(request))
        return json_response(body, request_id)

    @endpoint
    async def read_status(request: Request, request_id: str) -> Response:
        body = store.get(request.path_params["ns"], request.path_params["name"], account(request))
        return json_response(body.get("status") or {}, request_id)

    @endpoint
    async def replace(request: Request, request_id: str) -> Response:
        params = request.path_params
        body = await store.replace(
            params["ns"], params["name"], await read_json(request), account(request)
        )
        return json_response(body, request_id)

    @endpoint
    async def apply(request: Request, request_id: str) -> Response:
        params = request.path_params
        body, action = await store.apply(
            params["ns"],
            params["name"],
            await read_json(request),
            dry_run=_dry_run(request),
            account=account(request),
        )
        # The object plus what was done (created|configured|unchanged), for `ember apply`.
        return json_response({"action": action, "object": body}, request_id)

    @endpoint
    async def delete(request: Request, request_id: str) -> Response:
        body = await store.delete(
            request.path_params["ns"], request.path_params["name"], account(request)
        )
        return json_response(body, request_id)

    one = PREFIX + "/namespaces/{ns}/functions/{name}"
    return [
        Route(PREFIX + "/functions", list_all, methods=["GET"]),
        Route(PREFIX + "/namespaces/{ns}/functions", list_namespace, methods=["GET"]),
        Route(PREFIX + "/namespaces/{ns}/functions", create, methods=["POST"]),
        Route(one, read, methods=["GET"]),
        Route(one, replace, methods=["PUT"]),
        Route(one, apply, methods=["PATCH"]),
        Route(one, delete, methods=["DELETE"]),
        Route(one + "/status", read_status, methods=["GET"]),
    ]


__all__ = ["routes"]
