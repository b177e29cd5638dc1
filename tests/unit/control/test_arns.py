from __future__ import annotations

import pytest

from ember.control.arns import Arns, parse
from ember.errors import InvalidParameterValue, ResourceNotFound, ValidationError


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


def test_an_arn_of_another_region_resolves_to_nothing() -> None:
    names = Arns("us-east-1", "000000000000")
    ref = parse("arn:aws:lambda:eu-west-1:000000000000:function:f")
    with pytest.raises(ResourceNotFound, match="Functions from 'eu-west-1' are not reachable"):
        names.resolve(ref)
    assert names.resolve(parse("arn:aws:lambda:us-east-1:000000000000:function:f")) == "f"


@pytest.mark.parametrize("qualifier", ["bad!", "a/b", "x" * 129])
def test_a_qualifier_parameter_is_checked_like_lambda(qualifier: str) -> None:
    with pytest.raises(ValidationError, match="at 'qualifier'"):
        parse("f", qualifier)
