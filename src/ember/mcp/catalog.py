"""The tool catalog: which functions are exposed as MCP tools, and how.

Exposure is opt-in per function (``PUT /_ember/functions/{name}/tool``, ``ember
tool expose``, manifests). Settings are validated here, stored durably (one
JSON document per function in its own store of the data directory) and served
from memory. Listeners hear of every change to the tool list, so the MCP
endpoint can tell subscribed clients to list again.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import orjson

from ember.errors import InvalidParameterValue, ResourceConflict
from ember.mcp import refs
from ember.storage.base import MetadataStore

log = logging.getLogger("ember.mcp")

TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
HINTS = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")
SETTINGS = (
    "toolName",
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
    "qualifier",
)
DIALECT = "https://json-schema.org/draft/2020-12/schema"
MAX_DESCRIPTION = 8192
# Resolves (function, qualifier) to its record; raises ResourceNotFound when missing.
Resolve = Callable[[str, str | None], object]
Listener = Callable[[], None]


@dataclass(frozen=True)
class ToolSpec:
    """One exposed function: the tool an MCP client sees, and what it invokes."""

    function: str
    tool_name: str  # Invariant: unique across the catalog, matches TOOL_NAME
    description: str = ""
    title: str | None = None
    input_schema: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    output_schema: dict[str, Any] | None = None
    annotations: dict[str, bool] = field(default_factory=dict)
    qualifier: str | None = None  # version or alias invoked; None: $LATEST

    def document(self) -> dict[str, Any]:
        """The extension API's (and the store's) JSON shape."""
        body: dict[str, Any] = {
            "FunctionName": self.function,
            "toolName": self.tool_name,
            "description": self.description,
            "inputSchema": self.input_schema,
        }
        for key, value in (
            ("title", self.title),
            ("outputSchema", self.output_schema),
            ("annotations", self.annotations or None),
            ("qualifier", self.qualifier),
        ):
            if value is not None:
                body[key] = value
        return body

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> ToolSpec:
        return parse_settings(str(document["FunctionName"]), document)


def _schema(value: object, key: str) -> dict[str, Any]:
    """A JSON Schema 2020-12 with ``type: object`` at its root, or a named error."""
    if not isinstance(value, dict):
        raise InvalidParameterValue(f"{key} must be a JSON object (a JSON Schema).")
    dialect = value.get("$schema")
    if dialect is not None and dialect.rstrip("#") != DIALECT:
        raise InvalidParameterValue(f"{key} must use JSON Schema 2020-12 ($schema {DIALECT}).")
    if value.get("type") != "object":
        raise InvalidParameterValue(f'{key} must describe an object: "type": "object" at its root.')
    try:
        jsonschema.Draft202012Validator.check_schema(value)
    except jsonschema.SchemaError as error:
        where = "/".join(str(part) for part in error.absolute_path) or "(root)"
        raise InvalidParameterValue(
            f"{key} is not a valid JSON Schema 2020-12 at {where}: {error.message}"
        ) from None
    try:
        refs.check(value)
    except refs.SchemaRefError as error:
        raise InvalidParameterValue(f"{key}: {error}") from None
    except RecursionError:
        raise InvalidParameterValue(f"{key} nests its subschemas too deeply.") from None
    return value


def _text(settings: dict[str, Any], key: str, limit: int) -> str | None:
    value = settings.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidParameterValue(f"{key} must be a string of at most {limit} characters.")
    return value


def _annotations(value: object) -> dict[str, bool]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidParameterValue(f"annotations must be an object with keys among {HINTS}.")
    for key, hint in value.items():
        if key not in HINTS:
            raise InvalidParameterValue(f"annotations.{key} is not one of {HINTS}.")
        if not isinstance(hint, bool):
            raise InvalidParameterValue(f"annotations.{key} must be true or false.")
    return dict(value)


def parse_settings(function: str, settings: dict[str, Any]) -> ToolSpec:
    """Validate the body of ``PUT /_ember/functions/{name}/tool`` into a ToolSpec."""
    unknown = sorted(set(settings) - {*SETTINGS, "FunctionName"})
    if unknown:
        raise InvalidParameterValue(f"Unknown tool setting(s) {unknown}: expected {SETTINGS}.")
    tool_name = settings.get("toolName", function)
    if not isinstance(tool_name, str) or not TOOL_NAME.match(tool_name):
        raise InvalidParameterValue(
            f"toolName {tool_name!r} must be 1-128 characters of A-Z, a-z, 0-9, '_', '.', '-'."
        )
    if "inputSchema" not in settings:
        raise InvalidParameterValue(
            'inputSchema is required (for no arguments: {"type": "object"}).'
        )
    output = settings.get("outputSchema")
    return ToolSpec(
        function=function,
        tool_name=tool_name,
        description=_text(settings, "description", MAX_DESCRIPTION) or "",
        title=_text(settings, "title", 256),
        input_schema=_schema(settings["inputSchema"], "inputSchema"),
        output_schema=None if output is None else _schema(output, "outputSchema"),
        annotations=_annotations(settings.get("annotations")),
        qualifier=_text(settings, "qualifier", 128),
    )


class ToolCatalog:
    """Every exposed function's ToolSpec, by function and by tool name."""

    # Rows of functions that do not exist are deleted at load (a delete cut short by
    # a crash). Not in a cluster: there another node may have just created the
    # function, and the feed brings it after the load.
    prune_orphans = True

    def __init__(self, store: MetadataStore, resolve: Resolve) -> None:
        self._store = store
        self._resolve = resolve
        # Invariant: _by_tool holds the same specs as _specs, keyed by tool name.
        self._specs: dict[str, ToolSpec] = {}
        self._by_tool: dict[str, ToolSpec] = {}
        self._lock = asyncio.Lock()
        self._listeners: list[Listener] = []
        self._forgotten: set[str] = set()
        self._wake = asyncio.Event()
        self._stopping = False

    async def load(self, exists: Callable[[str], bool]) -> None:
        """Read every stored tool; drop those of functions that no longer exist."""
        for function, document in (await self._store.load_all()).items():
            if exists(function):
                self._put(ToolSpec.from_document(orjson.loads(document)))
            elif self.prune_orphans:
                await self._store.delete(function)
        log.info("tool catalog loaded %d tool(s)", len(self._specs))

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener()`` after every change to the tool list (synchronously)."""
        self._listeners.append(listener)

    def changed(self) -> None:
        for listener in self._listeners:
            listener()

    # --- reads ---------------------------------------------------------------

    def get(self, function: str) -> ToolSpec | None:
        return self._specs.get(function)

    def by_tool_name(self, tool_name: str) -> ToolSpec | None:
        return self._by_tool.get(tool_name)

    def list(self) -> list[ToolSpec]:
        """Every tool, ordered by tool name (the order tools/list pages through)."""
        return [self._by_tool[name] for name in sorted(self._by_tool)]

    def __len__(self) -> int:
        return len(self._specs)

    # --- writes --------------------------------------------------------------

    def _put(self, spec: ToolSpec) -> None:
        old = self._specs.pop(spec.function, None)
        if old is not None:
            del self._by_tool[old.tool_name]
        self._specs[spec.function] = spec
        self._by_tool[spec.tool_name] = spec

    def _drop(self, function: str) -> ToolSpec | None:
        spec = self._specs.pop(function, None)
        if spec is not None:
            del self._by_tool[spec.tool_name]
        return spec

    async def expose(self, function: str, settings: dict[str, Any]) -> ToolSpec:
        """Expose ``function`` (replacing its tool, if any); validated, durable on return."""
        spec = parse_settings(function, settings)
        self._resolve(function, spec.qualifier)
        async with self._lock:
            holder = self._by_tool.get(spec.tool_name)
            if holder is not None and holder.function != function:
                raise ResourceConflict(
                    f"Tool name {spec.tool_name} is already used by function {holder.function}."
                )
            await self._store.put(function, orjson.dumps(spec.document()).decode())
            self._put(spec)
            self._forgotten.discard(function)
        self.changed()
        return spec

    async def hide(self, function: str) -> None:
        """Stop exposing ``function``; not an error when it was not exposed."""
        async with self._lock:
            await self._store.delete(function)
            spec = self._drop(function)
        if spec is not None:
            self.changed()

    def function_changed(self, function: str, exists: bool, local: bool = True) -> None:
        """The registry's listener: a deleted function's tool is hidden, a changed one's
        list is announced again (its code or configuration may answer differently).
        The stored tool of a deleted function is removed by the node that deleted it
        (``local``); the others hear of that removal through the feed."""
        if function not in self._specs:
            return
        if not exists:
            self._drop(function)
            if local:
                self._forgotten.add(function)
                self._wake.set()
        self.changed()

    async def apply_remote(self, function: str, document: str | None) -> None:
        """The feed's callback (namespace ``tools``): another node exposed or hid
        ``function``; memory follows and this node's MCP clients hear list_changed.
        Nothing is written. Idempotent: an unchanged tool announces nothing."""
        async with self._lock:
            if document is None:
                changed = self._drop(function) is not None
            else:
                spec = ToolSpec.from_document(orjson.loads(document))
                changed = self._specs.get(function) != spec
                self._put(spec)
                self._forgotten.discard(function)
        if changed:
            self.changed()

    async def run(self) -> None:
        """Delete the stored tools of deleted functions; runs for the server's life."""
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            async with self._lock:
                for function in list(self._forgotten):
                    if function not in self._specs:
                        await self._store.delete(function)
                    self._forgotten.discard(function)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
