"""Which interpreter runs each python3.x runtime on this host, and the host's architecture.

A runtime the host lacks is missing, never substituted: a function built for
Python 3.14 does not run on another interpreter with wheels made for 3.14.
A candidate interpreter is run once and must report its own version before it
is trusted (a pyenv shim for a version that is not installed fails and is skipped).
"""

from __future__ import annotations

import functools
import glob
import os
import platform
import shutil
import subprocess
import sys

PYTHON_RUNTIMES = tuple(f"python3.{minor}" for minor in range(9, 15))
# Custom runtimes: the package's ``bootstrap`` talks to the Runtime API.
PROVIDED_RUNTIMES = ("provided", "provided.al2", "provided.al2023")


def _probe(candidate: str, version: str) -> str | None:
    """Resolve ``candidate`` to the real binary if it really is ``version``.

    Shims (pyenv) and wrappers are resolved once by asking the interpreter
    itself, so that the zygote starts from the real executable.
    """
    try:
        out = subprocess.run(
            [
                candidate,
                "-I",
                "-c",
                "import sys; print(sys.executable); print('%d.%d' % sys.version_info[:2])",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env={"PATH": os.environ.get("PATH", "")},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.split()
    if out.returncode != 0 or len(lines) != 2 or lines[1] != version:
        return None
    return lines[0]


@functools.cache
def interpreter_for(runtime: str) -> str | None:
    """The interpreter that runs ``runtime`` here, or None when the host has none.

    A custom runtime's sandbox is served by the server's own interpreter
    (only the Runtime API runs in it; the bootstrap is the function's).
    Probed once per process: an interpreter installed later needs a restart.
    """
    if runtime in PROVIDED_RUNTIMES:
        return sys.executable
    version = runtime.removeprefix("python")
    own = f"{sys.version_info.major}.{sys.version_info.minor}"
    if version == own:
        return sys.executable
    for candidate in candidates(version):
        resolved = _probe(candidate, version)
        if resolved:
            return resolved
    return None


def candidates(version: str) -> list[str]:
    """Where a ``python{version}`` may be, in order: PATH, pyenv, /usr/local, /usr."""
    found = shutil.which(f"python{version}")
    paths = [found] if found else []
    paths += sorted(
        glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}"))
    )
    paths += sorted(glob.glob(f"/usr/local/bin/python{version}"))
    paths += sorted(glob.glob(f"/usr/bin/python{version}"))
    return paths


def installed() -> tuple[str, ...]:
    """The runtimes this host can run (a probe per missing interpreter, once)."""
    return tuple(r for r in PYTHON_RUNTIMES + PROVIDED_RUNTIMES if interpreter_for(r))


def host_architecture() -> str:
    """Lambda's name for this machine's architecture: ``x86_64`` or ``arm64``."""
    machine = platform.machine().lower()
    return "arm64" if machine in ("aarch64", "arm64") else "x86_64"
