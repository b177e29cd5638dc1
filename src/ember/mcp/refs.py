"""``$ref`` cycles of a tool's JSON Schema, found when the tool is exposed.

A schema that refers back to itself *without descending into the instance*
(``{"$ref": "#"}``, or ``a -> allOf -> b -> $ref a``) makes every validation
recurse until Python gives up, so each ``tools/call`` would fail with an
internal error. A reference that first steps into a property or an item
(a tree whose ``children`` items are nodes) is fine: the instance is finite,
so the recursion ends; those schemas are accepted.

Only references inside the document are followed (``#``, ``#/json/pointer``,
``#anchor``); any other ``$ref`` would need a fetch at call time, so it is
refused here too.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

# Keywords whose subschemas apply to the same instance (no descent into it).
_IN_PLACE_ONE = ("not", "if", "then", "else")
_IN_PLACE_MANY = ("allOf", "anyOf", "oneOf")
_REFS = ("$ref", "$dynamicRef")


class SchemaRefError(ValueError):
    """The schema refers outside itself, to nothing, or around a cycle."""


def check(schema: dict[str, Any]) -> None:
    """Raise ``SchemaRefError`` if following ``$ref`` in place could loop or fetch."""
    anchors = dict(_anchors(schema, ""))
    done: set[str] = set()
    for pointer, node in _subschemas(schema, ""):
        _visit(schema, anchors, pointer, node, [], done)


def _visit(
    root: Any, anchors: dict[str, str], pointer: str, node: Any, path: list[str], done: set[str]
) -> None:
    if pointer in done or not isinstance(node, dict):
        return
    if pointer in path:
        cycle = " -> ".join([*path[path.index(pointer) :], pointer])
        raise SchemaRefError(f"$ref cycle that never descends into the input: {cycle or '#'}")
    path.append(pointer)
    for child in _in_place(node, pointer, anchors):
        _visit(root, anchors, child, _resolve(root, child), path, done)
    path.pop()
    done.add(pointer)


def _in_place(node: dict[str, Any], pointer: str, anchors: dict[str, str]) -> list[str]:
    """Pointers of the subschemas ``node`` applies to the very same instance."""
    children = [f"{pointer}/{key}" for key in _IN_PLACE_ONE if isinstance(node.get(key), dict)]
    for key in _IN_PLACE_MANY:
        items = node.get(key)
        if isinstance(items, list):
            children += [f"{pointer}/{key}/{index}" for index in range(len(items))]
    dependent = node.get("dependentSchemas")
    if isinstance(dependent, dict):
        children += [f"{pointer}/dependentSchemas/{_escape(name)}" for name in dependent]
    for key in _REFS:
        target = node.get(key)
        if isinstance(target, str):
            children.append(_target(target, anchors))
    return children


def _target(ref: str, anchors: dict[str, str]) -> str:
    if not ref.startswith("#"):
        raise SchemaRefError(f"$ref {ref!r} is outside the schema (only '#...' is followed)")
    fragment = unquote(ref[1:])
    if fragment == "" or fragment.startswith("/"):
        return fragment
    if fragment not in anchors:
        raise SchemaRefError(f"$ref {ref!r} names no $anchor of the schema")
    return anchors[fragment]


def _resolve(root: Any, pointer: str) -> Any:
    node = root
    for raw in pointer.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise SchemaRefError(f"$ref '#{pointer}' points at nothing in the schema")
    return node


def _subschemas(node: Any, pointer: str) -> list[tuple[str, Any]]:
    """Every object in the schema document with its JSON pointer (the root first)."""
    found: list[tuple[str, Any]] = []
    stack: list[tuple[str, Any]] = [(pointer, node)]
    while stack:
        here, value = stack.pop()
        if isinstance(value, dict):
            found.append((here, value))
            stack += [(f"{here}/{_escape(key)}", child) for key, child in value.items()]
        elif isinstance(value, list):
            stack += [(f"{here}/{index}", child) for index, child in enumerate(value)]
    return found


def _anchors(node: Any, pointer: str) -> list[tuple[str, str]]:
    return [
        (value[key], here)
        for here, value in _subschemas(node, pointer)
        for key in ("$anchor", "$dynamicAnchor")
        if isinstance(value.get(key), str)
    ]


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")
