"""The API contract, fuzzed: schemathesis generates requests for every operation of the
server's own ``/openapi.json`` (derived from botocore's Lambda model) and sends them,
signed, to a real server.

Every answer must be no 5xx, conform to the document (status, content type, body,
headers), and every error must parse as Lambda's error in botocore (the code from
``x-amzn-ErrorType``, a message). ``EMBER_FUZZ_EXAMPLES`` sets the cases per
operation (``make fuzz`` raises it); the figures are printed at the end.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import httpx
import pytest
import requests
import schemathesis
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from botocore.loaders import create_loader
from botocore.model import ServiceModel
from botocore.parsers import RestJSONParser
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from conftest import ROLE, Server, lambda_client, make_zip, signed_http
from ember.cli.credentials import Credentials

EXAMPLES = int(os.environ.get("EMBER_FUZZ_EXAMPLES", "12"))
MODEL = ServiceModel(create_loader().load_service_model("lambda", "service-2"))
TARGET = "fuzz-target"
HANDLER = "def handler(event, context):\n    return event\n"
FIGURES: Counter[str] = Counter()
ERRORS: Counter[str] = Counter()


class SigV4Requests(requests.auth.AuthBase):
    """Signs a ``requests`` request as boto3 would (botocore's signer), the query
    re-encoded with %20 for spaces as AWS's SDKs send it."""

    def __init__(self, credentials: Credentials) -> None:
        self._signer = SigV4Auth(
            BotoCredentials(credentials.access_key, credentials.secret_key),
            "lambda",
            credentials.region,
        )

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        url = urlsplit(request.url or "")
        query = urlencode(
            parse_qsl(url.query, keep_blank_values=True), quote_via=quote, safe="-_.~"
        )
        request.url = urlunsplit(url._replace(query=query))
        body = request.body or b""
        signed = AWSRequest(
            method=request.method,
            url=request.url,
            data=body.encode() if isinstance(body, str) else body,
            headers={"Content-Type": request.headers.get("Content-Type", "")}
            if "Content-Type" in request.headers
            else {},
        )
        self._signer.add_auth(signed)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Content-SHA256"):
            if name in signed.headers:
                request.headers[name] = signed.headers[name]
        return request


@schemathesis.check
def lambda_error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """An error answers as botocore reads Lambda's: code from x-amzn-ErrorType, a message."""
    if response.status_code < 400:
        return None
    headers = {name: values[0] for name, values in response.headers.items()}
    parsed = RestJSONParser().parse(
        {"status_code": response.status_code, "headers": headers, "body": response.content},
        None,
    )
    error = parsed.get("Error", {})
    code = headers.get("x-amzn-errortype") or headers.get("X-Amzn-ErrorType")
    assert code, f"{response.status_code} without x-amzn-ErrorType"
    assert error.get("Code") == code.split(":")[0], (error, code)
    assert error.get("Message"), f"{code} without a message: {response.content!r}"
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    missing_required_header,
    unsupported_method,
    lambda_error_shape,
    negative_data_rejection,
    missing_required_header,
    unsupported_method,
]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of this module's own (the fuzzer deletes and creates at random)."""
    instance = Server(tmp_path_factory.mktemp("fuzz") / "data").start()
    lambda_client(instance).create_function(
        FunctionName=TARGET,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": HANDLER})},
    )
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def api_schema(fuzzed: Server) -> Any:
    loaded = schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json", timeout=30)
    loaded.config.base_url = fuzzed.url
    return loaded


@pytest.fixture(scope="module")
def session(fuzzed: Server) -> Iterator[requests.Session]:
    with requests.Session() as opened:
        opened.auth = SigV4Requests(fuzzed.credentials)
        yield opened


@pytest.mark.slow
def test_every_operation_keeps_the_contract(api_schema: Any, session: requests.Session) -> None:
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 70  # Lambda's and ember's own; all of them fuzzed
    for operation in operations:
        try:
            _fuzz(operation, session)
        except (
            Exception,
            BaseExceptionGroup,
        ) as failure:  # every operation's first failure, not only the first one's
            failures.append(f"{operation.label}: {_first_lines(failure)}")
    print(f"\nfuzz figures: {dict(FIGURES)}\nanswers: {dict(ERRORS)}")
    assert not failures, "\n\n".join(failures)
    assert FIGURES["requests"] >= _floor()
    assert FIGURES["5xx"] == 0


@pytest.mark.slow
def test_linked_operations_keep_the_contract(api_schema: Any, session: requests.Session) -> None:
    """Scenarios: schemathesis links an operation's answer to the next one's parameters
    (a published layer version is read, then deleted; an alias made on a function...),
    so that handlers are fuzzed on objects that exist."""
    steps: Counter[str] = Counter()

    class Signed(api_schema.as_state_machine()):
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"session": session, "timeout": 60}

        def validate_response(self, response: Any, case: Any, *args: Any, **kwargs: Any) -> None:
            steps[f"{response.status_code // 100}xx"] += 1
            case.validate_response(response, checks=_checks(response))

    run_state_machine_as_test(
        Signed,
        settings=settings(
            max_examples=2 * EXAMPLES,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            phases=[Phase.generate],
        ),
    )
    print(f"\nstateful figures: {dict(steps)}")
    assert steps["5xx"] == 0
    assert sum(steps.values()) >= 2 * EXAMPLES


def _checks(response: Any) -> list[Any]:
    """CHECKS, but a request whose head is past the server's limit (64 KB) is refused
    with 431 before any route reads it, which schemathesis does not count as a
    rejection: a TaggableResource may be 10,000 characters, percent-encoded 120 KB."""
    if response.status_code == 431:
        return [check for check in CHECKS if check is not negative_data_rejection]
    return CHECKS


def _floor() -> int:
    """The requests a run must have sent: issue 20's targets for make test and make fuzz."""
    return max((n for cases, n in ((12, 500), (90, 5000)) if cases <= EXAMPLES), default=0)


def _first_lines(failure: BaseException) -> str:
    """What failed (the check and the value), without schemathesis' whole report."""
    lines = str(failure).strip().splitlines()
    exceptions = getattr(failure, "exceptions", [failure])
    found = [" ".join(str(e).split())[:400] for e in exceptions] or lines[:3]
    return " | ".join(found)


def _strategy(operation: Any) -> Any:
    """Valid and invalid requests at random names, and (but for deletions) valid ones
    at the function that exists, so that handlers get past their 404."""
    strategies = [
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    ]
    names = {parameter.name for parameter in operation.path_parameters}
    if operation.method.upper() != "DELETE" and names & {"FunctionName", "name"}:
        known = {name: TARGET for name in names & {"FunctionName", "name"}}
        strategies.append(operation.as_strategy(path_parameters=known))
    return st.one_of(strategies)


def _fuzz(operation: Any, session: requests.Session) -> None:
    @given(case=_strategy(operation))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        phases=[Phase.explicit, Phase.generate],  # a failure is reported as found, unshrunk
    )
    def run(case: Any) -> None:
        response = case.call(session=session, timeout=60)
        FIGURES["requests"] += 1
        FIGURES[f"{response.status_code // 100}xx"] += 1
        ERRORS[f"{response.status_code} {response.headers.get('x-amzn-errortype', [''])[0]}"] += 1
        case.validate_response(response, checks=_checks(response))

    run()


def test_the_document_is_open_and_derived_from_botocore(fuzzed: Server) -> None:
    answer = httpx.get(f"{fuzzed.url}/openapi.json", timeout=30)
    assert answer.status_code == 200
    paths = answer.json()["paths"]
    create = paths["/2015-03-31/functions"]["post"]
    assert create["operationId"] == "CreateFunction"
    assert "201" in create["responses"]
    assert MODEL.operation_model("CreateFunction").http["requestUri"] in paths
    assert "/_ember/keys/{id}" in paths


def test_list_functions_judges_master_region(fuzzed: Server) -> None:
    """Found by the fuzzer: an invalid MasterRegion was ignored (200), not refused."""
    with signed_http(fuzzed.url, fuzzed.credentials) as http:
        refused = http.get("/2015-03-31/functions", params={"MasterRegion": "not a region"})
        allowed = http.get("/2015-03-31/functions", params={"MasterRegion": "us-east-1"})
    assert refused.status_code == 400
    assert refused.headers["x-amzn-ErrorType"] == "ValidationException"
    assert "masterRegion" in refused.json()["message"]
    assert allowed.status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/_ember/functions/fuzz-target/dead-letters/\u00b2",
        "/_ember/layers/any/versions/\u00b2/content",
        "/2018-10-31/layers/any/versions/\u00b2",
        "/2015-03-31/functions?MaxItems=\u00b2",
        "/2015-03-31/functions/fuzz-target/versions?MaxItems=\u00b2",
        "/2019-09-25/functions/fuzz-target/event-invoke-config/list?MaxItems=\u00b2",
        "/2018-10-31/layers?MaxItems=\u00b2",
    ],
)
def test_a_number_in_other_digits_is_refused_not_a_500(fuzzed: Server, path: str) -> None:
    """Found by the fuzzer: "²" passed str.isdigit() and then failed int() (a 500)."""
    with signed_http(fuzzed.url, fuzzed.credentials) as http:
        answer = http.get(path)
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.headers["x-amzn-ErrorType"]


def test_a_presigned_expiry_in_other_digits_is_refused_not_a_500(fuzzed: Server) -> None:
    scope = "20260101/us-east-1/lambda/aws4_request"
    query = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{fuzzed.credentials.access_key}/{scope}",
        "X-Amz-Date": "20260101T000000Z",
        "X-Amz-Expires": "\u00b2",
        "X-Amz-SignedHeaders": "host",
        "X-Amz-Signature": "0" * 64,
    }
    answer = httpx.get(f"{fuzzed.url}/2015-03-31/functions", params=query, timeout=30)
    assert answer.status_code == 403, answer.text
    assert answer.headers["x-amzn-ErrorType"]


def test_layer_filters_are_judged_and_applied(fuzzed: Server) -> None:
    """Found by the fuzzer: CompatibleRuntime and CompatibleArchitecture were taken
    unjudged, and the architecture was not applied at all."""
    aws = lambda_client(fuzzed)
    aws.publish_layer_version(
        LayerName="fuzz-x86",
        Content={"ZipFile": make_zip({"python/x.py": "X = 1\n"})},
        CompatibleRuntimes=["python3.11"],
        CompatibleArchitectures=["x86_64"],
    )
    with signed_http(fuzzed.url, fuzzed.credentials) as http:
        runtime = http.get("/2018-10-31/layers", params={"CompatibleRuntime": "cobol"})
        machine = http.get("/2018-10-31/layers", params={"CompatibleArchitecture": "z80"})
    for refused in (runtime, machine):
        assert refused.status_code == 400
        assert refused.headers["x-amzn-ErrorType"] == "ValidationException"

    def names(**query: str) -> set[str]:
        return {layer["LayerName"] for layer in aws.list_layers(**query)["Layers"]}

    assert "fuzz-x86" in names(CompatibleArchitecture="x86_64")
    assert "fuzz-x86" not in names(CompatibleArchitecture="arm64")
    versions = aws.list_layer_versions(LayerName="fuzz-x86", CompatibleArchitecture="arm64")
    assert versions["LayerVersions"] == []


def test_an_event_invoke_is_a_documented_202(fuzzed: Server) -> None:
    operation = httpx.get(f"{fuzzed.url}/openapi.json", timeout=30).json()["paths"][
        "/2015-03-31/functions/{FunctionName}/invocations"
    ]["post"]
    assert {"200", "202", "204"} <= set(operation["responses"])
