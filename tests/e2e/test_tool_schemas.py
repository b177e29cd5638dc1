"""A tool whose inputSchema loops through ``$ref`` is refused when exposed (issue 20, point 9),
not accepted and then failing every tools/call."""

from __future__ import annotations

from typing import Any

from conftest import Server


def test_exposing_a_tool_with_a_ref_cycle_is_a_400(server: Server, deploy: Any) -> None:
    name = deploy("def handler(e, c): return e\n")["FunctionName"]
    body = {"description": "loops", "inputSchema": {"type": "object", "$ref": "#"}}
    response = server.http.put(f"/_ember/functions/{name}/tool", json=body, timeout=10)
    assert response.status_code == 400
    assert response.headers["x-amzn-errortype"] == "InvalidParameterValueException"
    assert "$ref cycle" in response.json()["message"]
    assert server.http.get(f"/_ember/functions/{name}/tool", timeout=10).status_code == 404
