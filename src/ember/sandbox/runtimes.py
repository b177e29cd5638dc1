"""Which interpreter runs each runtime on this host, and the host's architecture.

A runtime the host lacks is missing, never substituted: a function built for
Python 3.14 does not run on another interpreter with wheels made for 3.14.
A candidate interpreter is run once and must report its own version before it
is trusted (a pyenv shim for a version that is not installed fails and is skipped).
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from ember import interpreters

PYTHON_RUNTIMES = tuple(f"python3.{minor}" for minor in range(9, 15))
# Custom runtimes: the package's ``bootstrap`` talks to the Runtime API.
PROVIDED_RUNTIMES = ("provided", "provided.al2", "provided.al2023")
# Node.js: ember's runtime (runtime/node/index.mjs) on that major's node binary,
# served the Runtime API like a custom runtime.
NODE_RUNTIMES = ("nodejs20.x", "nodejs22.x", "nodejs24.x")
ALL_RUNTIMES = PYTHON_RUNTIMES + NODE_RUNTIMES + PROVIDED_RUNTIMES
# ember's Node runtime: index.mjs and the modules a pre-started runtime warms up with.
NODE_RUNTIME_DIR = Path(__file__).resolve().parent.parent / "runtime" / "node"
# Where ``ember runtimes install`` puts each Node major (``<root>/<runtime>/bin/node``).
# Set once at start-up from the data dir (``use_runtimes_dir``); a process-wide
# setting because the sandbox layer and the registry's check both read it.
_RUNTIMES_DIR: list[Path] = [Path(".ember-data/runtimes")]


def use_runtimes_dir(path: Path) -> None:
    """Where installed runtimes live (``<data_dir>/runtimes``); created if missing."""
    path.mkdir(parents=True, exist_ok=True)
    _RUNTIMES_DIR[0] = path.resolve()


def runtimes_dir() -> Path:
    return _RUNTIMES_DIR[0]


def node_major(runtime: str) -> str:
    """``nodejs22.x`` -> ``22``."""
    return runtime.removeprefix("nodejs").removesuffix(".x")


def node_binary(runtime: str) -> str | None:
    """The node that runs ``runtime``: the installed one, else the host's own
    ``node`` when it is that same major (never another major)."""
    installed = runtimes_dir() / runtime / "bin" / "node"
    if os.access(installed, os.X_OK):
        return str(installed)
    return _host_node(node_major(runtime))


@functools.cache
def _host_node(major: str) -> str | None:
    """The host's ``node`` if it is Node ``major``: probed once per process (a
    subprocess costs tens of milliseconds, and this runs at each sandbox start)."""
    found = shutil.which("node")
    if found is None:
        return None
    try:
        out = subprocess.run(
            [found, "-p", "process.versions.node + ' ' + process.execPath"],
            capture_output=True,
            text=True,
            timeout=interpreters.PROBE_TIMEOUT_SECONDS,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = out.stdout.split()
    if out.returncode != 0 or len(parts) != 2 or parts[0].split(".")[0] != major:
        return None
    return parts[1]


def serves_runtime_api(runtime: str) -> bool:
    """Whether the sandbox serves the Runtime API (custom and Node runtimes)."""
    return runtime in PROVIDED_RUNTIMES or runtime in NODE_RUNTIMES


def interpreter_for(runtime: str) -> str | None:
    """The interpreter that runs ``runtime`` here, or None when the host has none.

    A custom runtime's sandbox is served by the server's own interpreter
    (only the Runtime API runs in it; the bootstrap is the function's).
    Probed once per process (``ember.interpreters``): one installed later
    needs a restart.
    """
    if runtime in PROVIDED_RUNTIMES:
        return sys.executable
    if runtime in NODE_RUNTIMES:
        # Like a custom runtime's; the node binary is looked up at each create.
        return sys.executable if node_binary(runtime) else None
    return interpreters.find(runtime.removeprefix("python"))


def installed() -> tuple[str, ...]:
    """The runtimes this host can run (a probe per missing interpreter, once)."""
    return tuple(r for r in ALL_RUNTIMES if interpreter_for(r))


def host_architecture() -> str:
    """Lambda's name for this machine's architecture: ``x86_64`` or ``arm64``."""
    machine = platform.machine().lower()
    return "arm64" if machine in ("aarch64", "arm64") else "x86_64"
