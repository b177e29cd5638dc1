"""Lambda bodies type-checked against botocore's model (api/shapes.py)."""

from __future__ import annotations

from typing import Any

import pytest

from ember.api import shapes
from ember.errors import ValidationError

WRONG = [
    ("CreateFunction", {"Code": "zip"}, "'code'", "an object"),
    ("CreateFunction", {"Code": {"ZipFile": 5}}, "'code.zipFile'", "a base64 string"),
    ("CreateFunction", {"MemorySize": True}, "'memorySize'", "an integer"),
    ("CreateFunction", {"Architectures": [1]}, "'architectures.member'", "a string"),
    (
        "UpdateFunctionConfiguration",
        {"Environment": {"Variables": []}},
        "'environment.variables'",
        "a map",
    ),
    ("UpdateAlias", {"RoutingConfig": None}, None, None),
    (
        "PutFunctionEventInvokeConfig",
        {"DestinationConfig": {"OnFailure": "arn"}},
        "'destinationConfig.onFailure'",
        "an object",
    ),
    ("AddPermission", {"Action": ["lambda:InvokeFunction"]}, "'action'", "a string"),
]


@pytest.mark.parametrize(("operation", "body", "member", "expected"), WRONG)
def test_a_wrong_type_names_its_member(
    operation: str, body: dict[str, Any], member: str | None, expected: str | None
) -> None:
    if member is None:  # null members are absent, as Lambda reads them
        shapes.check(operation, body)
        return
    with pytest.raises(ValidationError) as refused:
        shapes.check(operation, body)
    assert f"at {member} " in str(refused.value)
    assert str(refused.value).endswith(f"Member must be {expected}")


def test_right_types_and_unknown_members_pass() -> None:
    shapes.check(
        "CreateFunction",
        {
            "FunctionName": "f",
            "Code": {"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="},
            "Timeout": 3,
            "Environment": {"Variables": {"KEY": "v"}},
            "Layers": [],
            "Publish": False,
            "EmberExtension": {"anything": 1},
        },
    )
    shapes.check("UpdateAlias", {"RoutingConfig": {"AdditionalVersionWeights": {"2": 0.5}}})
