from __future__ import annotations

import pytest

from ember.control.arns import Arns, parse
from ember.errors import InvalidParameterValue, ValidationError


@pytest.mark.parametrize(
    ("identifier", "name", "qualifier"),
    [
        ("fn", "fn", None),
        ("fn:$LATEST", "fn", "$LATEST"),
        ("arn:aws:lambda:us-east-1:000000000000:function:fn", "fn", None),
        ("arn:aws:lambda:us-east-1:000000000000:function:fn:live", "fn", "live"),
        ("arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Afn", "fn", None),
        ("000000000000:function:fn", "fn", None),
        ("my-func_1", "my-func_1", None),
    ],
)
def test_every_spelling_resolves(identifier: str, name: str, qualifier: str | None) -> None:
    ref = parse(identifier)
    assert (ref.name, ref.qualifier) == (name, qualifier)


def test_query_qualifier_is_used_and_must_agree() -> None:
    assert parse("fn", "$LATEST").qualifier == "$LATEST"
    with pytest.raises(InvalidParameterValue, match="derived qualifier"):
        parse("fn:1", "2")


@pytest.mark.parametrize("bad", ["", "has space", "a/b", "x" * 65, "fn:"])
def test_bad_names_are_validation_errors(bad: str) -> None:
    with pytest.raises(ValidationError):
        parse(bad)


def test_arns() -> None:
    arns = Arns("eu-west-1", "123456789012")
    assert arns.function("f") == "arn:aws:lambda:eu-west-1:123456789012:function:f"
    assert arns.function("f", "$LATEST").endswith(":function:f:$LATEST")
