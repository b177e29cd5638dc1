"""Parsing a JSON body that carries a package (``ZipFile``, base64) without turning
the package into text.

``orjson.loads`` of a 67 MB CreateFunction body makes a 67 MB ``str`` of the
base64 beside the body (and copies the body to parse it): the package three
times over before it is decoded. Here the base64 is found in the body, the rest
is parsed with a short stand-in in its place, and ``ZipFile`` is given as a
``memoryview`` of the body's own bytes (the base64 text, undecoded).

Sound without a JSON parser of our own: the stand-in replaces a run of base64
characters between two quotes. The bytes before the run are unchanged, so if the
stand-in parses as a string *value* of the key ``ZipFile``, its opening quote
began a string in the body too, and that string, holding no quote or backslash,
ended at the run's closing quote: the body parses exactly as the stand-in
document does, with the run as that value. Any other outcome parses the body whole.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import orjson

# Strings shorter than this are parsed as usual: nothing to save.
LARGE = 1 << 20
_BASE64_RUN = re.compile(rb'"([A-Za-z0-9+/=]{%d,})"' % LARGE)


def loads(raw: bytes) -> Any:
    """``orjson.loads(raw)``, but a large ``ZipFile`` value comes as a ``memoryview``
    of ``raw`` (its base64 text); raises ``orjson.JSONDecodeError`` as ``loads`` does."""
    if len(raw) < LARGE:
        return orjson.loads(raw)
    found = _BASE64_RUN.search(raw)
    if found is None:
        return orjson.loads(raw)
    stand_in = "ember-package-" + secrets.token_hex(16)
    start, end = found.span(1)
    parsed = orjson.loads(b"".join((raw[:start], stand_in.encode(), raw[end:])))
    if _put_package(parsed, stand_in, memoryview(raw)[start:end]):
        return parsed
    return orjson.loads(raw)  # the run was something else: the usual way


def _put_package(node: Any, stand_in: str, package: memoryview) -> bool:
    """Replace ``stand_in`` where it is the value of a ``ZipFile`` key (top level,
    or one object down: ``Code``, ``Content``); whether it was there."""
    if not isinstance(node, dict):
        return False
    if node.get("ZipFile") == stand_in:
        node["ZipFile"] = package
        return True
    return any(
        isinstance(child, dict) and child.get("ZipFile") == stand_in and _set(child, package)
        for child in node.values()
    )


def _set(node: dict[str, Any], package: memoryview) -> bool:
    node["ZipFile"] = package
    return True


__all__ = ["LARGE", "loads"]
