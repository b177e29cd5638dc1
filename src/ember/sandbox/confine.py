"""Confinement primitives used inside the zygote and the freshly forked child.

Loaded by the zygote as ``_ember_confine`` under the function's own
interpreter (python3.9 and up): standard library only, Python 3.9 syntax.
The platform decides the policy (limits, paths); this module only applies it.

Cgroups: the platform finds one parent directory per controller (v1) or one
directory (v2) and passes it in; ``create_cgroup`` makes ``sb-<id>`` under
each with the limits set, the child attaches itself (writing ``0`` into
``tasks`` skips the global cgroup lock that makes a parent-side attach stall
for ~12 ms after an idle gap), and ``remove_cgroup`` kills whatever is left
and removes the directories once the leader has been reaped.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import time
from typing import Any

CLONE_NEWCGROUP = 0x02000000
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, "{0}: {1}".format(what, os.strerror(err)))


def prctl(option: int, value: int) -> None:
    _check(_libc.prctl(option, value, 0, 0, 0), "prctl")


# Control files through bare descriptors: each sandbox's creation writes and
# reads several, and open()'s buffered text stack was most of each one's cost
# (and, in a fork, of the pages it touches).


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode()
    except OSError:
        return ""
    finally:
        os.close(fd)


# --- cgroups (zygote side) -------------------------------------------------


def create_cgroup(
    cgroups: dict[str, Any], sandbox_id: str, limits: dict[str, int] | None
) -> list[str]:
    """Create the sandbox's cgroup directories with its limits (None: the parent's); return them."""
    if not cgroups:
        return []
    name = "sb-" + sandbox_id
    created = []
    try:
        for _controller, parent in sorted(cgroups["dirs"].items()):
            path = os.path.join(parent, name)
            os.mkdir(path)
            created.append(path)
        if limits is not None:
            set_limits(cgroups, created, limits)
    except OSError:
        for path in created:
            _rmdir_quietly(path)
        raise
    return created


def set_limits(cgroups: dict[str, Any], paths: list[str], limits: dict[str, int]) -> None:
    """Write memory, pids and CPU limits into a sandbox's cgroup directories."""
    if cgroups.get("version") == 2:
        for path in paths:
            _write(os.path.join(path, "memory.max"), str(limits["memory"]))
            _write(os.path.join(path, "memory.swap.max"), "0")
            _write(os.path.join(path, "pids.max"), str(limits["pids"]))
            weight = max(1, min(10000, limits["cpu_shares"] * 100 // 1024))
            _write(os.path.join(path, "cpu.weight"), str(weight))
        return
    for path in paths:
        controller = _controller_of(cgroups, path)
        if controller == "memory":
            # memory before memsw: memsw may never be below memory.
            _write(os.path.join(path, "memory.limit_in_bytes"), str(limits["memory"]))
            memsw = os.path.join(path, "memory.memsw.limit_in_bytes")
            if os.path.exists(memsw):
                _write(memsw, str(limits["memory"]))
        elif controller == "pids":
            _write(os.path.join(path, "pids.max"), str(limits["pids"]))
        elif controller == "cpu":
            _write(os.path.join(path, "cpu.shares"), str(limits["cpu_shares"]))


def controller_paths(cgroups: dict[str, Any], paths: list[str], controller: str) -> list[str]:
    """Those of ``paths`` that belong to ``controller`` (v2: all of them: one hierarchy)."""
    if cgroups.get("version") == 2:
        return list(paths)
    return [path for path in paths if _controller_of(cgroups, path) == controller]


def _controller_of(cgroups: dict[str, Any], path: str) -> str:
    parent = os.path.dirname(path)
    for controller, directory in cgroups["dirs"].items():
        if directory == parent:
            return str(controller)
    return ""


def attach_self(paths: list[str], version: int) -> None:
    """Move the calling (single-threaded, freshly forked) process into ``paths``."""
    target = "cgroup.procs" if version == 2 else "tasks"
    for path in paths:
        _write(os.path.join(path, target), "0")


def join_files(paths: list[str], version: int) -> list[int]:
    """Open descriptors of the files a process writes "0" to, to join ``paths``
    (``attach_self`` done through descriptors, by a process that cannot see them)."""
    target = "cgroup.procs" if version == 2 else "tasks"
    fds: list[int] = []
    try:
        for path in paths:
            fds.append(os.open(os.path.join(path, target), os.O_WRONLY | os.O_CLOEXEC))
    except OSError:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def oom_kills(paths: list[str], version: int) -> int:
    """How many times the kernel's OOM killer fired inside these memory cgroups."""
    kills = 0
    for path in paths:
        name = "memory.events" if version == 2 else "memory.oom_control"
        for line in _read(os.path.join(path, name)).splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                kills += int(value)
    return kills


def renew(cgroups: dict[str, Any], paths: list[str]) -> None:
    """Make the (v1) cgroups of an ended sandbox fit for the next: its peak memory
    reset, thawed (a freeze may have raced its exit). Raises OSError."""
    for path in paths:
        controller = _controller_of(cgroups, path)
        if controller == "memory":
            _write(os.path.join(path, "memory.max_usage_in_bytes"), "0")
        elif controller == "freezer":
            _write(os.path.join(path, "freezer.state"), "THAWED")


def kill_all(paths: list[str]) -> int:
    """SIGKILL every process still in the sandbox's cgroups; return how many.

    A frozen sandbox is thawed after the signal: frozen tasks cannot die.
    """
    killed = 0
    for path in paths:
        for pid in _read(os.path.join(path, "cgroup.procs")).split():
            try:
                os.kill(int(pid), signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    for path in paths:
        for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            state = os.path.join(path, name)
            if os.path.exists(state):
                with contextlib.suppress(OSError):
                    _write(state, value)
    return killed


def thaw(paths: list[str]) -> None:
    """Let a (possibly) frozen sandbox run again, so that a SIGKILL can end it."""
    for path in paths:
        for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            with contextlib.suppress(OSError):  # not this controller's directory
                _write(os.path.join(path, name), value)


def _rmdir_quietly(path: str) -> bool:
    try:
        os.rmdir(path)
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


def remove_cgroup(paths: list[str], reap: Any) -> list[str]:
    """Kill what is left, reap it, remove the directories; return any that stayed."""
    deadline = time.monotonic() + 2.0
    # Usually the reaped leader was the last process: an empty cgroup just goes.
    remaining = [path for path in paths if not _rmdir_quietly(path)]
    while remaining:
        kill_all(remaining)
        reap()
        remaining = [path for path in remaining if not _rmdir_quietly(path)]
        if not remaining or time.monotonic() > deadline:
            break
        time.sleep(0.002)
    return remaining


# --- the child -------------------------------------------------------------


def set_rlimits(limits: dict[str, int]) -> None:
    """No core dumps, bounded open files, and no file larger than /tmp can hold."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    nofile = limits.get("nofile", 1024)
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    if "fsize" in limits:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits["fsize"], limits["fsize"]))


def prepare(
    cgroup_paths: list[str],
    cgroup_version: int,
    isolated: bool = False,
    joins: list[int] | None = None,
) -> None:
    """The part of confinement that does not depend on the function.

    Runs right after fork, in a pre-forked "blank" sandbox as well, so that
    claiming a blank only pays for ``specialize``. ``joins``: descriptors of
    the cgroups' ``tasks`` files (``join_files``), for a sandbox that does not
    see the host's paths; each is written and closed.
    """
    os.setsid()
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if joins:
        for fd in joins:
            os.write(fd, b"0")
            os.close(fd)
    else:
        attach_self(cgroup_paths, cgroup_version)
    if cgroup_paths and isolated:
        # A cgroup namespace rooted here: /proc/self/cgroup shows "/", not
        # the host's layout (which names the server's pid).
        _check(_libc.unshare(CLONE_NEWCGROUP), "unshare(CLONE_NEWCGROUP)")


def specialize(spec: dict[str, Any], task_root: str) -> None:
    """Limits and working directory for one function, before any user code runs."""
    set_rlimits(spec.get("rlimits", {}))
    os.chdir(task_root)
    os.umask(0o022)
