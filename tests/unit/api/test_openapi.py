"""The OpenAPI document is botocore's Lambda model, kept to what ember serves."""

from __future__ import annotations

from typing import Any

from ember.api import openapi


def _everything(method: str, path: str) -> bool:
    return True


def _document(served: Any = _everything) -> dict[str, Any]:
    return openapi.describe(served, [("DELETE", "/_ember/keys/{id}")], "test")


def test_members_keep_their_location_and_constraints() -> None:
    document = _document()
    invoke = document["paths"]["/2015-03-31/functions/{FunctionName}/invocations"]["post"]
    where = {parameter["name"]: parameter["in"] for parameter in invoke["parameters"]}
    assert where["FunctionName"] == "path"
    assert where["X-Amz-Invocation-Type"] == "header"
    assert where["Qualifier"] == "query"
    assert "application/octet-stream" in invoke["requestBody"]["content"]
    schemas = document["components"]["schemas"]
    assert schemas["Timeout"]["type"] == "integer"
    assert schemas["Timeout"]["minimum"] == 1
    assert schemas["InvocationType"]["enum"] == ["Event", "RequestResponse", "DryRun"]
    # Java's patterns match the whole value; JSON Schema's would search in it.
    assert schemas["FunctionName"]["pattern"].startswith("^(?:")
    assert schemas["FunctionName"]["pattern"].endswith(")$")


def test_only_the_operations_ember_serves_are_described() -> None:
    document = _document(lambda method, path: path.startswith("/2015-03-31/functions"))
    ids = {op["operationId"] for ops in document["paths"].values() for op in ops.values()}
    assert {"CreateFunction", "Invoke", "GetFunction"} <= ids
    assert "ListLayers" not in ids
    assert "ember:DELETE /_ember/keys/{id}" in ids


def test_errors_answer_in_lambdas_shape_and_codes_are_lambdas() -> None:
    create = _document()["paths"]["/2015-03-31/functions"]["post"]
    assert "201" in create["responses"]
    for status in ("400", "404", "409", "4XX"):
        headers = create["responses"][status]["headers"]
        assert headers["x-amzn-ErrorType"]["required"] is True


def test_a_path_two_operations_share_describes_the_one_without_a_fixed_query() -> None:
    layers = _document()["paths"]["/2018-10-31/layers"]["get"]
    assert layers["operationId"] == "ListLayers"
