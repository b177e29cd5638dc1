"""Which interpreter runs each python3.x runtime on this host, and the host's architecture.

A runtime the host lacks is missing, never substituted: a function built for
Python 3.14 does not run on another interpreter with wheels made for 3.14.
A candidate interpreter is run once and must report its own version before it
is trusted (a pyenv shim for a version that is not installed fails and is skipped).
"""

from __future__ import annotations

import platform
import sys

from ember import interpreters

PYTHON_RUNTIMES = tuple(f"python3.{minor}" for minor in range(9, 15))
# Custom runtimes: the package's ``bootstrap`` talks to the Runtime API.
PROVIDED_RUNTIMES = ("provided", "provided.al2", "provided.al2023")


def interpreter_for(runtime: str) -> str | None:
    """The interpreter that runs ``runtime`` here, or None when the host has none.

    A custom runtime's sandbox is served by the server's own interpreter
    (only the Runtime API runs in it; the bootstrap is the function's).
    Probed once per process (``ember.interpreters``): one installed later
    needs a restart.
    """
    if runtime in PROVIDED_RUNTIMES:
        return sys.executable
    return interpreters.find(runtime.removeprefix("python"))


def installed() -> tuple[str, ...]:
    """The runtimes this host can run (a probe per missing interpreter, once)."""
    return tuple(r for r in PYTHON_RUNTIMES + PROVIDED_RUNTIMES if interpreter_for(r))


def host_architecture() -> str:
    """Lambda's name for this machine's architecture: ``x86_64`` or ``arm64``."""
    machine = platform.machine().lower()
    return "arm64" if machine in ("aarch64", "arm64") else "x86_64"
