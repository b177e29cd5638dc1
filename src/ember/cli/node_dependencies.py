"""Node dependencies for `ember deploy`: ``npm ci --omit=dev`` on the client, into the zip.

A deployed directory with a ``package.json`` is copied (without its own
``node_modules``) to a scratch directory, where npm installs the production
dependencies the lockfile pins; that directory is what gets zipped, so the
function's ``node_modules`` sits at the package root, where Lambda's Node runtimes
resolve it. ``npm ci`` needs a ``package-lock.json`` (or ``npm-shrinkwrap.json``);
without one, ``npm install --omit=dev`` resolves the ranges instead, and says so.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

PACKAGE_JSON = "package.json"
LOCKFILES = ("package-lock.json", "npm-shrinkwrap.json")
# What a directory of a Node function deploys as when --runtime is not given.
DEFAULT_NODE_RUNTIME = "nodejs22.x"
MAX_NPM_LINES = 40


class NpmError(Exception):
    """npm is missing or failed; ``npm_lines`` are the end of its own account."""

    def __init__(self, message: str, npm_lines: list[str] | None = None) -> None:
        super().__init__(message)
        self.npm_lines = npm_lines or []


def is_node_project(path: Path) -> bool:
    return path.is_dir() and (path / PACKAGE_JSON).is_file()


def npm_command(root: Path) -> list[str]:
    npm = shutil.which("npm")
    if npm is None:
        raise NpmError("npm is not installed: it installs the package.json's dependencies")
    verb = "ci" if any((root / name).is_file() for name in LOCKFILES) else "install"
    return [npm, verb, "--omit=dev", "--no-audit", "--no-fund", "--loglevel=http"]


def run_npm(command: list[str], cwd: Path, progress: Callable[[str], None]) -> None:
    """Run npm in ``cwd``, each line of its output to ``progress``; NpmError on failure."""
    lines: list[str] = []
    with subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip()
            if line:
                lines.append(line)
                progress(line)
    if process.returncode != 0:
        raise NpmError(
            f"`{' '.join(command[1:3])}` failed (exit {process.returncode})",
            lines[-MAX_NPM_LINES:],
        )


@contextmanager
def installed_copy(root: Path, console: Console | None = None) -> Iterator[Path]:
    """A scratch copy of ``root`` with its production dependencies installed."""
    console = console or Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="ember-npm-") as scratch:
        work = Path(scratch) / "package"
        shutil.copytree(root, work, ignore=shutil.ignore_patterns("node_modules", ".git"))
        command = npm_command(work)
        if command[1] == "install":
            console.print("dependencies: no package-lock.json; `npm install --omit=dev` resolves")
        with console.status(f"npm {command[1]} --omit=dev") as status:
            try:
                run_npm(command, work, lambda line: status.update(f"npm: {line}"))
            except NpmError as failure:
                status.stop()
                for line in failure.npm_lines:  # npm's own words, before ember's summary
                    console.print(line, markup=False, highlight=False, style="dim")
                raise
        modules = work / "node_modules"
        # Entries, not dotfiles (npm keeps its own .package-lock.json there).
        count = (
            sum(1 for p in modules.iterdir() if not p.name.startswith("."))
            if modules.is_dir()
            else 0
        )
        console.print(f"dependencies: npm {command[1]} installed {count} package(s) into the zip")
        yield work
