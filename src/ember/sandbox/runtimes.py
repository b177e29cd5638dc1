"""Which interpreter runs each python3.x runtime on this host."""

from __future__ import annotations

import functools
import glob
import os
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
def interpreter_for(runtime: str) -> tuple[str, bool]:
    """(path to the interpreter, whether it matches ``runtime``).

    Falls back to the server's own interpreter when the host lacks a match.
    A custom runtime's sandbox is served by the server's own interpreter
    (only the Runtime API runs in it; the bootstrap is the function's).
    """
    if runtime in PROVIDED_RUNTIMES:
        return sys.executable, True
    version = runtime.removeprefix("python")
    own = f"{sys.version_info.major}.{sys.version_info.minor}"
    if version == own:
        return sys.executable, True
    candidates = []
    found = shutil.which(f"python{version}")
    if found:
        candidates.append(found)
    candidates += sorted(glob.glob(f"/root/.pyenv/versions/{version}*/bin/python{version}"))
    candidates += sorted(glob.glob(f"/usr/local/bin/python{version}"))
    candidates += sorted(glob.glob(f"/usr/bin/python{version}"))
    for candidate in candidates:
        resolved = _probe(candidate, version)
        if resolved:
            return resolved, True
    return sys.executable, False
