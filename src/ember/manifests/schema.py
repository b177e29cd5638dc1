"""The JSON Schema (draft 2020-12) of the ``Function`` manifest, as ``ember schema`` prints it.

The schema is the first check of every document (client and server run the
same one); what it cannot say — exactly one code source, provisioned at most
reserved, a schedule expression that parses, a tool input schema that is a
schema — is checked by ``ember.manifests.validate``. Field reference:
docs/manifests.md.
"""

from __future__ import annotations

from typing import Any

API_VERSION = "ember.dev/v1"
KIND = "Function"
MAX_MEMORY_MB = 10240
MIN_MEMORY_MB = 128
MAX_TIMEOUT_SECONDS = 900
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
LABEL_KEY_PATTERN = r"^([a-z0-9.-]+/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
RUNTIMES = (
    "python3.9",
    "python3.10",
    "python3.11",
    "python3.12",
    "python3.13",
    "python3.14",
    "nodejs20.x",
    "nodejs22.x",
    "nodejs24.x",
    "provided",
    "provided.al2",
    "provided.al2023",
)
ALGORITHMS = ("token-bucket", "leaky-bucket", "fixed-window", "sliding-window", "sliding-log")
# Lambda's SnapStart ApplyOn, then ember's extension (a template for $LATEST too).
SNAP_START_APPLY_ON = ("PublishedVersions", "None", "LatestAndPublished")


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    return schema


def _integer(minimum: int, maximum: int | None = None, description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": minimum}
    if maximum is not None:
        schema["maximum"] = maximum
    if description:
        schema["description"] = description
    return schema


_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}

METADATA = _object(
    {
        "name": {"type": "string", "pattern": NAME_PATTERN, "maxLength": 63},
        "namespace": {"type": "string", "pattern": NAME_PATTERN, "maxLength": 63},
        "labels": {
            "type": "object",
            "propertyNames": {"pattern": LABEL_KEY_PATTERN, "maxLength": 253},
            "additionalProperties": {"type": "string", "maxLength": 63},
        },
        "annotations": _STRINGS,
        # Server-set; accepted so that `ember get -o yaml` output can be re-applied.
        "uid": {"type": "string"},
        "resourceVersion": {"type": "string"},
        "generation": {"type": "integer"},
        "creationTimestamp": {"type": "string"},
        "deletionTimestamp": {"type": "string"},
    },
    required=("name",),
)

CODE = _object(
    {
        "path": {
            "type": "string",
            "minLength": 1,
            "description": "A directory or .zip file, relative to the manifest.",
        },
        "inline": {"type": "string", "minLength": 1, "maxLength": 65536},
        # Written by the CLI and the server, never by hand: the package's hex SHA-256
        # and its base64 bytes (the latter only in transit to the server).
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "zipFile": {"type": "string"},
    }
)

RATE_LIMIT = _object(
    {
        "algorithm": {"enum": list(ALGORITHMS)},
        "rate": {"type": "integer", "minimum": 1},
        "period": {"type": "string", "pattern": r"^\d*\.?\d*(s|m|h|d)$"},
        "burst": {"type": "integer", "minimum": 1},
        "scope": {"enum": ["function", "caller"]},
    },
    required=("rate",),
)

ASYNC = _object(
    {
        "maxRetryAttempts": _integer(0, 2),
        "maxEventAgeSeconds": _integer(60, 21600),
        "onSuccess": {"type": "string", "minLength": 1, "description": "a function name"},
        "onFailure": {"type": "string", "minLength": 1, "description": "a function name"},
    }
)

TRIGGER = {
    "type": "object",
    "oneOf": [
        _object(
            {
                "schedule": {"type": "string", "minLength": 1},
                "payload": {"type": "object"},
            },
            required=("schedule",),
        ),
        _object(
            {
                "url": _object(
                    {
                        "authType": {"enum": ["NONE", "AWS_IAM"]},
                        "cors": {"type": "object"},
                    }
                ),
            },
            required=("url",),
        ),
    ],
}

MCP = _object(
    {
        "expose": {"type": "boolean"},
        "toolName": {"type": "string", "pattern": r"^[A-Za-z0-9_.-]{1,128}$"},
        "title": {"type": "string"},
        "description": {"type": "string"},
        "inputSchema": {"type": "object"},
        "outputSchema": {"type": "object"},
        "annotations": {"type": "object"},
    }
)

SPEC = _object(
    {
        "runtime": {"enum": list(RUNTIMES)},
        "handler": {"type": "string", "pattern": r"^[^\s]+$", "maxLength": 128},
        "description": {"type": "string", "maxLength": 256},
        "role": {"type": "string"},
        "code": CODE,
        "memoryMB": _integer(MIN_MEMORY_MB, MAX_MEMORY_MB),
        "timeoutSeconds": _integer(1, MAX_TIMEOUT_SECONDS),
        "environment": _STRINGS,
        "layers": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "requirements": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "concurrency": _object(
            {"reserved": _integer(0), "provisioned": _integer(0, 100)},
        ),
        "rateLimit": RATE_LIMIT,
        "async": ASYNC,
        "triggers": {"type": "array", "items": TRIGGER},
        "mcp": MCP,
        "network": _object({"egress": {"type": "boolean"}}),
        "snapStart": _object(
            {"applyOn": {"enum": list(SNAP_START_APPLY_ON)}}, required=("applyOn",)
        ),
        "isolation": {"enum": ["standard", "strong"]},
        # Lambda's tags (TagResource), not labels: 50 at most, keys 1-128 characters.
        "tags": {
            "type": "object",
            "maxProperties": 50,
            "propertyNames": {"minLength": 1, "maxLength": 128, "pattern": "^(?![aA][wW][sS]:)"},
            "additionalProperties": {"type": "string", "maxLength": 256},
        },
    },
    required=("runtime", "handler", "code"),
)

CONDITION = _object(
    {
        "type": {"type": "string"},
        "status": {"enum": ["True", "False", "Unknown"]},
        "reason": {"type": "string"},
        "message": {"type": "string"},
        "observedGeneration": {"type": "integer"},
        "lastTransitionTime": {"type": "string"},
    }
)

FUNCTION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://ember.dev/schemas/v1/function.json",
    "title": "ember Function",
    **_object(
        {
            "apiVersion": {"const": API_VERSION},
            "kind": {"const": KIND},
            "metadata": METADATA,
            "spec": SPEC,
            # Written by the controller; accepted and ignored on apply.
            "status": {
                "type": "object",
                "properties": {
                    "observedGeneration": {"type": "integer"},
                    "conditions": {"type": "array", "items": CONDITION},
                },
            },
        },
        required=("apiVersion", "kind", "metadata", "spec"),
    ),
}


def function_schema() -> dict[str, Any]:
    """The published schema (a fresh copy: callers may change it)."""
    import copy

    return copy.deepcopy(FUNCTION_SCHEMA)
