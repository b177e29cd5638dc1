"""packagejson.loads: orjson.loads, with a large ZipFile left as the body's own bytes."""

from __future__ import annotations

import base64
import os

import orjson
import pytest

from ember import packagejson

PACKAGE = base64.b64encode(os.urandom(packagejson.LARGE)).decode()


def _body(document: object) -> bytes:
    return orjson.dumps(document)


@pytest.mark.parametrize(
    "document",
    [
        {"FunctionName": "f", "Code": {"ZipFile": PACKAGE}, "Publish": True},
        {"ZipFile": PACKAGE, "Publish": True},  # UpdateFunctionCode
        {"LayerName": "l", "Content": {"ZipFile": PACKAGE}},  # PublishLayerVersion
    ],
)
def test_a_large_zipfile_is_a_view_of_the_body_and_the_rest_parses_alike(
    document: dict[str, object],
) -> None:
    raw = _body(document)
    parsed = packagejson.loads(raw)
    holder = (
        parsed if "ZipFile" in parsed else next(v for v in parsed.values() if isinstance(v, dict))
    )
    assert isinstance(holder["ZipFile"], memoryview)
    assert holder["ZipFile"].obj is raw  # no copy
    holder["ZipFile"] = bytes(holder["ZipFile"]).decode()
    assert parsed == orjson.loads(raw)


@pytest.mark.parametrize(
    "raw",
    [
        _body({"Description": PACKAGE, "Code": {"ZipFile": "UEsFBg=="}}),  # large, not ZipFile
        # A run inside a string, between escaped quotes: not a value of its own.
        b'{"Code": {"ZipFile": "x\\"' + PACKAGE.encode() + b'\\""}}',
        # Escaped slashes: base64 as some encoders write it, parsed the usual way.
        _body({"Code": {"ZipFile": "x"}})[:-3] + PACKAGE.replace("/", "\\/").encode() + b'"}}',
        _body({"Code": {"ZipFile": "small"}}),
    ],
)
def test_anything_else_parses_exactly_as_orjson(raw: bytes) -> None:
    assert packagejson.loads(raw) == orjson.loads(raw)


def test_a_body_that_is_not_json_is_refused_as_orjson_refuses_it() -> None:
    with pytest.raises(orjson.JSONDecodeError):
        packagejson.loads(b'{"Code": {"ZipFile": "' + PACKAGE.encode() + b'"}')
