"""Lambda's tagging routes (``/2017-03-31/tags/{ARN}``): parse, call FunctionTags, render.

The resource is named by its ARN, whose account says whose function it is
(authorization already decided the caller may act there); the rules live in
``ember.control.tags``.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ember.api.http import endpoint, json_response, read_json
from ember.api.services import Services
from ember.control import tags as tag_rules
from ember.errors import ValidationError

API = "/2017-03-31/tags/{arn}"


def routes(services: Services) -> list[Route]:
    tags = services.tags

    def resource(request: Request) -> str:
        return tags.resource(request.path_params["arn"])

    @endpoint
    async def tag(request: Request, request_id: str) -> Response:
        key = resource(request)
        body = await read_json(request, "TagResource")
        if body.get("Tags") is None:
            raise ValidationError.constraint(None, "tags", "Member must not be null")
        await tags.tag(key, tag_rules.check(body["Tags"]))
        return Response(status_code=204, headers={"x-amzn-RequestId": request_id})

    @endpoint
    async def untag(request: Request, request_id: str) -> Response:
        key = resource(request)
        # Repeated: ?tagKeys=a&tagKeys=b (botocore's list in the query).
        keys = [value for name, value in parse_qsl(request.url.query) if name == "tagKeys"]
        if not keys:
            raise ValidationError.constraint(None, "tagKeys", "Member must not be null")
        await tags.untag(key, keys)
        return Response(status_code=204, headers={"x-amzn-RequestId": request_id})

    @endpoint
    async def list_tags(request: Request, request_id: str) -> Response:
        return json_response({"Tags": tags.of(resource(request))}, request_id)

    return [
        Route(API, tag, methods=["POST"]),
        Route(API, untag, methods=["DELETE"]),
        Route(API, list_tags, methods=["GET"]),
    ]


__all__ = ["routes"]
