from __future__ import annotations

import asyncio
import base64
import io
import zipfile
from datetime import UTC, datetime
from typing import Any

import pytest

from ember.control.arns import Arns
from ember.control.registry import FunctionRegistry
from ember.errors import PreconditionFailed, ResourceConflict, ResourceNotFound
from ember.storage.memory import MemoryMetadataStore, MemoryPackageStore

ROLE = "arn:aws:iam::000000000000:role/r"


def _zip(source: str) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", source)
    return base64.b64encode(buffer.getvalue()).decode()


def _body(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "FunctionName": name,
        "Runtime": "python3.11",
        "Handler": "app.handler",
        "Role": ROLE,
        "Code": {"ZipFile": _zip("x = 1\n")},
        **extra,
    }


def _registry() -> tuple[FunctionRegistry, MemoryMetadataStore, MemoryPackageStore]:
    store, packages = MemoryMetadataStore(), MemoryPackageStore()
    moment = datetime(2026, 11, 28, 13, 7, 49, 123456, tzinfo=UTC)
    return (
        FunctionRegistry(store, packages, Arns("us-east-1", "0" * 12), lambda: moment),
        store,
        packages,
    )


def test_create_get_update_delete_and_listeners() -> None:
    async def scenario() -> None:
        registry, store, packages = _registry()
        changed: list[str] = []
        registry.subscribe(lambda name, local: changed.append(name))
        record = await registry.create(_body("f", Environment={"Variables": {"KEY": "v"}}))
        assert record.timeout == 3 and record.memory_size == 128
        assert record.last_modified == "2026-11-28T13:07:49.123+0000"
        with pytest.raises(ResourceConflict, match="Function already exist: f"):
            await registry.create(_body("f"))
        updated = await registry.update_configuration("f", {"Timeout": 10})
        assert updated.timeout == 10 and updated.revision_id != record.revision_id
        assert updated.environment == {"KEY": "v"}
        with pytest.raises(PreconditionFailed):
            await registry.update_configuration("f", {"RevisionId": record.revision_id})
        new_code = await registry.update_code("f", {"ZipFile": _zip("x = 2\n")})
        assert new_code.code_sha256 != record.code_sha256
        assert await packages.get(new_code.code_digest)
        with pytest.raises(KeyError):  # the old package is no longer used by anyone
            await packages.get(record.code_digest)
        await registry.delete("f")
        with pytest.raises(ResourceNotFound, match=r"function:f$"):
            registry.get("f")
        assert changed == ["f", "f", "f"]
        assert await store.load_all() == {}

    asyncio.run(scenario())


def test_shared_packages_stay_while_used() -> None:
    async def scenario() -> None:
        registry, _, packages = _registry()
        a = await registry.create(_body("a"))
        await registry.create(_body("b"))
        await registry.delete("a")
        assert await packages.get(a.code_digest)

    asyncio.run(scenario())


def test_pages_of_fifty_with_markers() -> None:
    async def scenario() -> None:
        registry, _, _ = _registry()
        for i in range(120):
            await registry.create(_body(f"fn-{i:03d}"))
        seen: list[str] = []
        marker = None
        while True:
            page = registry.page(marker, 1000)
            assert len(page.functions) <= 50
            seen += [record.name for record in page.functions]
            if not page.next_marker:
                break
            marker = page.next_marker
        assert seen == sorted(f"fn-{i:03d}" for i in range(120))
        assert len(registry.page(None, 7).functions) == 7

    asyncio.run(scenario())


def test_reload_from_store() -> None:
    async def scenario() -> None:
        registry, store, packages = _registry()
        await registry.create(_body("keep"))
        again = FunctionRegistry(store, packages, Arns("us-east-1", "0" * 12))
        await again.load()
        assert again.get("keep").handler == "app.handler"

    asyncio.run(scenario())
