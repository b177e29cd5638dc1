"""Checking manifests: the JSON Schema first, then what a schema cannot say.

Every problem names the file, line and field path and says what is allowed:
``spec.memoryMB: 99999 is above the maximum 10240 (deploy.yaml:12)``. The
CLI runs this before sending anything, the server runs it again on every
write (the server's copy has no file, only the document).
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.exceptions import ValidationError as SchemaViolation

from ember.manifests import schedule
from ember.manifests.loader import Manifest, ManifestError, Path_, Problem, format_path
from ember.manifests.schema import FUNCTION_SCHEMA

_VALIDATOR = Draft202012Validator(FUNCTION_SCHEMA)


def _describe(error: SchemaViolation) -> tuple[Path_, str]:
    """(field path, message) of one schema violation, in words a person can act on."""
    path: Path_ = tuple(error.absolute_path)
    kind = error.validator
    value: Any = error.instance
    rule: Any = error.validator_value
    schema: Any = error.schema
    if kind == "maximum":
        return path, f"{value!r} is above the maximum {rule}"
    if kind == "minimum":
        return path, f"{value!r} is below the minimum {rule}"
    if kind == "enum":
        return path, f"{value!r} is not allowed: use one of {', '.join(map(str, rule))}"
    if kind == "const":
        return path, f"{value!r} is not allowed: must be {rule}"
    if kind == "type":
        return path, f"{value!r} is not allowed: must be of type {rule}"
    if kind == "required":
        missing = next(name for name in rule if name not in value)
        return (*path, missing), "is required"
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(value) - set(allowed))
        return (*path, extra[0]), f"unknown field: allowed are {', '.join(allowed)}"
    if kind == "pattern":
        return path, f"{value!r} does not match the pattern {rule}"
    if kind == "oneOf":
        return path, "must be exactly one of {schedule: EXPRESSION} or {url: {...}}"
    if kind in ("maxLength", "minLength"):
        bound = "at most" if kind == "maxLength" else "at least"
        return path, f"{value!r} must be {bound} {rule} characters long"
    return path, error.message


def _semantic(body: dict[str, Any]) -> list[tuple[Path_, str]]:
    """Rules across fields, for a document that already satisfies the schema."""
    spec = body["spec"]
    found: list[tuple[Path_, str]] = []
    code = spec["code"]
    # path (read by the CLI) arrives with sha256 (or zipFile, in transit): one package source.
    package = any(key in code for key in ("path", "sha256", "zipFile"))
    if package == ("inline" in code):
        found.append((("spec", "code"), "give exactly one of path or inline"))
    concurrency = spec.get("concurrency") or {}
    reserved, provisioned = concurrency.get("reserved"), concurrency.get("provisioned", 0)
    if reserved is not None and provisioned > reserved:
        found.append(
            (
                ("spec", "concurrency", "provisioned"),
                f"{provisioned} is above reserved ({reserved}): it must be at most reserved",
            )
        )
    for index, trigger in enumerate(spec.get("triggers") or []):
        if "schedule" in trigger:
            try:
                schedule.parse(trigger["schedule"])
            except schedule.ScheduleError as exc:
                found.append((("spec", "triggers", index, "schedule"), str(exc)))
    mcp = spec.get("mcp") or {}
    for key in ("inputSchema", "outputSchema"):
        if key in mcp:
            try:
                Draft202012Validator.check_schema(mcp[key])
            except SchemaError as exc:
                found.append((("spec", "mcp", key), f"not a JSON Schema: {exc.message}"))
            if mcp[key].get("type") != "object":
                found.append((("spec", "mcp", key, "type"), "the root must be type: object"))
    if spec.get("rateLimit", {}).get("burst") is not None and spec["rateLimit"].get(
        "algorithm", "token-bucket"
    ) not in ("token-bucket", "leaky-bucket"):
        found.append(
            (("spec", "rateLimit", "burst"), "burst applies to token-bucket and leaky-bucket only")
        )
    return found


def problems_of(manifest: Manifest) -> list[Problem]:
    """Everything wrong with one document (empty when it is valid)."""
    raw = [_describe(error) for error in _VALIDATOR.iter_errors(manifest.body)]
    if not raw:
        raw = _semantic(manifest.body)
    return [
        Problem(manifest.source, manifest.line_of(path), format_path(path), message)
        for path, message in sorted(raw, key=lambda item: manifest.line_of(item[0]))
    ]


def check(manifests: list[Manifest]) -> None:
    """Raise ManifestError listing every problem of the set (duplicates included)."""
    problems: list[Problem] = []
    seen: dict[tuple[str, str], Manifest] = {}
    for manifest in manifests:
        found = problems_of(manifest)
        problems.extend(found)
        if found:
            continue
        key = manifest.key
        if key in seen:
            first = seen[key]
            where = f"{first.source}:{first.line_of(('metadata', 'name'))}"
            problems.append(
                Problem(
                    manifest.source,
                    manifest.line_of(("metadata", "name")),
                    "metadata.name",
                    f"{key[1]!r} is also defined at {where}",
                )
            )
        seen[key] = manifest
    if problems:
        raise ManifestError(problems)
