"""Lambda's layer routes (``/2018-10-31/layers``): parse, call the LayerRegistry, render."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ember.api import names, openapi
from ember.api.http import endpoint, json_response, read_json, zip_response
from ember.api.services import Services
from ember.control.arns import bare
from ember.control.layers import LayerRegistry, LayerVersion
from ember.errors import InvalidParameterValue, ValidationError
from ember.text import is_decimal

API = "/2018-10-31/layers"


def _int(raw: str | None, member: str) -> int | None:
    if raw is None:
        return None
    if not is_decimal(raw.lstrip("-")):
        raise ValidationError.constraint(raw, member, "Member must be an integer")
    return int(raw)


def _version(request: Request) -> int:
    number = _int(request.path_params["version"], "versionNumber")
    assert number is not None
    return number


def _one_of(raw: str | None, member: str, shape: str) -> str | None:
    """``raw`` if Lambda's model allows it for ``shape`` (a filter Lambda would refuse is
    refused, not silently matched against nothing)."""
    if raw is None:
        return None
    allowed = openapi.enum_of(shape)
    if raw not in allowed:
        raise ValidationError.constraint(
            raw, member, f"Member must satisfy enum value set: [{', '.join(sorted(allowed))}]"
        )
    return raw


def routes(services: Services) -> list[Route]:
    layers: LayerRegistry = services.layers

    def render(version: LayerVersion, content: bool = True) -> dict[str, Any]:
        """GetLayerVersion's shape (LayerVersionsListItem without ``content``)."""
        body: dict[str, Any] = {
            "LayerVersionArn": layers.version_arn(version.name, version.version),
            "Version": version.version,
            "Description": version.description,
            "CreatedDate": version.created,
            "CompatibleRuntimes": list(version.compatible_runtimes),
            "CompatibleArchitectures": list(version.compatible_architectures),
        }
        if version.license_info is not None:
            body["LicenseInfo"] = version.license_info
        if content:
            location = (
                f"{services.settings.endpoint_url}/_ember/layers/{quote(bare(version.name))}"
                f"/versions/{version.version}/content"
            )
            body["Content"] = {
                "Location": location,
                "CodeSha256": version.code_sha256,
                "CodeSize": version.code_size,
            }
            body["LayerArn"] = layers.layer_arn(version.name)
        return body

    def account(request: Request) -> str:
        return names.account(request.scope, services.arns)

    def paging(request: Request) -> tuple[str | None, int | None, str | None, str | None]:
        params = request.query_params
        return (
            params.get("Marker"),
            _int(params.get("MaxItems"), "maxItems"),
            _one_of(params.get("CompatibleRuntime"), "compatibleRuntime", "Runtime"),
            _one_of(params.get("CompatibleArchitecture"), "compatibleArchitecture", "Architecture"),
        )

    @endpoint
    async def publish(request: Request, request_id: str) -> Response:
        body = await read_json(request, "PublishLayerVersion", package=True)
        version = await layers.publish(request.path_params["name"], body, account(request))
        return json_response(render(version), request_id, status=201)

    @endpoint
    async def get_version(request: Request, request_id: str) -> Response:
        version = layers.get(request.path_params["name"], _version(request), account(request))
        return json_response(render(version), request_id)

    @endpoint
    async def delete_version(request: Request, request_id: str) -> Response:
        await layers.delete(request.path_params["name"], _version(request), account(request))
        return Response(status_code=204, headers={"x-amzn-RequestId": request_id})

    @endpoint
    async def list_versions(request: Request, request_id: str) -> Response:
        page = layers.list_versions(
            request.path_params["name"], *paging(request), account=account(request)
        )
        body: dict[str, Any] = {"LayerVersions": [render(v, content=False) for v in page.items]}
        if page.next_marker:
            body["NextMarker"] = page.next_marker
        return json_response(body, request_id)

    @endpoint
    async def list_or_find(request: Request, request_id: str) -> Response:
        """ListLayers, or GetLayerVersionByArn (``?find=LayerVersion&Arn=``)."""
        if request.query_params.get("find") == "LayerVersion":
            arn = request.query_params.get("Arn")
            if not arn:
                raise InvalidParameterValue("Arn is required.")
            return json_response(render(layers.get_by_arn(arn, account(request))), request_id)
        page = layers.list_layers(*paging(request), account=account(request))
        body: dict[str, Any] = {
            "Layers": [
                {
                    "LayerName": bare(name),
                    "LayerArn": layers.layer_arn(name),
                    "LatestMatchingVersion": render(latest, content=False),
                }
                for name, latest in page.items
            ]
        }
        if page.next_marker:
            body["NextMarker"] = page.next_marker
        return json_response(body, request_id)

    @endpoint
    async def content(request: Request, request_id: str) -> Response:
        """ember's download of a layer version's zip (the ``Content.Location`` URL)."""
        name = request.path_params["name"]
        data = await layers.content(name, _version(request), account(request))
        return zip_response(data, name, request_id)

    return [
        Route(API, list_or_find, methods=["GET"]),
        Route(API + "/{name}/versions", publish, methods=["POST"]),
        Route(API + "/{name}/versions", list_versions, methods=["GET"]),
        Route(API + "/{name}/versions/{version}", get_version, methods=["GET"]),
        Route(API + "/{name}/versions/{version}", delete_version, methods=["DELETE"]),
        Route("/_ember/layers/{name}/versions/{version}/content", content, methods=["GET"]),
    ]


__all__ = ["routes"]
