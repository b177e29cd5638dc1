"""`ember audit` against a mock server: the parameters it sends and the table it prints."""

from __future__ import annotations

import json
from typing import Any

import httpx
from click.testing import CliRunner, Result

from ember.cli.client import EmberClient
from ember.cli.main import CliState, main

PAGE = {
    "Events": [
        {
            "Time": "2026-12-06T03:00:00.000Z",
            "RequestId": "req-2",
            "Principal": "arn:aws:iam::000000000000:user/reader",
            "AccountId": "000000000000",
            "Action": "lambda:DeleteFunction",
            "Resource": "arn:aws:lambda:us-east-1:000000000000:function:f",
            "Allowed": False,
            "Status": 403,
            "Error": "AccessDeniedException",
        },
        {
            "Time": "2026-12-06T02:59:00.000Z",
            "RequestId": "req-1",
            "Principal": "arn:aws:iam::000000000000:root",
            "AccountId": "000000000000",
            "Action": "lambda:CreateFunction",
            "Resource": "arn:aws:lambda:us-east-1:000000000000:function:f",
            "Allowed": True,
            "Status": 201,
            "Error": None,
        },
    ],
    "NextMarker": "WzEuMCwgMl0",
}


def run(
    args: list[str], sent: list[httpx.Request], answer: httpx.Response, columns: int = 200
) -> Result:
    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answer

    transport = httpx.MockTransport(handler)
    state = CliState(client_factory=lambda endpoint: EmberClient(endpoint, transport=transport))
    return CliRunner().invoke(main, args, obj=state, env={"COLUMNS": str(columns)})


def test_options_become_the_query_and_events_a_table() -> None:
    sent: list[httpx.Request] = []
    args = ["audit", "--since", "10m", "--until", "2026-12-06T04:00:00Z", "--limit", "2"]
    result = run(args, sent, httpx.Response(200, json=PAGE))
    assert result.exit_code == 0, result.output
    params = dict(sent[0].url.params)
    assert sent[0].url.path == "/_ember/audit"
    assert params == {"since": "10m", "until": "2026-12-06T04:00:00Z", "limit": "2"}
    header, denied, allowed = result.stdout.splitlines()
    assert header.split() == ["TIME", "PRINCIPAL", "ACTION", "RESOURCE", "RESULT"]
    assert denied.split() == [
        "2026-12-06",
        "03:00:00",
        "000000000000:user/reader",
        "lambda:DeleteFunction",
        "000000000000:function:f",
        "denied",
        "403",
        "AccessDenied",
    ]
    assert allowed.split()[-3:] == ["lambda:CreateFunction", "000000000000:function:f", "201"]
    assert "ember audit --next WzEuMCwgMl0" in result.stderr


def test_a_narrow_terminal_folds_arns_and_keeps_every_column() -> None:
    result = run(["audit"], [], httpx.Response(200, json=PAGE), columns=80)
    assert result.exit_code == 0, result.output
    assert result.stdout.split()[:5] == ["TIME", "PRINCIPAL", "ACTION", "RESOURCE", "RESULT"]
    assert "lambda:DeleteFunction" in result.stdout and "user/reader" in result.stdout


def test_json_prints_the_response_and_next_is_passed_back() -> None:
    sent: list[httpx.Request] = []
    result = run(["audit", "--next", "abc", "--json"], sent, httpx.Response(200, json=PAGE))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == PAGE
    assert dict(sent[0].url.params) == {"next": "abc", "limit": "100"}


def test_a_refused_parameter_is_one_error_line() -> None:
    refusal: dict[str, Any] = {"Type": "User", "message": "Invalid since 'x': give ISO 8601."}
    answer = httpx.Response(
        400, headers={"x-amzn-ErrorType": "InvalidParameterValueException"}, json=refusal
    )
    result = run(["audit", "--since", "x"], [], answer)
    assert result.exit_code != 0
    assert "Invalid since" in result.stderr
