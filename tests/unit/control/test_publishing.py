"""The registry's versions and aliases, on in-memory stores (product code, not mocks)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import itertools
import zipfile
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import pytest

from ember.control.arns import Arns
from ember.control.registry import FunctionRegistry
from ember.errors import (
    InvalidParameterValue,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
    ValidationError,
)
from ember.storage.memory import MemoryMetadataStore, MemoryPackageStore

ROLE = "arn:aws:iam::000000000000:role/r"
ARN = "arn:aws:lambda:us-east-1:000000000000:function:f"


def _zip(source: str) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", source)
    return base64.b64encode(buffer.getvalue()).decode()


def _body(**extra: Any) -> dict[str, Any]:
    return {
        "FunctionName": "f",
        "Runtime": "python3.11",
        "Handler": "app.handler",
        "Role": ROLE,
        "Code": {"ZipFile": _zip("x = 1\n")},
        **extra,
    }


async def _two_versions(registry: FunctionRegistry) -> None:
    """Function ``f`` with versions 1 and 2 (which differ in their timeout)."""
    await registry.create(_body(Publish=True))
    await registry.update_configuration("f", {"Timeout": 5})
    await registry.publish("f", {})


def _registry(
    store: MemoryMetadataStore | None = None,
    packages: MemoryPackageStore | None = None,
    random: Callable[[], float] = lambda: 0.5,
) -> FunctionRegistry:
    moment = datetime(2026, 11, 28, 13, 7, 49, 123456, tzinfo=UTC)
    return FunctionRegistry(
        store or MemoryMetadataStore(),
        packages or MemoryPackageStore(),
        Arns("us-east-1", "0" * 12),
        lambda: moment,
        random,
    )


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def test_publish_copies_latest_and_is_idempotent_until_latest_changes() -> None:
    async def scenario() -> None:
        registry = _registry()
        renames: list[tuple[str, str]] = []
        registry.on_rename(lambda old, new: renames.append((old, new)))
        latest = await registry.create(_body(Description="d"))
        v1 = await registry.publish("f", {})
        assert (v1.version, v1.code_sha256, v1.description) == ("1", latest.code_sha256, "d")
        assert v1.revision_id != latest.revision_id
        # Publishing renews $LATEST's RevisionId, as Lambda does, and changes nothing else:
        # its sandboxes are renamed, not retired.
        renewed = registry.get("f")
        assert renewed.revision_id != latest.revision_id
        assert dataclasses.replace(renewed, revision_id=latest.revision_id) == latest
        assert renames == [(latest.revision_id, renewed.revision_id)]
        assert await registry.publish("f", {"Description": "other"}) is v1
        assert registry.get("f") is renewed and len(renames) == 1

        changed = await registry.update_configuration("f", {"Timeout": 9})
        v2 = await registry.publish("f", {"Description": "second"})
        assert (v2.version, v2.timeout, v2.description) == ("2", 9, "second")
        assert registry.get("f", "1").timeout == 3  # versions are immutable
        assert registry.get("f", "2") is v2 and registry.get("f").timeout == changed.timeout

    run(scenario)


def test_publish_checks_code_sha256_and_revision_id() -> None:
    async def scenario() -> None:
        registry = _registry()
        latest = await registry.create(_body())
        with pytest.raises(InvalidParameterValue) as caught:
            await registry.publish("f", {"CodeSha256": "abc"})
        assert caught.value.message == (
            f"CodeSHA256 (abc) is different from current CodeSHA256 in $LATEST "
            f"({latest.code_sha256}). Please try again with the CodeSHA256 in $LATEST."
        )
        with pytest.raises(PreconditionFailed):
            await registry.publish("f", {"RevisionId": "wrong"})
        published = await registry.publish(
            "f", {"CodeSha256": latest.code_sha256, "RevisionId": latest.revision_id}
        )
        assert published.version == "1"
        with pytest.raises(ResourceNotFound, match=f"Function not found: {ARN}-nope$"):
            await registry.publish("f-nope", {})

    run(scenario)


def test_publish_on_create_and_update_code() -> None:
    async def scenario() -> None:
        registry = _registry()
        created = await registry.create(_body(Publish=True))
        assert created.version == "1"
        updated = await registry.update_code("f", {"ZipFile": _zip("x = 2\n"), "Publish": True})
        assert updated.version == "2" and updated.code_sha256 != created.code_sha256
        assert registry.get("f").code_sha256 == updated.code_sha256
        page, marker = registry.versions_page("f", None, None)
        assert [r.version for r in page] == ["$LATEST", "1", "2"] and marker is None

    run(scenario)


def test_version_numbers_are_never_reused_and_survive_a_reload() -> None:
    async def scenario() -> None:
        store, packages = MemoryMetadataStore(), MemoryPackageStore()
        registry = _registry(store, packages)
        await registry.create(_body())
        for n in range(3):
            await registry.update_configuration("f", {"Timeout": 10 + n})
            await registry.publish("f", {})
        await registry.delete("f", "3")
        await registry.delete("f", "3")  # deleting a missing version succeeds, as on Lambda
        await registry.create_alias("f", {"Name": "live", "FunctionVersion": "2"})

        reloaded = _registry(store, packages)
        await reloaded.load()
        assert [r.version for r in reloaded.versions_page("f", None, None)[0]] == [
            "$LATEST",
            "1",
            "2",
        ]
        assert reloaded.get("f", "live").timeout == 11
        await reloaded.update_configuration("f", {"Timeout": 30})
        assert (await reloaded.publish("f", {})).version == "4"

    run(scenario)


def test_versions_page_by_marker() -> None:
    async def scenario() -> None:
        registry = _registry()
        await registry.create(_body())
        for n in range(4):
            await registry.update_configuration("f", {"Timeout": 10 + n})
            await registry.publish("f", {})
        seen: list[str] = []
        marker = None
        for _ in range(10):
            page, marker = registry.versions_page("f", marker, 2)
            seen += [record.version for record in page]
            if marker is None:
                break
        assert seen == ["$LATEST", "1", "2", "3", "4"]

    run(scenario)


def test_list_functions_with_all_versions_pages_through_every_version() -> None:
    async def scenario() -> None:
        registry = _registry()
        await registry.create(_body(Publish=True))
        await registry.create(_body(FunctionName="g"))
        everything: list[str] = []
        marker = None
        for _ in range(10):
            page = registry.page(marker, 1, all_versions=True)
            everything += [f"{record.name}:{record.version}" for record in page.functions]
            marker = page.next_marker
            if marker is None:
                break
        assert everything == ["f:$LATEST", "f:1", "g:$LATEST"]
        assert [r.name for r in registry.page(None, None).functions] == ["f", "g"]

    run(scenario)


def test_delete_one_version_and_the_whole_function_forgets_unused_packages() -> None:
    async def scenario() -> None:
        store, packages = MemoryMetadataStore(), MemoryPackageStore()
        registry = _registry(store, packages)
        first = await registry.create(_body(Publish=True))
        await registry.update_code("f", {"ZipFile": _zip("x = 2\n")})
        # Version 1 still uses the first package: it stays stored.
        assert first.code_digest in packages._packages
        with pytest.raises(InvalidParameterValue, match="cannot be deleted without deleting"):
            await registry.delete("f", "$LATEST")
        await registry.delete("f", "1")
        assert first.code_digest not in packages._packages
        with pytest.raises(ResourceNotFound, match=f"Function not found: {ARN}:1$"):
            registry.get("f", "1")

        await registry.publish("f", {})
        await registry.create_alias("f", {"Name": "live", "FunctionVersion": "2"})
        await registry.delete("f")
        assert store._records == {} and packages._packages == {}
        with pytest.raises(ResourceNotFound):
            registry.get("f")

    run(scenario)


def test_a_version_an_alias_uses_cannot_be_deleted() -> None:
    async def scenario() -> None:
        registry = _registry()
        await _two_versions(registry)
        await registry.create_alias(
            "f",
            {
                "Name": "live",
                "FunctionVersion": "1",
                "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.1}},
            },
        )
        await registry.create_alias("f", {"Name": "beta", "FunctionVersion": "2"})
        with pytest.raises(ResourceConflict) as caught:
            await registry.delete("f", "2")
        assert caught.value.message == (
            "Unable to delete version because the following aliases reference it: [beta, live]"
        )

    run(scenario)


def test_alias_lifecycle_and_messages() -> None:
    async def scenario() -> None:
        registry = _registry()
        await registry.create(_body(Publish=True))
        alias = await registry.create_alias(
            "f", {"Name": "live", "FunctionVersion": "1", "Description": "prod"}
        )
        assert (alias.function_version, alias.description, alias.weights) == ("1", "prod", {})
        with pytest.raises(ResourceConflict, match=f"^Alias already exists: {ARN}:live$"):
            await registry.create_alias("f", {"Name": "live", "FunctionVersion": "1"})
        with pytest.raises(ResourceNotFound, match=f"^Cannot find alias arn: {ARN}:nope$"):
            registry.get_alias("f", "nope")
        with pytest.raises(ResourceNotFound, match=f"^Function not found: {ARN}:7$"):
            await registry.create_alias("f", {"Name": "x", "FunctionVersion": "7"})
        with pytest.raises(ValidationError, match="at 'name'"):
            await registry.create_alias("f", {"Name": "123", "FunctionVersion": "1"})

        with pytest.raises(PreconditionFailed):
            await registry.update_alias("f", "live", {"RevisionId": "wrong"})
        updated = await registry.update_alias(
            "f", "live", {"FunctionVersion": "$LATEST", "RevisionId": alias.revision_id}
        )
        assert updated.function_version == "$LATEST" and updated.description == "prod"
        assert updated.revision_id != alias.revision_id
        assert registry.get("f", "live") is registry.get("f")
        await registry.create_alias("f", {"Name": "old", "FunctionVersion": "1"})
        page, _ = registry.aliases_page("f", "1", None, None)
        assert [a.name for a in page] == ["old"]
        await registry.delete_alias("f", "live")
        with pytest.raises(ResourceNotFound, match="Cannot find alias arn"):
            await registry.delete_alias("f", "live")

    run(scenario)


@pytest.mark.parametrize(
    ("primary", "weights", "error", "message"),
    [
        ("1", {"1": 0.8, "2": 0.2}, InvalidParameterValue, "cannot be greater than 1"),
        ("1", {"2": 2}, ValidationError, "Value '{2=2}' at 'routingConfig"),
        ("1", {"2": -1}, ValidationError, "greater than or equal to 0.0"),
        ("1", {"2": 1.0}, ValidationError, "less than or equal to 1.0"),
        ("1", {"1": 0.5}, InvalidParameterValue, "Function version 1 is already included"),
        ("$LATEST", {"1": 0.5}, InvalidParameterValue, "$LATEST is not supported"),
        ("1", {"$LATEST": 0.5}, ValidationError, "pattern: [0-9]+"),
        ("1", {"10": 0.5}, ResourceNotFound, f"Function not found: {ARN}:10"),
    ],
)
def test_routing_config_is_validated_as_lambda_does(
    primary: str, weights: dict[str, float], error: type[Exception], message: str
) -> None:
    async def scenario() -> None:
        registry = _registry()
        await _two_versions(registry)
        with pytest.raises(error) as caught:
            await registry.create_alias(
                "f",
                {
                    "Name": "custom",
                    "FunctionVersion": primary,
                    "RoutingConfig": {"AdditionalVersionWeights": weights},
                },
            )
        assert message in str(caught.value)

    run(scenario)


def test_moving_a_weighted_alias_keeps_its_weights_valid() -> None:
    async def scenario() -> None:
        registry = _registry()
        await _two_versions(registry)
        await registry.create_alias(
            "f",
            {
                "Name": "canary",
                "FunctionVersion": "1",
                "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.3}},
            },
        )
        for target, message in (("2", "already included"), ("$LATEST", "not supported")):
            with pytest.raises(InvalidParameterValue, match=message):
                await registry.update_alias("f", "canary", {"FunctionVersion": target})
        moved = await registry.update_alias(
            "f", "canary", {"FunctionVersion": "2", "RoutingConfig": {}}
        )
        assert (moved.function_version, moved.weights) == ("2", {})
        kept = await registry.update_alias("f", "canary", {"Description": "d"})
        assert (kept.function_version, kept.weights, kept.description) == ("2", {}, "d")

    run(scenario)


def test_weighted_alias_follows_the_random_source() -> None:
    async def scenario() -> None:
        draws = itertools.cycle([0.05, 0.25, 0.5, 0.95])
        registry = _registry(random=lambda: next(draws))
        await _two_versions(registry)
        await registry.create_alias(
            "f",
            {
                "Name": "canary",
                "FunctionVersion": "1",
                "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.3}},
            },
        )
        picked = [registry.get("f", "canary").version for _ in range(8)]
        assert picked == ["2", "2", "1", "1"] * 2
        # Reads of the alias's configuration never route: they name the primary.
        assert registry.version("f", "canary").version == "1"

    run(scenario)
