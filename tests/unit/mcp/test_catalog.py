"""The tool catalog: validation of tool settings, durability, and its listeners."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from ember.errors import InvalidParameterValue, ResourceConflict, ResourceNotFound
from ember.mcp.catalog import ToolCatalog, parse_settings
from ember.storage.memory import MemoryMetadataStore
from ember.storage.sqlite import SqliteMetadataStore

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
FUNCTIONS = {"adder", "greeter", "other"}


def resolve(name: str, qualifier: str | None) -> object:
    if name not in FUNCTIONS or qualifier not in (None, "$LATEST"):
        raise ResourceNotFound(f"Function not found: {name}")
    return name


def settings(**extra: Any) -> dict[str, Any]:
    return {"description": "Adds", "inputSchema": SCHEMA, **extra}


def test_defaults_and_document_round_trip() -> None:
    spec = parse_settings("adder", settings(annotations={"readOnlyHint": True}))
    assert spec.tool_name == "adder"
    assert spec.annotations == {"readOnlyHint": True}
    document = spec.document()
    assert document["FunctionName"] == "adder"
    assert "outputSchema" not in document
    assert parse_settings("adder", document) == spec


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"toolName": ""}, "toolName"),
        ({"toolName": "x" * 129}, "toolName"),
        ({"toolName": "has space"}, "toolName"),
        ({"toolName": "slash/no"}, "toolName"),
        ({"inputSchema": None}, "inputSchema"),
        ({"inputSchema": {"type": "string"}}, "inputSchema"),
        ({"inputSchema": {"type": "object", "properties": {"a": {"type": 12}}}}, "inputSchema"),
        (
            {
                "inputSchema": {
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "type": "object",
                }
            },
            "inputSchema",
        ),
        ({"outputSchema": {"type": "array"}}, "outputSchema"),
        ({"annotations": {"readOnlyHint": "yes"}}, "annotations.readOnlyHint"),
        ({"annotations": {"fastHint": True}}, "annotations.fastHint"),
        ({"description": 3}, "description"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_settings_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidParameterValue, match=field.replace(".", r"\.")):
        parse_settings("adder", settings(**change))


def test_input_schema_is_required() -> None:
    with pytest.raises(InvalidParameterValue, match="inputSchema is required"):
        parse_settings("adder", {"description": "x"})


def test_valid_names_and_dialect() -> None:
    spec = parse_settings(
        "adder",
        settings(
            toolName="A.b-c_9" + "x" * 121,
            inputSchema={**SCHEMA, "$schema": "https://json-schema.org/draft/2020-12/schema"},
        ),
    )
    assert len(spec.tool_name) == 128


def test_expose_get_list_hide_and_listeners() -> None:
    async def scenario() -> None:
        catalog = ToolCatalog(MemoryMetadataStore(), resolve)
        heard: list[int] = []
        catalog.subscribe(lambda: heard.append(1))
        await catalog.expose("greeter", settings(toolName="zz_greet"))
        await catalog.expose("adder", settings())
        assert [spec.tool_name for spec in catalog.list()] == ["adder", "zz_greet"]
        assert catalog.by_tool_name("zz_greet") == catalog.get("greeter")
        # Renaming a function's tool frees the old name.
        await catalog.expose("greeter", settings(toolName="greet"))
        assert catalog.by_tool_name("zz_greet") is None
        with pytest.raises(ResourceConflict, match="greeter"):
            await catalog.expose("other", settings(toolName="greet"))
        with pytest.raises(ResourceNotFound):
            await catalog.expose("missing", settings())
        with pytest.raises(ResourceNotFound):
            await catalog.expose("adder", settings(qualifier="7"))
        await catalog.hide("adder")
        await catalog.hide("adder")  # not an error
        assert catalog.get("adder") is None
        assert len(heard) == 4  # three exposures and one hide; the repeated hide is silent

    asyncio.run(scenario())


def test_tools_survive_a_restart_and_deleted_functions_lose_theirs(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteMetadataStore(tmp_path / "tools.sqlite3")
        catalog = ToolCatalog(store, resolve)
        await catalog.expose("adder", settings(title="Adder", outputSchema={"type": "object"}))
        await catalog.expose("greeter", settings())
        await store.close()  # the catalog never closes its store: the Storage does

        store = SqliteMetadataStore(tmp_path / "tools.sqlite3")
        again = ToolCatalog(store, resolve)
        await again.load(lambda name: name == "adder")
        assert [spec.function for spec in again.list()] == ["adder"]
        assert again.get("adder") is not None
        assert again.get("adder").title == "Adder"  # type: ignore[union-attr]
        await store.close()

        store = SqliteMetadataStore(tmp_path / "tools.sqlite3")
        third = ToolCatalog(store, resolve)
        await third.load(lambda name: True)
        assert [spec.function for spec in third.list()] == ["adder"]  # greeter's was deleted
        await store.close()

    asyncio.run(scenario())


def test_a_deleted_function_is_hidden_and_forgotten_durably() -> None:
    async def scenario() -> None:
        store = MemoryMetadataStore()
        catalog = ToolCatalog(store, resolve)
        heard: list[int] = []
        catalog.subscribe(lambda: heard.append(1))
        await catalog.expose("adder", settings())
        runner = asyncio.create_task(catalog.run())
        catalog.function_changed("adder", exists=True)  # changed: announced, kept
        assert catalog.get("adder") is not None
        catalog.function_changed("greeter", exists=False)  # not exposed: nothing
        catalog.function_changed("adder", exists=False)
        assert catalog.get("adder") is None
        assert len(heard) == 3
        for _ in range(100):
            if not await store.load_all():
                break
            await asyncio.sleep(0.01)
        assert await store.load_all() == {}
        catalog.stop()
        await runner

    asyncio.run(scenario())


NODE = {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#"}}}}
CYCLES = {
    "self": {"type": "object", "$ref": "#"},
    "two defs": {
        "type": "object",
        "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}]}},
        "properties": {"x": {"$ref": "#/$defs/a"}},
    },
    "through an anchor": {
        "type": "object",
        "$defs": {"a": {"$anchor": "loop", "anyOf": [{"$ref": "#loop"}]}},
    },
    "remote": {"type": "object", "properties": {"x": {"$ref": "https://example.com/s.json"}}},
    "dangling": {"type": "object", "properties": {"x": {"$ref": "#/$defs/missing"}}},
}


@pytest.mark.parametrize("schema", CYCLES.values(), ids=CYCLES.keys())
def test_a_ref_cycle_or_a_ref_outside_is_refused_at_expose(schema: dict[str, Any]) -> None:
    with pytest.raises(InvalidParameterValue, match=r"^inputSchema: \$ref"):
        parse_settings("adder", settings(inputSchema=schema))


def test_a_recursive_schema_that_descends_into_the_input_is_accepted() -> None:
    spec = parse_settings("adder", settings(inputSchema=NODE))
    assert spec.input_schema == NODE
