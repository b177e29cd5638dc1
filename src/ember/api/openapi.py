"""The OpenAPI 3 description of the API ember serves (``GET /openapi.json``).

Nothing is described by hand: the Lambda operations come from botocore's service
model (the same file boto3 speaks from), kept to those whose method and path one of
ember's routes answers, with every shape's constraints (min/max, pattern, enum) and
every member's location (uri, querystring, header, body, payload). ember's own routes
(``/_ember/...``) are listed from the router with their path parameters and a JSON
body; their bodies are not modelled beyond that. Errors of every operation share
Lambda's error shape (``x-amzn-ErrorType`` names it, ``message``/``Message`` says it).
Two small tables amend the model, each entry with its reason: where ember knowingly
differs from Lambda (``_EMBER_DIFFERS``), and the success codes Lambda documents beyond
the model's one (``_ALSO_SUCCEEDS``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from typing import Any

from botocore.loaders import create_loader

PATH = "/openapi.json"
SERVICE = "lambda"
ERROR_SCHEMA = "LambdaError"
# botocore's location of a member -> OpenAPI's ``in`` of its parameter.
_PARAMETER_IN = {"uri": "path", "querystring": "query", "header": "header"}
_NUMBERS = {"integer": "integer", "long": "integer", "float": "number", "double": "number"}
_TEMPLATE = re.compile(r"\{([A-Za-z0-9_]+)\+?\}")
_STARLETTE_PARAM = re.compile(r"\{([A-Za-z0-9_]+)(?::[a-z]+)?\}")

Shape = dict[str, Any]
Served = Callable[[str, str], bool]


def describe(served: Served, own_routes: Iterable[tuple[str, str]], version: str) -> dict[str, Any]:
    """The OpenAPI document: Lambda's operations that ``served(method, path)`` answers,
    then ember's ``own_routes`` ((method, Starlette path) pairs)."""
    model = service_model()
    converter = _Converter(_as_ember_serves(model["shapes"]))
    paths: dict[str, dict[str, Any]] = {}
    # Where two operations share a path (ListLayers, GetLayerVersionByArn's ?find=),
    # the one without a fixed query is described.
    for name, operation in sorted(model["operations"].items(), key=_fixed_query_last):
        http = operation["http"]
        path, _, fixed_query = http["requestUri"].partition("?")
        method = http["method"].lower()
        if method in paths.get(path, {}) or not served(http["method"], _sample(path)):
            continue  # not served, or a second operation on one path (GetLayerVersionByArn)
        paths.setdefault(path, {})[method] = converter.operation(name, operation, fixed_query)
    for method, route in own_routes:
        path = _STARLETTE_PARAM.sub(r"{\1}", route)
        paths.setdefault(path, {})[method.lower()] = _own_operation(method, path)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "ember: the AWS Lambda API, and ember's own routes",
            "version": version,
            "description": "Derived at start-up from botocore's Lambda service model "
            f"(API version {model['metadata']['apiVersion']}) and ember's router. "
            "Every route but /health and this document is signed with SigV4 "
            "(service lambda).",
        },
        "paths": paths,
        "components": {"schemas": {ERROR_SCHEMA: _ERROR, **converter.schemas}},
    }


# Where ember knowingly differs from Lambda, and why (DESIGN.md's deviations).
_EMBER_DIFFERS: dict[str, Shape] = {
    # A function URL is under ember's own address (http://host:port/url/name/), shorter
    # than Lambda's https://<id>.lambda-url.<region>.on.aws/.
    "FunctionUrl": {"min": 1},
    # SnapStart's ApplyOn takes ember's extension too (a template for $LATEST).
    "SnapStartApplyOn": {"enum": ["PublishedVersions", "None", "LatestAndPublished"]},
}


# Success codes Lambda documents beyond the model's one responseCode.
_ALSO_SUCCEEDS: dict[str, dict[str, str]] = {
    "Invoke": {"202": "queued (InvocationType Event)", "204": "validated (InvocationType DryRun)"},
    "InvokeWithResponseStream": {"204": "validated (InvocationType DryRun)"},
}


def _as_ember_serves(shapes: dict[str, Shape]) -> dict[str, Shape]:
    return {name: {**shape, **_EMBER_DIFFERS.get(name, {})} for name, shape in shapes.items()}


def _fixed_query_last(item: tuple[str, Shape]) -> tuple[bool, str]:
    return "?" in item[1]["http"]["requestUri"], item[0]


@functools.cache
def service_model() -> dict[str, Any]:
    """botocore's Lambda service model (loaded once)."""
    model: dict[str, Any] = create_loader().load_service_model(SERVICE, "service-2")
    return model


def enum_of(shape: str) -> frozenset[str]:
    """The values Lambda's model allows for the string ``shape`` (e.g. "Runtime")."""
    return frozenset(service_model()["shapes"][shape]["enum"])


def _sample(path: str) -> str:
    """``path`` with every parameter filled, to ask the router whether it is served."""
    return _TEMPLATE.sub("x", path)


_ERROR: dict[str, Any] = {
    "type": "object",
    "description": "Lambda's error body; x-amzn-ErrorType names the error.",
    "properties": {
        "Type": {"type": "string"},
        "message": {"type": "string"},
        "Message": {"type": "string"},
    },
}


def _error_response() -> dict[str, Any]:
    return {
        "description": "Lambda's error shape",
        "headers": {"x-amzn-ErrorType": {"schema": {"type": "string"}, "required": True}},
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}}
        },
    }


def _own_operation(method: str, path: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": f"ember:{method} {path}",
        "tags": ["ember"],
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _TEMPLATE.findall(path)
        ],
        "responses": {
            "2XX": {"description": "done"},
            "4XX": _error_response(),
        },
    }
    if method in ("POST", "PUT", "PATCH"):
        operation["requestBody"] = {"content": {"application/json": {"schema": {"type": "object"}}}}
    return operation


class _Converter:
    """botocore shapes -> OpenAPI schemas (``schemas`` holds the ones referred to)."""

    def __init__(self, shapes: dict[str, Shape]) -> None:
        self._shapes = shapes
        self.schemas: dict[str, Any] = {}

    def operation(self, name: str, operation: Shape, fixed_query: str) -> dict[str, Any]:
        http = operation["http"]
        described: dict[str, Any] = {
            "operationId": name,
            "tags": ["lambda"],
            "parameters": [*self._fixed(fixed_query)],
            "responses": {
                str(http.get("responseCode", 200)): self._output(operation.get("output")),
                **{
                    code: {"description": why} for code, why in _ALSO_SUCCEEDS.get(name, {}).items()
                },
                **{str(status): _error_response() for status in self._error_statuses(operation)},
                # Any refusal answers in Lambda's error shape (authentication, size, throttle).
                "4XX": _error_response(),
            },
        }
        if "input" in operation:
            self._input(self._shapes[operation["input"]["shape"]], described)
        return described

    def _error_statuses(self, operation: Shape) -> set[int]:
        statuses = {
            self._shapes[e["shape"]]["error"]["httpStatusCode"] for e in operation.get("errors", ())
        }
        return {status for status in statuses if status < 500}

    @staticmethod
    def _fixed(query: str) -> Iterable[dict[str, Any]]:
        for pair in filter(None, query.split("&")):
            key, _, value = pair.partition("=")
            yield {
                "name": key,
                "in": "query",
                "required": True,
                "schema": {"type": "string", "enum": [value]},
            }

    def _input(self, shape: Shape, described: dict[str, Any]) -> None:
        required = set(shape.get("required", ()))
        body: dict[str, Any] = {}
        for member_name, member in shape["members"].items():
            location = member.get("location")
            if location in _PARAMETER_IN:
                described["parameters"].append(
                    {
                        "name": member.get("locationName", member_name),
                        "in": _PARAMETER_IN[location],
                        "required": location == "uri" or member_name in required,
                        "schema": self.schema(member["shape"]),
                    }
                )
            elif location is None:
                body[member_name] = member
        payload = shape.get("payload")
        if payload is not None:
            described["requestBody"] = self._payload(
                shape["members"][payload]["shape"], payload in required
            )
        elif body:
            schema = self._object(body, [name for name in body if name in required])
            described["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema}},
            }

    def _payload(self, shape_name: str, required: bool) -> dict[str, Any]:
        shape = self._shapes[shape_name]
        if shape["type"] == "blob":
            content = {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            }
        else:
            content = {"application/json": {"schema": self.schema(shape_name)}}
        return {"required": required, "content": content}

    def _output(self, output: Shape | None) -> dict[str, Any]:
        response: dict[str, Any] = {"description": "success"}
        if output is None:
            return response
        shape = self._shapes[output["shape"]]
        payload = shape.get("payload")
        if payload is not None:
            member = shape["members"][payload]["shape"]
            if self._shapes[member]["type"] == "blob":
                response["content"] = {"*/*": {"schema": {}}}  # a function's own answer
            elif self._shapes[member].get("eventstream"):
                # InvokeWithResponseStream: binary event-stream frames, as on Lambda.
                binary = {"schema": {"type": "string", "format": "binary"}}
                response["content"] = {"application/vnd.amazon.eventstream": binary}
            else:
                response["content"] = {"application/json": {"schema": self.schema(member)}}
            return response
        body = {k: m for k, m in shape["members"].items() if m.get("location") is None}
        if body:
            response["content"] = {"application/json": {"schema": self._object(body, [])}}
        return response

    def _object(self, members: dict[str, Shape], required: list[str]) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {name: self.schema(m["shape"]) for name, m in members.items()},
        }
        if required:
            schema["required"] = required
        return schema

    def schema(self, shape_name: str) -> dict[str, Any]:
        """A $ref to ``shape_name``'s schema, converted on first use."""
        if shape_name not in self.schemas:
            self.schemas[shape_name] = {}  # a placeholder first: shapes may nest themselves
            self.schemas[shape_name] = self._convert(self._shapes[shape_name])
        return {"$ref": f"#/components/schemas/{shape_name}"}

    def _convert(self, shape: Shape) -> dict[str, Any]:
        kind = shape["type"]
        if kind == "structure":
            return self._object(shape["members"], list(shape.get("required", ())))
        if kind == "list":
            return _bounded(
                {"type": "array", "items": self.schema(shape["member"]["shape"])}, shape, "Items"
            )
        if kind == "map":
            return {"type": "object", "additionalProperties": self.schema(shape["value"]["shape"])}
        if kind in _NUMBERS:
            schema: dict[str, Any] = {"type": _NUMBERS[kind]}
            if "min" in shape:
                schema["minimum"] = shape["min"]
            if "max" in shape:
                schema["maximum"] = shape["max"]
            return schema
        if kind == "boolean":
            return {"type": "boolean"}
        if kind == "string":
            return _string(shape)
        if kind == "timestamp" and shape.get("timestampFormat", "unixTimestamp") == "unixTimestamp":
            return {"type": "number"}  # rest-json's default: epoch seconds
        # an ISO-8601 timestamp, or a blob (base64 text in JSON)
        return {"type": "string"}


def _bounded(schema: dict[str, Any], shape: Shape, suffix: str) -> dict[str, Any]:
    if "min" in shape:
        schema[f"min{suffix}"] = shape["min"]
    if "max" in shape:
        schema[f"max{suffix}"] = shape["max"]
    return schema


def _string(shape: Shape) -> dict[str, Any]:
    schema = _bounded({"type": "string"}, shape, "Length")
    if "enum" in shape:
        schema["enum"] = list(shape["enum"])
    pattern = shape.get("pattern")
    if pattern is not None and _python_regex(pattern):
        # botocore's patterns (Java's) match the whole value; JSON Schema's search in it.
        schema["pattern"] = f"^(?:{pattern})$"
    return schema


def _python_regex(pattern: str) -> bool:
    """Whether ``pattern`` means the same in Python (a Java-only construct is left out)."""
    try:
        re.compile(pattern)
    except re.error:
        return False
    return "\\p{" not in pattern


__all__ = ["PATH", "describe", "enum_of", "service_model"]
