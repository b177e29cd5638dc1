"""Every Lambda request body type-checked against botocore's model of the operation.

boto3 checks types before it sends, so only a hand-written or fuzzed client
can send ``"RoutingConfig": "x"`` or ``"Environment": {"Variables": {"K": 5}}``;
Lambda refuses those with a 400 that names the member. Without this, a wrong
type either slips through (a string where a structure belongs reads as
"absent") or surfaces as a misleading message about another field. One walk
over the model's input shape covers every structure of every operation, so no
service has to remember to check its own nesting. Only types are judged here;
values (patterns, ranges, Lambda's semantic rules) stay with the services,
which have Lambda's exact messages. Members the model does not know pass
untouched (ember's extensions).
"""

from __future__ import annotations

import functools
from typing import Any

import botocore.session
from botocore.model import (
    ListShape,
    MapShape,
    OperationModel,
    ServiceModel,
    Shape,
    StructureShape,
)

from ember.errors import ValidationError

# Python types a JSON value of each botocore type may arrive as.
_SCALARS: dict[str, tuple[type, ...]] = {
    "string": (str,),
    # base64 in JSON; a large package stays a view of the body (ember.packagejson)
    "blob": (str, memoryview),
    "boolean": (bool,),
    "integer": (int,),
    "long": (int,),
    "float": (int, float),
    "double": (int, float),
    "timestamp": (str, int, float),
}
_NAMES = {
    "structure": "an object",
    "list": "a list",
    "map": "a map",
    "boolean": "a boolean",
    "integer": "an integer",
    "long": "an integer",
    "float": "a number",
    "double": "a number",
    "blob": "a base64 string",
    "timestamp": "a timestamp",
}


@functools.cache
def _model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("lambda")


@functools.cache
def _operation(name: str) -> OperationModel:
    return _model().operation_model(name)


def check(operation: str, body: dict[str, Any]) -> None:
    """Raise ValidationException naming the first member of ``body`` whose type is wrong."""
    shape = _operation(operation).input_shape
    if shape is not None:
        _structure(shape, body, "", top=True)


def _structure(shape: StructureShape, value: dict[str, Any], path: str, top: bool = False) -> None:
    for name, member in shape.members.items():
        if name not in value or value[name] is None:
            continue
        if top and member.serialization.get("location"):
            continue  # a URI, query or header member: never read from the body
        _value(member, value[name], _join(path, name))


def _value(shape: Shape, value: Any, path: str) -> None:
    kind = shape.type_name
    if not _is(kind, value):
        expected = _NAMES.get(kind, f"a {kind}")
        raise ValidationError.constraint(_shown(value), path, f"Member must be {expected}")
    if isinstance(shape, StructureShape):
        _structure(shape, value, path)
    elif isinstance(shape, ListShape):
        for item in value:
            _value(shape.member, item, f"{path}.member")
    elif isinstance(shape, MapShape):
        for key, item in value.items():
            _value(shape.value, item, f"{path}.{key}")


def _is(kind: str, value: Any) -> bool:
    if kind == "structure" or kind == "map":
        return isinstance(value, dict)
    if kind == "list":
        return isinstance(value, list)
    allowed = _SCALARS.get(kind)
    if allowed is None:
        return True
    if isinstance(value, bool) and bool not in allowed:
        return False  # JSON true is no number
    return isinstance(value, allowed)


def _join(path: str, name: str) -> str:
    """Lambda's member path: each name with a lower-case first letter, dotted."""
    member = name[:1].lower() + name[1:]
    return f"{path}.{member}" if path else member


def _shown(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 64 else text[:61] + "..."
