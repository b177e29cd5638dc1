"""Every object belongs to one account: names, keys, listings, layers and quotas."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import zipfile
from datetime import UTC, datetime
from typing import Any

import pytest

from ember.api import names
from ember.auth.base import PRINCIPAL_SCOPE_KEY
from ember.auth.principals import Principal
from ember.control.arns import Arns, bare, parse, parse_client
from ember.control.layers import LayerRegistry
from ember.control.registry import FunctionRegistry, Quotas
from ember.errors import (
    AccessDenied,
    CodeStorageExceeded,
    InvalidParameterValue,
    ResourceConflict,
    ResourceNotFound,
    ValidationError,
)
from ember.storage.memory import MemoryMetadataStore, MemoryPackageStore

DEFAULT = "000000000000"
OTHER = "111122223333"
ARNS = Arns("us-east-1", DEFAULT)


def _zip(files: dict[str, bytes]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return base64.b64encode(buffer.getvalue()).decode()


def _body(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "FunctionName": name,
        "Runtime": "python3.11",
        "Handler": "app.handler",
        "Role": f"arn:aws:iam::{DEFAULT}:role/r",
        "Code": {"ZipFile": _zip({"app.py": b"x = 1\n"})},
        **extra,
    }


def _registry(quotas: Quotas | None = None) -> FunctionRegistry:
    layers = LayerRegistry(MemoryMetadataStore(), MemoryPackageStore(), ARNS)
    moment = datetime(2026, 12, 6, tzinfo=UTC)
    return FunctionRegistry(
        MemoryMetadataStore(),
        MemoryPackageStore(),
        ARNS,
        lambda: moment,
        layers=layers,
        quotas=quotas,
    )


def _scope(account: str | None) -> dict[str, Any]:
    return {} if account is None else {PRINCIPAL_SCOPE_KEY: Principal(account)}


@pytest.mark.parametrize(
    ("identifier", "account", "name", "qualifier"),
    [
        ("fn", None, "fn", None),
        (f"arn:aws:lambda:us-east-1:{OTHER}:function:fn", OTHER, "fn", None),
        (f"arn:aws:lambda:us-east-1:{OTHER}:function:fn:live", OTHER, "fn", "live"),
        (f"{OTHER}:function:fn", OTHER, "fn", None),
        (f"{OTHER}.fn", OTHER, "fn", None),  # a storage key
        (f"{OTHER}.fn:3", OTHER, "fn", "3"),  # an event target of a version
    ],
)
def test_parse_gives_the_account_an_arn_or_key_names(
    identifier: str, account: str | None, name: str, qualifier: str | None
) -> None:
    ref = parse(identifier)
    assert (ref.account, ref.name, ref.qualifier) == (account, name, qualifier)


def test_clients_cannot_spell_a_storage_key() -> None:
    with pytest.raises(ValidationError):
        parse_client(f"{OTHER}.fn")
    with pytest.raises(ValidationError):
        parse_client(f"{OTHER}%2Efn")
    assert parse_client("fn").name == "fn"


def test_an_arn_naming_two_accounts_is_refused() -> None:
    with pytest.raises(InvalidParameterValue, match="two accounts"):
        parse(f"arn:aws:lambda:us-east-1:{DEFAULT}:function:{OTHER}.fn")


def test_the_key_scheme_round_trips() -> None:
    assert ARNS.key(DEFAULT, "fn") == "fn"  # the default account's keys are bare names
    key = ARNS.key(OTHER, "fn")
    assert key == f"{OTHER}.fn"
    assert ARNS.owner(key) == (OTHER, "fn") and ARNS.owner("fn") == (DEFAULT, "fn")
    assert bare(key) == "fn" and bare("fn") == "fn"
    assert ARNS.function(key, "2") == f"arn:aws:lambda:us-east-1:{OTHER}:function:fn:2"
    assert ARNS.resolve(parse("fn"), OTHER) == key
    assert ARNS.resolve(parse("fn")) == "fn"


@pytest.mark.parametrize("caller", [None, DEFAULT, OTHER])
def test_routes_resolve_names_for_the_caller_and_arns_for_their_account(
    caller: str | None,
) -> None:
    scope = _scope(caller)
    own = ARNS.key(caller or DEFAULT, "fn")
    assert names.function(scope, ARNS, "fn") == names.Named(own, None)
    assert names.function(scope, ARNS, "fn:live").qualifier == "live"
    # An ARN's own account wins: the authorizer decides whether the caller may.
    theirs = f"arn:aws:lambda:us-east-1:{OTHER}:function:fn"
    assert names.function(scope, ARNS, theirs).key == f"{OTHER}.fn"
    assert names.owned(scope, ARNS, own)
    assert names.owned(scope, ARNS, f"{OTHER}.fn") == (caller == OTHER)
    assert names.caller_account(scope) == caller


def test_two_accounts_have_their_own_function_of_one_name() -> None:
    async def scenario() -> None:
        registry = _registry()
        mine = await registry.create(_body("fn"), DEFAULT)
        theirs = await registry.create(_body("fn"), OTHER)
        assert (mine.name, theirs.name) == ("fn", f"{OTHER}.fn")
        shown = theirs.configuration(ARNS)
        assert shown["FunctionName"] == "fn"
        assert shown["FunctionArn"] == f"arn:aws:lambda:us-east-1:{OTHER}:function:fn"
        assert shown["LoggingConfig"]["LogGroup"] == "/aws/lambda/fn"
        with pytest.raises(ResourceConflict):
            await registry.create(_body("fn"), OTHER)
        other = registry.page(None, None, account=OTHER).functions
        assert [r.name for r in other] == [f"{OTHER}.fn"]
        assert [r.name for r in registry.page(None, None, account=DEFAULT).functions] == ["fn"]
        with pytest.raises(ResourceNotFound, match=f"{OTHER}:function:gone"):
            registry.get(ARNS.key(OTHER, "gone"))

    asyncio.run(scenario())


def test_the_function_count_quota_is_per_account() -> None:
    async def scenario() -> None:
        registry = _registry(Quotas(functions=1))
        await registry.create(_body("a"), OTHER)
        with pytest.raises(InvalidParameterValue, match=f"Account {OTHER} already has 1"):
            await registry.create(_body("b"), OTHER)
        await registry.create(_body("b"), DEFAULT)  # another account's quota
        assert registry.usage(OTHER)[0] == 1 and registry.usage(DEFAULT)[0] == 1

    asyncio.run(scenario())


def test_the_code_storage_quota_counts_versions_and_updates() -> None:
    big = {"app.py": os.urandom(3000)}

    async def scenario() -> None:
        registry = _registry(Quotas(code_bytes=7000))
        record = await registry.create(_body("a", Code={"ZipFile": _zip(big)}), OTHER)
        await registry.publish(record.name, {})  # version 1 counts its code too
        assert registry.usage(OTHER)[1] == 2 * record.code_size
        with pytest.raises(CodeStorageExceeded, match=f"account {OTHER}"):
            await registry.create(_body("b", Code={"ZipFile": _zip(big)}), OTHER)
        # The default account's storage is its own.
        await registry.create(_body("b", Code={"ZipFile": _zip(big)}), DEFAULT)

    asyncio.run(scenario())


def test_layers_are_per_account_and_another_accounts_layer_is_refused() -> None:
    async def scenario() -> None:
        registry = _registry()
        layers = registry._layers
        assert layers is not None
        content = {"Content": {"ZipFile": _zip({"python/m.py": b"x = 1"})}}
        mine = await layers.publish("lib", content, DEFAULT)
        theirs = await layers.publish("lib", content, OTHER)
        assert mine.version == theirs.version == 1  # numbered per account
        theirs_arn = layers.version_arn(theirs.name, 1)
        assert theirs_arn == f"arn:aws:lambda:us-east-1:{OTHER}:layer:lib:1"
        listed = layers.list_layers(None, None, account=OTHER).items
        assert [name for name, _ in listed] == [f"{OTHER}.lib"]
        record = await registry.create(_body("fn", Layers=[theirs_arn]), OTHER)
        assert record.layers == (theirs_arn,)
        with pytest.raises(AccessDenied, match="lambda:GetLayerVersion"):
            await registry.create(_body("fn", Layers=[theirs_arn]), DEFAULT)

    asyncio.run(scenario())


def test_a_scheduled_event_names_the_owners_account() -> None:
    from ember.reconcile.wiring import scheduled_event

    moment = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
    event = scheduled_event(ARNS, f"{OTHER}.nightly", moment, "id-1")
    assert event["account"] == OTHER
    assert event["resources"] == [f"arn:aws:events:us-east-1:{OTHER}:rule/ember-nightly"]
    assert scheduled_event(ARNS, "nightly", moment, "id-2")["account"] == DEFAULT


def test_manifest_objects_are_per_account() -> None:
    from ember.control.objects import FunctionObjects

    manifest = {
        "apiVersion": "ember.dev/v1",
        "kind": "Function",
        "metadata": {"name": "web"},
        "spec": {"runtime": "python3.11", "handler": "app.handler", "code": {"inline": "x = 1"}},
    }

    async def scenario() -> None:
        objects = FunctionObjects(
            MemoryMetadataStore(), MemoryPackageStore(), lambda: datetime.now(UTC), ARNS
        )
        await objects.create("default", manifest, DEFAULT)
        created = await objects.create("default", manifest, OTHER)  # same name, other account
        assert created["metadata"]["name"] == "web"
        assert objects.all_keys() == [("default", f"{OTHER}.web"), ("default", "web")]
        listed = objects.list(None, None, OTHER)
        assert [body["metadata"]["name"] for body in listed] == ["web"]
        assert objects.get("default", "web", OTHER)["metadata"]["uid"] == created["metadata"]["uid"]
        await objects.delete("default", "web", OTHER)
        assert objects.get("default", "web", DEFAULT)["metadata"].get("deletionTimestamp") is None

    asyncio.run(scenario())


def test_layers_count_toward_their_accounts_code_storage() -> None:
    big = {"python/blob.bin": os.urandom(3000)}

    async def scenario() -> None:
        registry = _registry(Quotas(code_bytes=5000))
        layers = registry._layers
        assert layers is not None
        await layers.publish("lib", {"Content": {"ZipFile": _zip(big)}}, OTHER)
        with pytest.raises(CodeStorageExceeded):
            await layers.publish("lib", {"Content": {"ZipFile": _zip(big)}}, OTHER)
        with pytest.raises(CodeStorageExceeded):
            await registry.create(_body("fn", Code={"ZipFile": _zip(big)}), OTHER)
        await layers.publish("lib", {"Content": {"ZipFile": _zip(big)}}, DEFAULT)
        assert registry.usage(DEFAULT)[1] > 3000

    asyncio.run(scenario())
