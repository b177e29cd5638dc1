"""Unit tests of function URL requests: the 2.0 event, the response mapping, CORS."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson
import pytest

from ember.control.urls import UrlConfig
from ember.invoke.service import InvokeResult
from ember.invoke.urls import UrlRequest, build_event, cors_headers, is_text, map_result

NOW = datetime(2026, 11, 28, 13, 7, 49, 123000, tzinfo=UTC)


def request(**changes: object) -> UrlRequest:
    base = UrlRequest(
        key="fn",
        method="POST",
        path="/a/b",
        query="x=1&x=2&y=%C3%A9",
        headers=[
            (b"Host", b"127.0.0.1:9900"),
            (b"X-Multi", b"one"),
            (b"x-multi", b"two"),
            (b"Cookie", b"a=1; b=2"),
            (b"User-Agent", b"curl/8"),
            (b"Content-Type", b"application/json"),
        ],
        body=b'{"k": 1}',
        source_ip="10.0.0.7",
    )
    return base._replace(**changes)  # type: ignore[arg-type]


def result(body: object, function_error: str | None = None) -> InvokeResult:
    return InvokeResult(200, orjson.dumps(body), "rid", "$LATEST", function_error)


def test_the_event_has_lambdas_2_0_shape() -> None:
    event = build_event(request(), "000000000000", "rid", NOW)
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/a/b" and event["rawQueryString"] == "x=1&x=2&y=%C3%A9"
    assert event["queryStringParameters"] == {"x": "1,2", "y": "é"}
    assert event["headers"]["x-multi"] == "one,two"
    assert "cookie" not in event["headers"] and event["cookies"] == ["a=1", "b=2"]
    assert event["body"] == '{"k": 1}' and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["http"] == {
        "method": "POST",
        "path": "/a/b",
        "protocol": "HTTP/1.1",
        "sourceIp": "10.0.0.7",
        "userAgent": "curl/8",
    }
    assert context["time"] == "28/Nov/2026:13:07:49 +0000"
    assert context["timeEpoch"] == int(NOW.timestamp() * 1000)
    assert (context["domainName"], context["domainPrefix"]) == ("127.0.0.1:9900", "127")
    assert context["requestId"] == "rid" and context["stage"] == "$default"


def test_binary_bodies_are_base64_and_empty_ones_absent() -> None:
    binary = build_event(
        request(body=b"\xff\x00", headers=[(b"content-type", b"image/png")]), "0", "r", NOW
    )
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == b"\xff\x00"
    empty = build_event(request(body=b"", query=""), "0", "r", NOW)
    assert "body" not in empty and "queryStringParameters" not in empty
    assert empty["isBase64Encoded"] is False


@pytest.mark.parametrize(
    ("content_type", "body", "text"),
    [
        ("text/html; charset=utf-8", b"<p>", True),
        ("application/vnd.api+json", b"{}", True),
        (None, b"plain", True),
        ("application/octet-stream", b"plain", False),
        ("text/plain", b"\xff", False),
    ],
)
def test_which_bodies_are_text(content_type: str | None, body: bytes, text: bool) -> None:
    assert is_text(content_type, body) is text


def test_a_structured_result_sets_status_headers_cookies_and_body() -> None:
    mapped = map_result(
        result(
            {
                "statusCode": 302,
                "headers": {"Location": "/next", "X-Count": 3},
                "cookies": ["a=1", "b=2; Secure"],
                "body": "moved",
            }
        )
    )
    assert mapped.status == 302 and mapped.body == b"moved"
    assert (b"location", b"/next") in mapped.headers and (b"x-count", b"3") in mapped.headers
    cookies = [value for name, value in mapped.headers if name == b"set-cookie"]
    assert cookies == [b"a=1", b"b=2; Secure"]
    assert (b"content-type", b"application/json") in mapped.headers


def test_base64_bodies_are_decoded() -> None:
    encoded = base64.b64encode(b"\x89PNG").decode()
    mapped = map_result(result({"statusCode": 200, "body": encoded, "isBase64Encoded": True}))
    assert mapped.body == b"\x89PNG"


@pytest.mark.parametrize("value", [{"message": "hi"}, "text", 42, [1, 2], None])
def test_plain_values_are_a_json_200(value: object) -> None:
    mapped = map_result(result(value))
    assert mapped.status == 200 and orjson.loads(mapped.body) == value
    assert mapped.headers == [(b"content-type", b"application/json")]


@pytest.mark.parametrize(
    "outcome",
    [
        result({"errorMessage": "boom"}, function_error="Unhandled"),
        result({"statusCode": "not a number"}),
        result({"statusCode": 200, "body": "!!", "isBase64Encoded": True}),
        InvokeResult(200, b"not json", "rid", "$LATEST"),
    ],
)
def test_failures_are_a_short_502(outcome: InvokeResult) -> None:
    mapped = map_result(outcome)
    assert (mapped.status, mapped.body) == (502, b"Internal Server Error")


def test_cors_grants_only_allowed_origins() -> None:
    config = UrlConfig(
        "fn",
        None,
        "NONE",
        {"AllowOrigins": ["*"], "AllowMethods": ["GET"], "AllowCredentials": True, "MaxAge": 5},
        "BUFFERED",
        "t",
        "t",
    )
    asked = request(headers=[(b"origin", b"https://x.example")])
    preflight = dict(cors_headers(config, asked, preflight=True))
    assert preflight[b"access-control-allow-origin"] == b"https://x.example"
    assert preflight[b"access-control-allow-methods"] == b"GET"
    assert preflight[b"access-control-allow-credentials"] == b"true"
    assert preflight[b"access-control-max-age"] == b"5"
    assert cors_headers(config, request(headers=[]), preflight=False) == []
