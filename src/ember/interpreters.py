"""Finding a Python interpreter of one version on this machine, trusting none untried.

Shared by the sandbox layer (which interpreter runs a ``python3.x`` runtime) and
the CLI (which pip builds a function's dependencies), so both find the same one.
A candidate is run once and must report its own version before it is trusted:
a pyenv shim for a version that is not installed exists on PATH and fails, and
a wrapper may start another Python than its name says. Standard library only.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import sys

PROBE_TIMEOUT_SECONDS = 30
_REPORT = "import sys; print(sys.executable); print('%d.%d' % sys.version_info[:2])"


def candidates(version: str) -> list[str]:
    """Where a ``python{version}`` may be, in order: PATH, pyenv, /usr/local, /usr."""
    found = shutil.which(f"python{version}")
    paths = [found] if found else []
    pyenv = os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}")
    paths += sorted(glob.glob(pyenv))
    paths += [f"/usr/local/bin/python{version}", f"/usr/bin/python{version}"]
    return [path for index, path in enumerate(paths) if path not in paths[:index]]


def probe(candidate: str, version: str) -> str | None:
    """The real executable behind ``candidate`` if it runs and really is ``version``.

    Shims and wrappers are resolved by asking the interpreter itself, so that
    what is started later is the real binary.
    """
    try:
        out = subprocess.run(
            [candidate, "-I", "-c", _REPORT],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_SECONDS,
            env={"PATH": os.environ.get("PATH", "")},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.split()
    if out.returncode != 0 or len(lines) != 2 or lines[1] != version:
        return None
    return lines[0]


@functools.cache
def find(version: str) -> str | None:
    """This machine's interpreter of Python ``version`` ("3.12"), or None.

    The running interpreter when it is that version. Probed once per process:
    an interpreter installed later is found after a restart.
    """
    if version == f"{sys.version_info.major}.{sys.version_info.minor}":
        return sys.executable
    for candidate in candidates(version):
        if os.path.exists(candidate):
            resolved = probe(candidate, version)
            if resolved:
                return resolved
    return None


__all__ = ["candidates", "find", "probe"]
