"""Reading manifest files: multi-document YAML, directories, with line numbers kept.

Every document becomes a ``Manifest``: its plain-JSON body plus a map from
field path to the 1-based line it was written on, so that a problem found
anywhere (schema, semantics, the server) can be reported as ``file:line``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

Path_ = tuple[str | int, ...]
SUFFIXES = (".yaml", ".yml", ".json")
# Round-trip mode keeps each node's line; one instance, since building one is slow.
_YAML = YAML(typ="rt")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one field of one document."""

    source: str  # the file as the user named it
    line: int  # 1-based; 0 when unknown
    field: str  # e.g. spec.memoryMB ("" for the whole document)
    message: str  # what is wrong and what is allowed

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return (
            f"{self.field}: {self.message} ({where})" if self.field else f"{self.message} ({where})"
        )


class ManifestError(Exception):
    """A file set with problems; nothing of it may be applied."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass
class Manifest:
    source: str
    body: dict[str, Any]
    line: int = 1  # where the document starts
    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, path: Path_) -> int:
        """The line of ``path``, or of its closest written ancestor."""
        for cut in range(len(path), -1, -1):
            found = self.lines.get(tuple(path[:cut]))
            if found:
                return found
        return self.line

    @property
    def base_dir(self) -> Path:
        return Path(self.source).parent

    @property
    def key(self) -> tuple[str, str]:
        metadata = self.body.get("metadata") or {}
        return str(metadata.get("namespace") or "default"), str(metadata.get("name"))


def format_path(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _plain(node: Any, path: Path_, lines: dict[Path_, int]) -> Any:
    """The plain JSON value of ``node``; records each key's line in ``lines``."""
    if isinstance(node, CommentedMap):
        result = {}
        for key, value in node.items():
            child = (*path, str(key))
            lines[child] = node.lc.key(key)[0] + 1
            result[str(key)] = _plain(value, child, lines)
        return result
    if isinstance(node, CommentedSeq):
        items = []
        for index, value in enumerate(node):
            lines[(*path, index)] = node.lc.item(index)[0] + 1
            items.append(_plain(value, (*path, index), lines))
        return items
    if isinstance(node, str):
        return str(node)
    if node is None or isinstance(node, bool):
        return node
    if isinstance(node, int):
        return int(node)  # ruamel's ScalarInt (hex, octal) becomes a plain int
    if isinstance(node, float):
        return float(node)
    return str(node)  # dates and other YAML types are strings in a manifest


def parse_text(text: str, source: str) -> list[Manifest]:
    """The documents of one YAML (or JSON) text; empty documents are skipped."""
    try:
        documents = list(_YAML.load_all(text))
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        reason = getattr(exc, "problem", None) or str(exc)
        raise ManifestError([Problem(source, line, "", f"not valid YAML: {reason}")]) from None
    found = []
    for document in documents:
        if document is None:
            continue
        lines: dict[Path_, int] = {}
        body = _plain(document, (), lines)
        start = document.lc.line + 1 if hasattr(document, "lc") else 1
        if not isinstance(body, dict):
            raise ManifestError([Problem(source, start, "", "a manifest must be a mapping")])
        found.append(Manifest(source, body, start, lines))
    return found


def _files(path: Path) -> Iterator[Path]:
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file() and child.suffix in SUFFIXES:
                yield child
    else:
        yield path


def load(paths: list[Path]) -> list[Manifest]:
    """Every document of every file (directories recursively, *.yaml|*.yml|*.json)."""
    manifests: list[Manifest] = []
    problems: list[Problem] = []
    for path in paths:
        if not path.exists():
            problems.append(Problem(str(path), 0, "", "no such file or directory"))
            continue
        for file in _files(path):
            try:
                manifests.extend(parse_text(file.read_text(), str(file)))
            except ManifestError as exc:
                problems.extend(exc.problems)
    if problems:
        raise ManifestError(problems)
    return manifests
