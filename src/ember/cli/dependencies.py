"""Python dependencies for `ember deploy`: pip on the client, a layer on the server.

A deployed directory's ``requirements.txt`` (or the ``[project].dependencies``
of its ``pyproject.toml``) is installed here, with pip, into ``python/`` of a
layer zip: the place Lambda's Python runtimes put on sys.path from /opt. The
layer is named ``ember-deps-<16 hex>`` after the normalized requirements and
the runtime, so the next deploy with the same requirements finds it and runs
no pip at all.

Which pip: when this machine has the runtime's Python (``python3.X``, found as
the server finds it: ``ember.interpreters``, each candidate run before it is
trusted, so a pyenv shim of a missing version is skipped), that
interpreter's pip installs as for a local virtualenv, building sdists if it
must; wheels then match the sandboxes, which run on the same kind of host.
Otherwise pip is asked for binary wheels of the runtime's version and the
manylinux platform (``--only-binary=:all:``): a package that has only an
sdist, or no wheel for that Python, then fails with its name in the error.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path

from rich.console import Console

from ember import interpreters
from ember.cli.client import EmberClient
from ember.cli.zips import deterministic_zip

PREFIX = "ember-deps-"
REQUIREMENTS = "requirements.txt"
PYPROJECT = "pyproject.toml"
# What pip says when it gives up on one package, most specific first.
_FAILURES = (
    re.compile(r"No matching distribution found for ([^\s;]+)"),
    re.compile(r"Could not find a version that satisfies the requirement ([^\s;]+)"),
    re.compile(r"Failed building wheel for ([^\s;]+)"),
    re.compile(r"Failed to build ([^\s;]+)"),
    re.compile(r"[Ii]nvalid requirement: '([^']+)'"),
    re.compile(r"Cannot install (.+?) because"),
)
_COLLECTING = re.compile(r"^\s*Collecting ([^\s;]+)")
# Where pip's own account of a failure starts ("ERROR: ...", or a build's "error: ...").
_ERROR_START = re.compile(r"^\s*(ERROR:|error:|\u00d7)")  # \u00d7: a build failure's mark
MAX_PIP_LINES = 40


class DependencyError(Exception):
    """pip could not install the requirements; ``package`` names the culprit if pip did."""

    def __init__(
        self, package: str | None, detail: str, pip_lines: list[str] | None = None
    ) -> None:
        super().__init__(detail)
        self.package = package
        self.detail = detail
        self.pip_lines = pip_lines or []  # pip's own lines about the failure, as it wrote them

    def __str__(self) -> str:
        if self.package:
            return f"pip could not install {self.package}: {self.detail}"
        return f"pip could not install the requirements: {self.detail}"


# -- finding and naming the requirements ------------------------------------------


def find_requirements(root: Path) -> list[str] | None:
    """The requirements of the directory ``root``, or None when it declares none."""
    text_file = root / REQUIREMENTS
    if text_file.is_file():
        return normalize(text_file.read_text().splitlines()) or None
    pyproject = root / PYPROJECT
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text()).get("project", {})
        dependencies = project.get("dependencies", []) if isinstance(project, dict) else []
        return normalize(str(d) for d in dependencies) or None
    return None


def normalize(lines: Iterable[object]) -> list[str]:
    """One requirement a line: comments, blank lines and extra spaces gone, order kept."""
    kept: list[str] = []
    for raw in lines:
        line = re.sub(r"(^|\s)#.*$", "", str(raw)).strip()
        line = re.sub(r"\s+", " ", line)
        if line and line not in kept:
            kept.append(line)
    return kept


def layer_name(requirements: list[str], runtime: str) -> str:
    """``ember-deps-`` and the first 16 hex of sha256(normalized requirements + runtime)."""
    text = "\n".join(sorted(normalize(requirements))) + "\n" + runtime
    return PREFIX + hashlib.sha256(text.encode()).hexdigest()[:16]


# -- pip -----------------------------------------------------------------------------


def _local_interpreter(runtime: str) -> str | None:
    """This machine's interpreter for ``runtime`` (python3.X), if there is one."""
    return interpreters.find(runtime.removeprefix("python"))


def pip_command(runtime: str, target: Path, requirements_file: Path) -> list[str]:
    """The pip install that puts ``runtime``-compatible packages in ``target``."""
    common = ["install", "--disable-pip-version-check", "--no-input", "--target", str(target)]
    local = _local_interpreter(runtime)
    if local is not None:
        return [local, "-m", "pip", *common, "-r", str(requirements_file)]
    machine = platform.machine() or "x86_64"
    return [
        sys.executable,
        "-m",
        "pip",
        *common,
        "--python-version",
        runtime.removeprefix("python"),
        "--implementation",
        "cp",
        "--only-binary=:all:",
        "--platform",
        f"manylinux2014_{machine}",
        "--platform",
        f"manylinux_2_28_{machine}",
        "-r",
        str(requirements_file),
    ]


def failed_package(output: str) -> DependencyError:
    """The error pip's ``output`` describes, naming the package it failed on."""
    lines = output.splitlines()
    errors = [line.strip() for line in lines if line.strip().startswith("ERROR:")]
    detail = errors[-1].removeprefix("ERROR:").strip() if errors else "pip failed"
    said = _pip_lines(lines)
    for pattern in _FAILURES:
        for line in reversed(lines):
            match = pattern.search(line)
            if match:
                return DependencyError(match.group(1).strip().rstrip(","), detail, said)
    collecting = [m.group(1) for line in lines if (m := _COLLECTING.match(line))]
    return DependencyError(collecting[-1] if collecting else None, detail, said)


def _pip_lines(lines: list[str]) -> list[str]:
    """pip's account of the failure: from its first error line on (else its last
    lines), at most MAX_PIP_LINES of them, the last ones kept."""
    start = next((i for i, line in enumerate(lines) if _ERROR_START.match(line)), None)
    chosen = lines[start:] if start is not None else lines[-5:]
    return [line.rstrip() for line in chosen if line.strip()][-MAX_PIP_LINES:]


def install(
    requirements: list[str],
    runtime: str,
    workdir: Path,
    target: Path,
    progress: Callable[[str], None],
) -> None:
    """Run pip (in ``workdir``, so relative paths resolve); raise DependencyError on failure."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("\n".join(requirements) + "\n")
    try:
        command = pip_command(runtime, target, Path(handle.name))
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONUNBUFFERED": "1"}
        output: list[str] = []
        with subprocess.Popen(
            command,
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        ) as pip:
            assert pip.stdout is not None
            for line in pip.stdout:
                output.append(line)
                if line.strip() and not line.startswith(" "):
                    progress(line.strip()[:100])
        if pip.returncode != 0:
            raise failed_package("".join(output))
    finally:
        os.unlink(handle.name)


def zip_layer(site: Path) -> bytes:
    """``site`` zipped under ``python/``, deterministically (sorted, fixed timestamps)."""
    paths = sorted(p for p in site.rglob("*") if p.is_file() and not p.is_symlink())
    return deterministic_zip(("python/" + p.relative_to(site).as_posix(), p) for p in paths)


# -- the layer -----------------------------------------------------------------------


def dependency_layer(
    client: EmberClient,
    requirements: list[str],
    runtime: str,
    *,
    workdir: Path | None = None,
    console: Console | None = None,
) -> str:
    """The LayerVersionArn of the requirements' layer: reused if published, else built.

    Raises DependencyError (naming the package) when pip fails.
    """
    console = console or Console(stderr=True)
    name = layer_name(requirements, runtime)
    existing = client.list_layer_versions(name)
    if existing:
        console.print(f"dependencies: reusing layer {name} ({len(requirements)} requirement(s))")
        return str(existing[0]["LayerVersionArn"])
    with (
        tempfile.TemporaryDirectory(prefix="ember-deps-") as scratch,
        console.status(f"installing {len(requirements)} requirement(s) for {runtime}") as status,
    ):
        site = Path(scratch) / "python"

        def progress(line: str) -> None:
            status.update(f"pip: {line}")

        try:
            install(requirements, runtime, workdir or Path.cwd(), site, progress)
        except DependencyError as failure:
            status.stop()
            for line in failure.pip_lines:  # pip's own words, before ember's summary
                console.print(line, markup=False, highlight=False, style="dim")
            raise
        status.update("zipping the dependency layer")
        package = zip_layer(site)
        status.update(f"publishing layer {name} ({len(package) // 1024} KB)")
        published = client.publish_layer_version(
            name, package, description=" ".join(requirements)[:256], runtimes=[runtime]
        )
    console.print(f"dependencies: published layer {name} ({len(package) // 1024} KB)")
    return str(published["LayerVersionArn"])
