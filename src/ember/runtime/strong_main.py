"""The Python runtime's entry point inside a gVisor sandbox.

gVisor sandboxes are started as a new interpreter (no zygote to fork from),
so this file does what the zygote does for the standard backend: load the
wire format and the runtime loop (or, with ``--runtime-api``, the Runtime
API for a custom runtime's bootstrap), and serve frames — here over stdin and
stdout, the only channels ``runsc do`` passes through. Output a function
writes to fd 1 or 2 goes to stderr, which the worker reads as the log pipe.

Standard library only, Python 3.9 syntax.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


def _load(name: str, file: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, file))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


class _Pipes:
    """The two calls ``pyloop.run`` makes on its socket, over a pair of pipes."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._read_fd = read_fd
        self._write_fd = write_fd

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._write_fd, view) :]

    def makefile(self, mode: str) -> Any:
        return os.fdopen(self._read_fd, "rb")


def main() -> int:
    _load("_ember_frames", "frames.py")
    # Keep the protocol on fds 3 and 4; fd 1 joins fd 2 (the log pipe).
    read_fd, write_fd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)
    os.chdir("/var/task")
    if sys.argv[1:2] == ["--runtime-api"]:
        # A custom runtime: serve the Runtime API to the package's bootstrap
        # on Lambda's port, on gVisor's own loopback.
        rapi = _load("_ember_rapi", "rapi.py")
        return int(rapi.run(read_fd, write_fd, "/var/task", rapi.PORT))
    pyloop = _load("_ember_pyloop", "pyloop.py")
    # Lambda's order: the task root, then the layers' Python directories.
    site = "/opt/python/lib/python%d.%d/site-packages" % sys.version_info[:2]
    sys.path[:0] = ["/var/task", site, "/opt/python"]
    return int(pyloop.run(_Pipes(read_fd, write_fd), sys.argv[1]))


if __name__ == "__main__":
    sys.exit(main())
