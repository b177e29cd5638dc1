"""Unit tests of FunctionUrls: Lambda's errors, partial updates, deleted functions."""

from __future__ import annotations

import asyncio
import base64
import io
import zipfile
from datetime import UTC, datetime

import pytest

from ember.control.arns import Arns
from ember.control.registry import FunctionRegistry
from ember.control.urls import FunctionUrls, url_id
from ember.errors import ResourceConflict, ResourceNotFound, ValidationError
from ember.storage.memory import MemoryMetadataStore, MemoryPackageStore

ARNS = Arns("us-east-1", "0" * 12)
MOMENT = datetime(2026, 11, 28, 13, 7, 49, 123456, tzinfo=UTC)


def code() -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "x = 1")
    return base64.b64encode(buffer.getvalue()).decode()


async def setup() -> tuple[FunctionRegistry, FunctionUrls, MemoryMetadataStore]:
    registry = FunctionRegistry(MemoryMetadataStore(), MemoryPackageStore(), ARNS)
    await registry.create(
        {
            "FunctionName": "f",
            "Runtime": "python3.11",
            "Handler": "app.handler",
            "Role": "arn:aws:iam::000000000000:role/r",
            "Code": {"ZipFile": code()},
        }
    )
    store = MemoryMetadataStore()
    return registry, FunctionUrls(store, registry, ARNS, "http://h:1", lambda: MOMENT), store


def test_create_update_delete_with_lambdas_errors() -> None:
    async def scenario() -> None:
        registry, urls, store = await setup()
        config = await urls.create("f", {"AuthType": "NONE"})
        rendered = config.to_api(ARNS, "http://h:1")
        assert rendered["FunctionUrl"] == "http://h:1/url/f/"
        assert rendered["CreationTime"] == "2026-11-28T13:07:49.123456Z"
        with pytest.raises(ResourceConflict, match="FunctionUrlConfig exists"):
            await urls.create("f", {"AuthType": "NONE"})
        with pytest.raises(ValidationError, match="authType"):
            await urls.create("f", {})
        with pytest.raises(ResourceNotFound, match="Function does not exist"):
            await urls.create("missing", {"AuthType": "NONE"})
        with pytest.raises(ValidationError, match="qualifier"):
            await urls.create("f", {"AuthType": "NONE"}, qualifier="$LATEST")
        updated = await urls.update("f", {"Cors": {"AllowOrigins": ["*"]}})
        assert updated.auth_type == "NONE" and updated.cors == {"AllowOrigins": ["*"]}
        reloaded = FunctionUrls(store, registry, ARNS, "http://h:1")
        await reloaded.load()
        assert reloaded.get("f") == updated
        await urls.delete("f")
        with pytest.raises(ResourceNotFound, match="does not exist"):
            urls.find("f")

    asyncio.run(scenario())


def test_a_deleted_functions_url_stops_at_once_and_is_dropped_at_load() -> None:
    async def scenario() -> None:
        registry, urls, store = await setup()
        await urls.create("f", {"AuthType": "AWS_IAM"})
        await registry.delete("f")
        assert urls.get("f") is None
        await FunctionUrls(store, registry, ARNS, "http://h:1").load()
        assert await store.load_all() == {}

    asyncio.run(scenario())


def test_host_style_urls_are_found_by_their_id_on_every_node() -> None:
    async def scenario() -> None:
        registry, urls, store = await setup()
        config = await urls.create("f", {"AuthType": "NONE"})
        label = url_id("f")
        suffix = ".lambda-url.us-east-1.ember.test"
        assert (
            config.to_api(ARNS, "http://h:1", suffix)["FunctionUrl"] == f"http://{label}{suffix}:1/"
        )
        assert config.url("https://h", suffix) == f"https://{label}{suffix}/"
        assert urls.key_of_id(label) == "f"
        # Another node learns of it through the feed, and finds it by the same id.
        other = FunctionUrls(MemoryMetadataStore(), registry, ARNS, "http://h:1")
        await other.apply_remote("f", (await store.load_all())["f"])
        assert other.key_of_id(label) == "f"
        await other.apply_remote("f", None)
        assert other.key_of_id(label) is None
        await urls.delete("f")
        assert urls.key_of_id(label) is None

    asyncio.run(scenario())
