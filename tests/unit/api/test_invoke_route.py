"""The raw Invoke route (ember.api.invoke.answer) on a refused call."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import orjson

from ember.api import invoke
from ember.invoke.service import InvokeCommand, InvokeResult
from ember.storage.memory import MemoryMetadataStore
from ember.throttle import Throttle, ThrottleLimits
from ember.throttle.memory import MemoryThrottleBackend

PATH = "/2015-03-31/functions/f/invocations"


def scope() -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": PATH,
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"8")],
        "client": ("127.0.0.1", 50000),
    }


async def refused_call() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One call through ``answer`` that the real gate refuses (reserved concurrency 0)."""
    limits = ThrottleLimits(MemoryMetadataStore(), 1000)
    await limits.put_reserved("f", 0)
    throttle = Throttle(MemoryThrottleBackend(), limits)

    async def service(command: InvokeCommand) -> InvokeResult:
        await throttle.admit(command.function, command.caller, "lease", 3)
        raise AssertionError("admitted")

    return await invoke.answer(service, scope(), b'{"n": 1}', "r1")


def test_a_refusal_answers_lambdas_429_and_leaves_no_reference_cycle() -> None:
    # Under overload every call is refused: a refusal that left its exception, its
    # traceback and their frames in a cycle would hand each one to the cyclic GC.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(refused_call())  # warm: imports, caches
        gc.collect()
        gc.disable()
        try:
            status, headers, body = loop.run_until_complete(refused_call())
            garbage = gc.collect()
        finally:
            gc.enable()
    finally:
        loop.close()
    named = dict(headers)
    assert status == 429
    assert named[b"x-amzn-errortype"] == b"TooManyRequestsException"
    assert named[b"retry-after"] == b"1"
    assert named[b"content-length"] == b"%d" % len(body)
    assert orjson.loads(body) == {
        "Type": "User",
        "message": "Rate Exceeded.",
        "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
    }
    assert garbage == 0


def test_the_command_carries_the_principal_not_a_claimed_key() -> None:
    from ember.auth.base import PRINCIPAL_SCOPE_KEY, VERIFIED_SCOPE_KEY
    from ember.auth.principals import Principal

    claimed = [(b"authorization", b"AWS4-HMAC-SHA256 Credential=CLAIMED/20261206/x")]
    anonymous = {**scope(), "headers": claimed}
    command = invoke._command(anonymous, dict(claimed), b"{}", "r1")
    assert (command.caller, command.account, command.function) == ("127.0.0.1", None, "f")
    # --auth none: the principal is assumed, not proven; the address is the caller.
    assumed = {**anonymous, PRINCIPAL_SCOPE_KEY: Principal("111122223333")}
    command = invoke._command(assumed, dict(claimed), b"{}", "r2")
    assert command.caller == "127.0.0.1" and command.account == "111122223333"
    signed = {**assumed, VERIFIED_SCOPE_KEY: True}
    command = invoke._command(signed, dict(claimed), b"{}", "r3")
    assert command.caller == "arn:aws:iam::111122223333:root"
    assert command.account == "111122223333"


def test_a_storage_key_spelling_is_refused_even_encoded() -> None:
    import pytest

    from ember.errors import ValidationError

    for name in ("111122223333.f", "111122223333%2Ef"):
        path = f"/2015-03-31/functions/{name}/invocations"
        with pytest.raises(ValidationError):
            invoke._command({**scope(), "path": path}, {}, b"{}", "r")
