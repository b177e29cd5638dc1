"""Find where this process may create sandbox cgroups (v1 or v2).

Sandboxes are nested under the platform's own cgroup (``/proc/self/cgroup``)
in a directory ``ember-<pid>`` per server process, so limits compose with
whatever the host put ember in, and a crashed server's leftovers are
recognisable and removed at the next start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

CONTROLLERS = ("memory", "pids", "cpu")
# Used when the host has it: idle sandboxes are frozen between calls.
OPTIONAL = ("freezer",)
PREFIX = "ember-"


@dataclass(frozen=True)
class CgroupLayout:
    version: int  # 1 or 2
    # v1: controller -> our parent directory; v2: {"unified": directory}.
    dirs: dict[str, str] = field(default_factory=dict)

    def as_config(self) -> dict[str, object]:
        return {"version": self.version, "dirs": dict(self.dirs)}


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, fstype, super options) of every cgroup mount."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(rest) >= 3 and rest[0] in ("cgroup", "cgroup2"):
            found.append((fields[4], rest[0], set(rest[2].split(","))))
    return found


def _own_paths() -> dict[str, str]:
    """controller -> our cgroup path; key "" for the v2 hierarchy."""
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            own[name] = path
    return own


def detect() -> CgroupLayout | None:
    """The layout to use, or None when this host gives us no usable cgroups."""
    own = _own_paths()
    mounts = _mounts()
    v1: dict[str, str] = {}
    for controller in CONTROLLERS + OPTIONAL:
        for point, fstype, options in mounts:
            if fstype == "cgroup" and controller in options and controller in own:
                v1[controller] = os.path.join(point, own[controller].lstrip("/"))
                break
    if all(controller in v1 for controller in CONTROLLERS):
        return CgroupLayout(1, v1)
    for point, fstype, _ in mounts:
        if fstype == "cgroup2" and "" in own:
            base = os.path.join(point, own[""].lstrip("/"))
            available = set(Path(point, "cgroup.controllers").read_text().split())
            if {"memory", "pids"} <= available:
                return CgroupLayout(2, {"unified": base})
    return None


def create_parent(layout: CgroupLayout) -> CgroupLayout:
    """Make ``ember-<pid>`` under each directory; return the layout pointing there."""
    name = f"{PREFIX}{os.getpid()}"
    dirs = {}
    for controller, base in layout.dirs.items():
        path = os.path.join(base, name)
        os.makedirs(path, exist_ok=True)
        if layout.version == 2:
            # Children may only use controllers their parent enables for them.
            Path(path, "cgroup.subtree_control").write_text("+memory +pids +cpu")
        dirs[controller] = path
    return CgroupLayout(layout.version, dirs)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs. A zombie (exited, not yet reaped: a server
    killed while its parent, say a shell or a supervisor, has not waited for it) is
    dead: it holds no cgroup and will never clean up after itself."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive, unless /proc says it is a zombie
    return _state(pid) not in ("Z", "X")


def _state(pid: int) -> str | None:
    """The state letter of /proc/<pid>/stat (after the command, which may hold spaces)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :][:1] or None


def _remove_tree(path: str) -> None:
    for root, dirs, _files in os.walk(path, topdown=False):
        for name in dirs:
            _kill_and_rmdir(os.path.join(root, name))
    _kill_and_rmdir(path)


def _kill_and_rmdir(path: str) -> None:
    deadline = time.monotonic() + 2.0
    while True:
        with contextlib.suppress(OSError):
            for pid in Path(path, "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        # A frozen sandbox (its zygote died while it idled) cannot die until thawed.
        for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            with contextlib.suppress(OSError):
                Path(path, name).write_text(value)
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def remove_parent(layout: CgroupLayout) -> None:
    """Remove our ``ember-<pid>`` directories (and anything left inside)."""
    for path in layout.dirs.values():
        with contextlib.suppress(FileNotFoundError):
            _remove_tree(path)


def remove_stale(layout: CgroupLayout) -> list[str]:
    """Remove ``ember-<pid>`` directories whose server is gone; return them."""
    removed = []
    for base in layout.dirs.values():
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(base):
                if not entry.is_dir() or not entry.name.startswith(PREFIX):
                    continue
                pid = entry.name[len(PREFIX) :]
                if pid.isdigit() and not pid_alive(int(pid)):
                    with contextlib.suppress(OSError):
                        _remove_tree(entry.path)
                        removed.append(entry.path)
    return removed


def freezer_file(layout: CgroupLayout, paths: list[str]) -> tuple[str, str, str] | None:
    """(file, value that freezes, value that thaws) for a sandbox's cgroups, if any."""
    if layout.version == 2:
        return (os.path.join(paths[0], "cgroup.freeze"), "1", "0") if paths else None
    parent = layout.dirs.get("freezer")
    for path in paths:
        if parent is not None and os.path.dirname(path) == parent:
            return os.path.join(path, "freezer.state"), "FROZEN", "THAWED"
    return None


def memory_peak_file(layout: CgroupLayout, paths: list[str]) -> str | None:
    """The file holding the most memory a sandbox's cgroup has used, if it has one:
    ``memory.max_usage_in_bytes`` (v1) or ``memory.peak`` (v2, Linux 5.19+)."""
    if layout.version == 2:
        peak = os.path.join(paths[0], "memory.peak") if paths else None
        return peak if peak and os.path.exists(peak) else None
    parent = layout.dirs.get("memory")
    for path in paths:
        if parent is not None and os.path.dirname(path) == parent:
            return os.path.join(path, "memory.max_usage_in_bytes")
    return None


def read_peak_kb(path: str) -> int:
    """KiB in a peak-memory file; 0 when it cannot be read (the sandbox is gone)."""
    try:
        with open(path, "rb") as handle:
            return int(handle.read()) // 1024
    except (OSError, ValueError):
        return 0
