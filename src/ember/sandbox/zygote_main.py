"""The zygote: a trusted process per runtime that forks sandboxes.

Started by the platform as ``python -I zygote_main.py <control fd> <config
JSON>`` under the function's interpreter. It imports the runtime and common
standard-library modules once, freezes its heap, and then only ever forks:
it never imports or runs user code itself, and never reads a function's
environment (``_environment``): every sandbox is a copy of its memory. A new
sandbox is a fork of it (about 1-2 ms here) instead of a new interpreter
(about 40 ms).

The control socket (SOCK_SEQPACKET: one JSON message per record, fds passed
with SCM_RIGHTS) carries ``spawn`` and ``destroy`` requests in and ``hello``,
``spawn_failed`` and ``exited`` reports out. The zygote is the parent and
subreaper of every sandbox, so it reaps them (and any process a function
forked), reads whether the OOM killer fired, and removes their cgroups.
When the control socket closes, it destroys every sandbox and exits.

Standard library only, Python 3.9 syntax: it runs under python3.9 and up.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal.signal without its enum wrapping
import contextlib
import errno
import functools
import gc
import importlib.machinery
import importlib.util
import json
import os
import select
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
import traceback
from typing import Any

_CONFIG: dict[str, Any] = {}
_SANDBOXES: dict[int, tuple[str, list[str]]] = {}  # leader pid -> (sandbox id, cgroup dirs)
_PIDS: dict[str, int] = {}  # sandbox id -> leader pid
_EXITED: list[tuple[int, int | None]] = []  # (leader pid, wait status), not yet reported
_BLANKS: list[tuple[int, socket.socket]] = []  # pre-forked sandboxes: (pid, their socket)
_COUNTER: list[int] = []
# Pre-started runtimes that are not this interpreter (Node): each pool holds
# sandboxes whose runtime process already runs, isolated, waiting for its
# function on its socket. Keyed by what the runtime reads as it starts.
_STARTED: dict[str, list[tuple[int, socket.socket, int]]] = {}  # key -> (pid, socket, log fd)
_STARTED_KEYS: list[tuple[str, list[str], dict[str, Any], int]] = []  # refilled, latest last
_STARTED_OF: dict[int, str] = {}  # pid of a waiting runtime -> its key
STARTED_KINDS = 4  # start-up variants kept warm at once (most recently claimed)
SET_UP_TIMEOUT = 10.0  # seconds for a runtime started at its claim to be isolated
CLAIM = 11  # frames.py: the first frame a pre-started runtime reads
PARK_TIMEOUT = 2.0  # seconds for a SnapStart template to block in its read()
REFILL_AFTER = 0.005  # seconds of quiet before forking a replacement blank
WNOTHREAD = 0x20000000  # wait for the calling thread's children only (Linux's __WNOTHREAD)
# Full isolation (set up in main when the platform asks for it): the
# isolate module, the prebuilt seccomp filter, the runtime's directories.
_ISOLATION: dict[str, Any] = {}
_EGRESS: dict[int, Any] = {}  # sandbox pid -> its slirp4netns process
_RAPI: list[Any] = []  # the Runtime API module (custom runtimes)
# SnapStart (full isolation only): the restore module, each sandbox's uid (a
# template's forks keep it), and the pidfds of forked sandboxes, which are the
# template's children, not ours: their exit is seen through the pidfd.
_RESTORE: list[Any] = []
_UIDS: dict[str, int] = {}
_PIDFDS: dict[int, int] = {}  # forked sandbox pid -> its pidfd
_TEMPLATE_OF: dict[int, str] = {}  # forked sandbox pid -> its template's sandbox id
_TEMPLATES: set[str] = set()  # templates checked (while one lives, spare cgroups are kept)
_KILLED: set[int] = set()  # sandbox leaders sent SIGKILL, not reaped yet
_RESTORERS: list[Any] = []  # restore.Restorers, once the first restore is asked for
_RESTORING: dict[str, tuple[list[str], int, str]] = {}  # sandbox id -> (cgroups, uid, template)
# Cgroups made in quiet moments for the forks of templates: making one (a directory
# per controller) was a tenth of a restore, and a burst of cold calls waits for
# each restore in turn.
_SPARE_CGROUPS: list[list[str]] = []
SPARE_CGROUPS = 16
_RAPI_PORT = 9001  # Lambda's; a free port when there is no network namespace
# What a sandbox leaves, handed on (full isolation). When a sandbox ends, its
# network namespace (loopback up), if no socket is left in it, and its cgroups
# (v1: its peak memory can be reset there) are kept, and the next sandbox of
# the same function version forked on demand gets them. Making a namespace,
# bringing its loopback up and the kernel's deferred tear-down were ~1 ms of
# the ~8.5 ms of CPU a creation cost at ~240/s; making, limiting and removing
# four cgroup directories ~0.4 ms. Only the same version (one tenant, one
# configuration: the spec's "reuse" key) gets them: a namespace keeps counters
# of its sandboxes' traffic (/proc/net/snmp, lo's statistics), a memory cgroup
# the page cache they read.
_LEFT: dict[str, list[tuple[int, list[str] | None]]] = {}  # key -> (netns fd, cgroups); LRU
_LEFT_BY: dict[int, tuple[str, int]] = {}  # sandbox leader pid -> (its key, its netns fd)
_HOME_NETNS: list[int] = []  # the zygote's own network namespace
# Full isolation: the mount namespace every sandbox's is a copy of (only the staged
# tree, as its root: ``isolate.sandbox_mounts``), and the zygote's own.
_MOUNTS: list[int] = []
_HOME_MOUNTS: list[int] = []
_LIMITS: dict[str, dict[str, int]] = {}  # first cgroup dir of a sandbox -> limits written
_OOM_BASE: dict[str, int] = {}  # memory cgroup dir -> OOM kills before its sandbox
LEFT_KEPT = 32  # leftovers kept in all
# The overlay views of code and layer directories (``_view``), made once each and
# cloned for every sandbox: those directories never change (they are named by
# their digest), and a clone is a mount of the same read-only superblock. A
# directory removed and unpacked again is a new inode, and gets a new view.
_VIEWS: dict[str, tuple[int, tuple[int, ...]]] = {}  # dir -> (view, its _identity); LRU
VIEWS_KEPT = 32

# Imported once here so that a sandbox's Init does not pay for them. Kept to
# what handlers commonly import: every module here makes the zygote's heap,
# and so each fork and the child's first page faults, more expensive
# (asyncio alone added ~2 ms to a fork on these machines).
PRELOAD = (
    "base64",
    "collections",
    "copy",
    "dataclasses",
    "datetime",
    "decimal",
    "enum",
    "functools",
    "hashlib",
    "itertools",
    "json",
    "math",
    "random",
    "re",
    "string",
    "typing",
    "urllib.parse",
    "uuid",
)


def _load(name: str, path: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _send(ctl: socket.socket, message: dict[str, Any]) -> None:
    # When the platform is gone the send fails; shutdown follows from the EOF.
    with contextlib.suppress(OSError):
        ctl.send(json.dumps(message).encode("utf-8"))


def _collect() -> None:
    """Reap every exited child; remember the sandbox leaders among them.

    Only this thread's children (``__WNOTHREAD``: not the processes a restore
    thread traces), and never while a template is traced (``_tracing``)."""
    with _tracing():
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG | WNOTHREAD)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in _SANDBOXES:
                _EXITED.append((pid, status))


def _report_exits(ctl: socket.socket, confine: Any) -> None:
    version = _cgroup_version()
    while _EXITED:
        pid, status = _EXITED.pop(0)
        sandbox_id, paths = _SANDBOXES.pop(pid)
        _KILLED.discard(pid)
        _PIDS.pop(sandbox_id, None)
        helper = _EGRESS.pop(pid, None)
        if helper is not None:
            helper.kill()
            helper.wait()  # the child of a restore thread, which ``_collect`` leaves
        memory = confine.controller_paths(_CONFIG["cgroups"], paths, "memory")
        kills = confine.oom_kills(memory, version)
        oom = kills > _OOM_BASE.pop(memory[0] if memory else "", 0)
        leftover: list[str] = []
        if not _hand_on(pid, paths, memory, kills, confine):
            _LIMITS.pop(paths[0] if paths else "", None)
            leftover = confine.remove_cgroup(paths, _collect)
        if pid in _STARTED_OF:
            _forget_started(pid)
        if sandbox_id.startswith("blank-"):
            continue  # never handed out: nothing to report
        _UIDS.pop(sandbox_id, None)
        _TEMPLATES.discard(sandbox_id)
        _send(
            ctl,
            {
                "type": "exited",
                "id": sandbox_id,
                "pid": pid,
                # None: a sandbox forked from a template, reaped by it, not by us.
                "exitCode": None if status is None else os.waitstatus_to_exitcode(status),
                "oom": oom,
                "leftoverCgroups": leftover,
            },
        )


def _remember_key(pid: int, spec: dict[str, Any]) -> None:
    """Note the key of the sandbox ``pid`` just claimed for ``spec``, and hold its
    network namespace, to hand both on when it ends (``_LEFT``)."""
    if not spec.get("reuse") or spec.get("egress"):
        return  # egress: slirp4netns configured a device in it for this sandbox
    fd = -1
    with contextlib.suppress(OSError):  # it died already: nothing to keep
        fd = os.open("/proc/{0}/ns/net".format(pid), os.O_RDONLY | os.O_CLOEXEC)
    _LEFT_BY[pid] = (str(spec["reuse"]), fd)


def _hand_on(pid: int, paths: list[str], memory: list[str], kills: int, confine: Any) -> bool:
    """The sandbox ``pid`` ended, and every process of it (PID 1 of its namespace):
    keep what it leaves for the next sandbox of its key; say whether its cgroups
    were kept."""
    key, netns = _LEFT_BY.pop(pid, ("", -1))
    if not key:
        return False
    if netns >= 0:
        try:
            idle = _ISOLATION["module"].network_idle(netns, _HOME_NETNS[0])
        except OSError:
            idle = False
        if not idle:
            os.close(netns)
            netns = -1
    cgroups: list[str] | None = None
    if _cgroup_version() == 1 and paths:
        try:
            confine.renew(_CONFIG["cgroups"], paths)
            cgroups = paths
            if memory:
                _OOM_BASE[memory[0]] = kills
        except OSError:
            cgroups = None
    if netns < 0 and cgroups is None:
        return False
    kept = _LEFT.pop(key, [])  # re-inserted last: the most recently used key
    _LEFT[key] = [*kept, (netns, cgroups)]
    while sum(len(left) for left in _LEFT.values()) > LEFT_KEPT:
        oldest = next(iter(_LEFT))
        _drop_left(_LEFT[oldest].pop(0), confine)
        if not _LEFT[oldest]:
            del _LEFT[oldest]
    return cgroups is not None


def _drop_left(left: tuple[int, list[str] | None], confine: Any) -> None:
    netns, cgroups = left
    if netns >= 0:
        os.close(netns)
    if cgroups:
        _LIMITS.pop(cgroups[0], None)
        for path in cgroups:
            _OOM_BASE.pop(path, None)
        confine.remove_cgroup(cgroups, _collect)


def _take_left(spec: dict[str, Any]) -> tuple[int, list[str] | None]:
    """What a sandbox of ``spec``'s key left, for a new one (the caller closes the
    namespace's fd), or (-1, None)."""
    key = str(spec.get("reuse") or "")
    kept = _LEFT.get(key)
    if spec.get("egress") or not kept:
        return -1, None
    left = kept.pop()
    if not kept:
        del _LEFT[key]
    return left


def _set_limits(paths: list[str], limits: dict[str, int], confine: Any) -> None:
    """``confine.set_limits``, skipped where these limits are already written
    (cgroups handed on within one function version)."""
    if paths and _LIMITS.get(paths[0]) == limits:
        return
    confine.set_limits(_CONFIG["cgroups"], paths, limits)
    if paths:
        _LIMITS[paths[0]] = limits


def _reset_process(ctl: socket.socket) -> None:
    """Forget the zygote's event loop in a fresh child. Its selector is left as it
    is: closing it would walk (and copy the pages of) the zygote's registrations,
    and its descriptor goes with every other inherited one (``_child``, ``_run``).
    ``_signal``, not ``signal``: the latter's enum wrapping made this step ~3x dearer
    (~25 more pages copied from the zygote's)."""
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
        _signal.signal(signum, _signal.SIG_DFL)
    _signal.set_wakeup_fd(-1)
    ctl.detach()  # closed with every other inherited fd in _run


def _run(spec: dict[str, Any], fds: list[int], confine: Any, pyloop: Any) -> int:
    """Specialise this child for one function and serve it; return the exit status."""
    isolate = _ISOLATION.get("module")
    task_root = spec["code_dir"]
    # fds: socket, log, environment, then the code's mount tree and, with layers, /opt's.
    env = _environment(fds[2])
    if isolate is not None:
        opt_tree = fds[4] if len(fds) > 4 else -1
        isolate.enter_task(fds[3], int(spec["tmp_mb"]), bool(spec.get("egress")), opt_tree)
        task_root = isolate.TASK_ROOT
    confine.specialize(spec, task_root)
    sock_fd, log_fd = fds[:2]
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.dup2(sock_fd, 3)
    os.closerange(4, 1 << 20)
    os.environ.clear()
    os.environ.update(env)
    if isolate is not None:
        isolate.drop_privileges(int(spec["uid"]), int(spec["uid"]), _ISOLATION["userns"])
        _ISOLATION["filter"].load()  # last: from here on only what a function may do
    if spec.get("exec"):
        # A runtime speaking the frames on fd 3 itself (Node): it becomes the sandbox.
        os.chdir(task_root)
        os.execve(spec["exec"][0], spec["exec"], dict(os.environ))
    if spec.get("custom"):
        # A custom runtime: this process serves the Runtime API to its
        # bootstrap, on Lambda's port inside its own network namespace.
        port = _RAPI_PORT if isolate is not None else 0
        return int(_RAPI[0].run(3, 3, task_root, port, spec.get("command")))
    sys.path[:] = [task_root, *spec.get("extra_path", []), *_CONFIG["base_path"]]
    if isolate is not None:
        # Everything importable is read-only here: skip the attempt to cache
        # bytecode (a failed mkdir and an exception per module imported).
        sys.dont_write_bytecode = True
    sock = socket.socket(fileno=3)
    return int(pyloop.run(sock, spec["handler"]))


def _environment(fd: int) -> dict[str, str]:
    """The sandbox's environment, which the platform wrote to ``fd`` (a sealed memfd).
    Read here, in the sandbox: never in the zygote, whose memory (freed memory
    included) every later sandbox copies, whatever function it runs."""
    size = os.fstat(fd).st_size
    env: dict[str, str] = json.loads(os.pread(fd, size, 0)) if size else {}
    return env


def _send_claim(fd: int, head: bytes, env_fd: int) -> None:
    """Write a CLAIM frame to the runtime on ``fd``: ``head`` (a JSON object's start,
    up to ``"env": ``), the environment in ``env_fd`` and the closing brace. The
    environment goes from the memfd to the socket in the kernel (``sendfile``), so
    it never enters the zygote's memory (``_environment``)."""
    size = os.fstat(env_fd).st_size
    _write_all(fd, struct.pack("!IB", len(head) + size + 1, CLAIM) + head)
    sent = 0
    while sent < size:
        sent += os.sendfile(fd, env_fd, sent, size - sent)
    _write_all(fd, b"}")


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _new_process(netns: int = -1) -> int:
    """fork(), or with full isolation a clone() straight into new namespaces (into
    ``netns`` instead of a new network namespace, when one is given)."""
    isolate = _ISOLATION.get("module")
    if isolate is None:
        return os.fork()
    home = _HOME_NETNS[0] if netns >= 0 else -1
    return int(isolate.clone_isolated(netns, home, _MOUNTS[0], _HOME_MOUNTS[0]))


def _new_uid() -> int:
    """An unprivileged uid (and gid) of its own for each sandbox."""
    _COUNTER.append(1)
    return int(_CONFIG.get("uid_base", 100000)) + len(_COUNTER) % 50000


def _assign_identity(spec: dict[str, Any]) -> None:
    spec["uid"] = _new_uid()


def _set_up_child(
    ctl: socket.socket,
    paths: list[str],
    made: tuple[list[int], int],
    confine: Any,
    new_netns: bool = True,
) -> None:
    """What every new sandbox does first, in this order, whatever it runs: forget the
    zygote's loop, join its cgroup, and (full isolation) stage its root. ``made``:
    what the zygote prepared for it (``_prepare``)."""
    _reset_process(ctl)
    joins, runtimes = made
    confine.prepare(paths, _cgroup_version(), _ISOLATION.get("module") is not None, joins)
    if _ISOLATION.get("module") is not None:
        _ISOLATION["module"].prepare_root(runtimes, new_netns, staged=True)


def _prepare(paths: list[str], confine: Any, node: bool = False) -> tuple[list[int], int]:
    """What the zygote opens for a sandbox it is about to clone, which sees none of
    the host's paths (full isolation): its cgroups' ``tasks`` files to join, and
    for a ``node`` one a view of the installed runtimes (only node reads them; made
    for each, since runtimes are installed while the zygote runs). ``_forget``
    closes them in the zygote once the clone holds them."""
    isolate = _ISOLATION.get("module")
    if isolate is None:
        return [], -1
    joins = confine.join_files(paths, _cgroup_version())
    runtimes = _CONFIG.get("runtimes_dir", "")
    if not (node and runtimes and os.path.isdir(runtimes)):
        return joins, -1
    try:
        return joins, _make_view(isolate, runtimes)
    except OSError:
        _forget((joins, -1))
        raise


def _forget(made: tuple[list[int], int]) -> None:
    for fd in [*made[0], made[1]]:
        if fd >= 0:
            os.close(fd)


def _child(
    ctl: socket.socket,
    paths: list[str],
    made: tuple[list[int], int],
    confine: Any,
    pyloop: Any,
    spec: dict[str, Any] | None,
    fds: list[int],
    blank: socket.socket | None,
    warm: bool = True,
    new_netns: bool = True,
) -> None:
    """A new sandbox: run ``spec`` at once, or (a blank) wait on ``blank`` for it,
    exercising Init's code paths first when ``warm`` (see ``_fork_blank``)."""
    code = 70  # EX_SOFTWARE: confinement or the runtime itself failed
    try:
        try:
            _set_up_child(ctl, paths, made, confine, new_netns)
            if blank is not None and _ISOLATION.get("module") is not None:
                _ISOLATION["module"].enter_staged_root(staged=True)
        except OSError as exc:
            # A host that cannot confine (the start-up check says so): one line.
            os.write(2, "ember sandbox: set-up failed: {0}\n".format(exc).encode())
            return  # exits 70
        if blank is not None:
            # Hold nothing of the zygote's while waiting (other blanks' sockets).
            keep = blank.fileno()
            os.closerange(3, keep)
            os.closerange(keep + 1, 1 << 20)
            if warm:
                pyloop.prewarm()
            data, fds, _flags, _addr = socket.recv_fds(blank, 1 << 20, 5)
            if not data:
                os._exit(0)  # the zygote is shutting down
            spec = json.loads(data)
            blank.close()
        assert spec is not None
        code = _run(spec, fds, confine, pyloop)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            os.write(2, (str(exc.code) + "\n").encode("utf-8", "replace"))
            code = 1
    except BaseException:
        with contextlib.suppress(OSError):
            os.write(2, traceback.format_exc().encode("utf-8", "replace"))
    finally:
        os._exit(code)


def _cgroup_version() -> int:
    return int(_CONFIG["cgroups"].get("version", 0)) if _CONFIG["cgroups"] else 0


def _fork_blank(
    ctl: socket.socket,
    selector: Any,
    confine: Any,
    pyloop: Any,
    warm: bool = True,
    left: tuple[int, list[str] | None] = (-1, None),
) -> None:
    """Pre-fork one sandbox that waits for a function (raises OSError when it cannot).

    Every sandbox starts as a blank: claimed at once when the pool is empty,
    otherwise ahead of time so that a cold start skips fork and set-up. A
    blank forked ahead of time is ``warm``: it takes Init's page faults while
    it waits. One claimed at once would only take them before Init instead of
    during it, with the prewarm's own work on top (~0.3 ms of the ~9 ms of CPU
    a sandbox's creation cost at ~200/s sustained). ``left``: what a sandbox of
    the same version left (``_take_left``): a network namespace to clone it into,
    cgroups to join.
    """
    _COUNTER.append(1)
    blank_id = "blank-{0}-{1}".format(os.getpid(), len(_COUNTER))
    # No limits of its own yet (only trusted code runs in a blank: the parent's
    # bound it): the claim writes the function's before handing the function over.
    netns, kept = left
    paths = kept if kept is not None else confine.create_cgroup(_CONFIG["cgroups"], blank_id, None)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    made: tuple[list[int], int] = ([], -1)
    try:
        made = _prepare(paths, confine)
        pid = _new_process(netns)
    except OSError:
        _forget(made)
        ours.close()
        theirs.close()
        _drop_left((-1, paths), confine)
        raise
    if pid == 0:
        ours.close()
        _child(ctl, paths, made, confine, pyloop, None, [], theirs, warm, netns < 0)
    _forget(made)
    theirs.close()
    _SANDBOXES[pid] = (blank_id, paths)
    _PIDS[blank_id] = pid
    _BLANKS.append((pid, ours))


def _startup_of(spec: dict[str, Any], startup_fd: int) -> tuple[str, list[str], dict[str, Any]]:
    """(pool key, command, start-up settings) of a pre-started runtime: what it reads
    as it starts (the variables in ``startup_fd``, which the platform picked out
    and named by a digest, ``startup``: read only by the runtime's own process, as
    every environment is), and its resource limits (this host's root may not
    change another user's: no CAP_SYS_RESOURCE in containers)."""
    command = list(spec["exec"])
    rlimits = spec.get("rlimits", {})
    key = json.dumps([command, spec["startup"], rlimits], sort_keys=True)
    return key, command, {"env_fd": startup_fd, "rlimits": rlimits}


def _start_runtime(
    ctl: socket.socket,
    selector: Any,
    confine: Any,
    pyloop: Any,
    key: str,
    command: list[str],
    settings: dict[str, Any],
) -> None:
    """Start one isolated runtime process that waits for its function (raises OSError).

    The sandbox is set up as any blank is, and then it execs the runtime
    with no code and no privileges; its claim mounts the code from outside
    (``isolate.task_mounts_of``) and hands it the function in a CLAIM frame.
    """
    uid = _new_uid()
    blank_id = "blank-{0}-{1}".format(os.getpid(), len(_COUNTER))
    paths = confine.create_cgroup(_CONFIG["cgroups"], blank_id, None)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    log_r, log_w = os.pipe()
    made: tuple[list[int], int] = ([], -1)
    try:
        made = _prepare(paths, confine, node=True)
        pid = _new_process()
    except OSError:
        _forget(made)
        for fd in (log_r, log_w):
            os.close(fd)
        ours.close()
        theirs.close()
        confine.remove_cgroup(paths, _collect)
        raise
    if pid == 0:
        code = 70
        try:
            env = _environment(settings["env_fd"])
            _set_up_child(ctl, paths, made, confine)
            isolate = _ISOLATION.get("module")
            if isolate is not None:
                isolate.enter_staged_root(staged=True)
            confine.set_rlimits(settings["rlimits"])
            os.umask(0o022)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.dup2(log_w, 1)
            os.dup2(log_w, 2)
            os.dup2(theirs.fileno(), 3)
            os.closerange(4, 1 << 20)
            if isolate is not None:
                isolate.drop_privileges(uid, uid, _ISOLATION["userns"])
                _ISOLATION["filter"].load()  # last: from here on only what a function may do
            os.write(3, b"1")  # set up: its claim may mount into it now
            os.execve(command[0], [*command, "--claim"], env)
        except BaseException:
            with contextlib.suppress(OSError):
                os.write(2, traceback.format_exc().encode("utf-8", "replace"))
        finally:
            os._exit(code)
    _forget(made)
    theirs.close()
    os.close(log_w)
    _SANDBOXES[pid] = (blank_id, paths)
    _PIDS[blank_id] = pid
    _STARTED_OF[pid] = key
    _STARTED.setdefault(key, []).append((pid, ours, log_r))


def _forget_started(pid: int) -> None:
    """A waiting runtime died before its claim: drop it, and stop refilling its kind
    (a runtime that cannot start must not be restarted in a loop)."""
    key = _STARTED_OF.pop(pid)
    for entry in [e for e in _STARTED.get(key, []) if e[0] == pid]:
        _STARTED[key].remove(entry)
        entry[1].close()
        os.close(entry[2])
    _drop_kind(key)


def _drop_kind(key: str) -> None:
    """Stop refilling the start-up kind ``key``; close its environment."""
    for kind in [kind for kind in _STARTED_KEYS if kind[0] == key]:
        _STARTED_KEYS.remove(kind)
        os.close(kind[2]["env_fd"])


def _remember_kind(
    key: str, command: list[str], settings: dict[str, Any], confine: Any
) -> dict[str, Any]:
    """Keep this start-up kind's pool filled; retire the least recently claimed.
    The settings kept, with a descriptor of their own (the caller's is closed)."""
    _drop_kind(key)
    kept = {**settings, "env_fd": os.dup(settings["env_fd"])}
    _STARTED_KEYS.append((key, command, kept, int(_CONFIG.get("pool", 0))))
    while len(_STARTED_KEYS) > STARTED_KINDS:
        retired = _STARTED_KEYS[0][0]
        _drop_kind(retired)
        for pid, ours, log_r in _STARTED.pop(retired, []):
            _STARTED_OF.pop(pid, None)
            ours.close()
            os.close(log_r)
            _destroy(_SANDBOXES[pid][0], confine)
    return kept


def _claim_started(
    ctl: socket.socket,
    selector: Any,
    sandbox_id: str,
    spec: dict[str, Any],
    fds: list[int],
    confine: Any,
    pyloop: Any,
) -> None:
    """Hand ``spec`` and the environment in ``fds`` (the whole, and what the
    runtime reads at start) to a pre-started runtime (started now when none
    waits), then hand its socket and log pipe to the platform (raises OSError)."""
    env_fd, startup_fd = fds
    key, command, settings = _startup_of(spec, startup_fd)
    settings = _remember_kind(key, command, settings, confine)
    pool = _STARTED.setdefault(key, [])
    if not pool:
        _start_runtime(ctl, selector, confine, pyloop, key, command, settings)
    pid, ours, log_r = pool.pop(0)
    _STARTED_OF.pop(pid, None)
    blank_id, paths = _SANDBOXES[pid]
    isolate = _ISOLATION.get("module")
    trees: list[int] = []
    try:
        ours.settimeout(SET_UP_TIMEOUT)  # a runtime started just now may still be setting up
        try:
            ready = ours.recv(1)
        except socket.timeout:
            ready = b""
        ours.settimeout(None)
        if ready != b"1":
            raise OSError("the sandbox's set-up failed (see the server's log)")
        confine.set_limits(_CONFIG["cgroups"], paths, spec["limits"])
        task_root = spec["code_dir"]
        if isolate is not None:
            if spec.get("egress"):
                _EGRESS[pid] = _start_egress(pid)
            trees.append(_view(isolate, spec["code_dir"]))
            if spec.get("opt_dir"):
                trees.append(_view(isolate, spec["opt_dir"]))
            isolate.task_mounts_of(
                pid,
                trees[0],
                int(spec["tmp_mb"]),
                bool(spec.get("egress")),
                trees[1] if len(trees) > 1 else -1,
            )
            task_root = isolate.TASK_ROOT
        head = '{{"cwd": {0}, "env": '.format(json.dumps(task_root)).encode("utf-8")
        _send_claim(ours.fileno(), head, env_fd)
        message = {"type": "spawned", "id": sandbox_id, "pid": pid, "cgroups": paths}
        socket.send_fds(ctl, [json.dumps(message).encode("utf-8")], [ours.fileno(), log_r])
    except OSError:
        _destroy(blank_id, confine)
        raise
    finally:
        for fd in trees:
            os.close(fd)
        ours.close()
        os.close(log_r)
    _PIDS.pop(blank_id, None)
    _SANDBOXES[pid] = (sandbox_id, paths)
    _PIDS[sandbox_id] = pid


def _start_egress(pid: int) -> Any:
    """Give the sandbox's network namespace a route out through slirp4netns.

    User-mode networking: the sandbox reaches the outside through a process
    of the host, and ``--disable-host-loopback`` keeps the host's own
    loopback services (ember, Redis, ...) out of reach.
    """
    ready_r, ready_w = os.pipe()
    try:
        helper = subprocess.Popen(
            [
                "slirp4netns",
                "--configure",
                "--mtu=65520",
                "--disable-host-loopback",
                "--ready-fd={0}".format(ready_w),
                str(pid),
                "tap0",
            ],
            pass_fds=[ready_w],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        os.close(ready_r)
        os.close(ready_w)
        raise OSError("network egress needs slirp4netns: {0}".format(exc)) from None
    os.close(ready_w)
    try:
        readable, _, _ = select.select([ready_r], [], [], 5.0)
        if not readable or os.read(ready_r, 1) != b"1":
            helper.kill()
            raise OSError("slirp4netns did not configure the sandbox's network")
    finally:
        os.close(ready_r)
    return helper


_NO_OVERLAY = (errno.ENODEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP)


def _make_view(isolate: Any, path: str) -> int:
    """A new view of ``path`` (``_view``, uncached): an overlay, or a plain clone where
    the kernel or the data dir's filesystem cannot stack one."""
    try:
        return int(isolate.view_readonly(path, _CONFIG["empty"]))
    except OSError as error:
        if error.errno not in _NO_OVERLAY:
            raise
        return int(isolate.clone_readonly(path))


def _identity(found: os.stat_result) -> tuple[int, ...]:
    """What tells a directory from one made anew at its path (an inode number may be
    reused at once; its change time then differs)."""
    return (found.st_dev, found.st_ino, found.st_ctime_ns)


def _view(isolate: Any, path: str) -> int:
    """``path`` as a detached read-only mount that names no host path in the sandbox's
    mountinfo (an overlay); a plain clone where the kernel or the data dir's filesystem
    cannot stack an overlay. Each directory's overlay is made once and cloned for each
    sandbox (``_VIEWS``)."""
    found = os.stat(path)
    kept = _VIEWS.pop(path, None)
    if kept is not None:
        view, identity = kept
        if identity == _identity(found):
            with contextlib.suppress(OSError):
                clone = int(isolate.clone_mount(view))
                _VIEWS[path] = kept  # last: the most recently used
                return clone
        os.close(view)  # the directory was made anew (evicted, unpacked again)
    try:
        view = int(isolate.view_readonly(path, _CONFIG["empty"]))
    except OSError as error:
        if error.errno not in _NO_OVERLAY:
            raise
        return int(isolate.clone_readonly(path))
    try:
        clone = int(isolate.clone_mount(view))
    except OSError:
        return view  # a kernel that cannot clone a detached mount: one overlay each
    _VIEWS[path] = (view, _identity(found))
    while len(_VIEWS) > VIEWS_KEPT:
        os.close(_VIEWS.pop(next(iter(_VIEWS)))[0])
    return clone


def _claim_blank(
    ctl: socket.socket, sandbox_id: str, spec: dict[str, Any], fds: list[int], confine: Any
) -> None:
    """Hand ``spec`` to a pre-forked sandbox (raises OSError when none can take it)."""
    while _BLANKS:
        pid, ours = _BLANKS.pop(0)
        blank_id, paths = _SANDBOXES.get(pid, ("", []))
        if not blank_id:
            ours.close()
            continue  # it died while waiting
        isolate = _ISOLATION.get("module")
        trees: list[int] = []
        try:
            _set_limits(paths, spec["limits"], confine)
            _assign_identity(spec)
            _UIDS[sandbox_id] = int(spec["uid"])
            if spec.get("egress") and isolate is not None:
                _EGRESS[pid] = _start_egress(pid)
            if isolate is not None:
                # The blank sees only its own root now: hand it the code as a mount.
                trees.append(_view(isolate, spec["code_dir"]))
                if spec.get("opt_dir"):
                    trees.append(_view(isolate, spec["opt_dir"]))
            socket.send_fds(ours, [json.dumps(spec).encode("utf-8")], fds + trees)
        except OSError:
            _destroy(blank_id, confine)
            ours.close()
            raise
        finally:
            for tree in trees:
                os.close(tree)
        ours.close()
        _PIDS.pop(blank_id, None)
        _SANDBOXES[pid] = (sandbox_id, paths)
        _PIDS[sandbox_id] = pid
        if isolate is not None:
            _remember_key(pid, spec)
        _send(ctl, {"type": "spawned", "id": sandbox_id, "pid": pid, "cgroups": paths})
        return
    raise OSError("no sandbox could be forked")


def _spawn(
    ctl: socket.socket,
    selector: Any,
    message: dict[str, Any],
    fds: list[int],
    confine: Any,
    pyloop: Any,
) -> None:
    sandbox_id = message["id"]
    try:
        if message["spec"].get("exec"):
            if len(fds) != 2:
                raise OSError("expected 2 file descriptors, got {0}".format(len(fds)))
            _claim_started(ctl, selector, sandbox_id, message["spec"], fds, confine, pyloop)
            return
        # The sandbox's socket and log pipe, and its environment (``_environment``).
        if len(fds) != 3:
            raise OSError("expected 3 file descriptors, got {0}".format(len(fds)))
        if not _BLANKS:
            left = _take_left(message["spec"])
            try:
                _fork_blank(ctl, selector, confine, pyloop, warm=False, left=left)
            finally:
                if left[0] >= 0:
                    os.close(left[0])  # the new sandbox holds it now
        _claim_blank(ctl, sandbox_id, message["spec"], fds, confine)
    except OSError as exc:
        _send(ctl, {"type": "spawn_failed", "id": sandbox_id, "error": str(exc)})
    finally:
        for fd in fds:
            os.close(fd)


def _check_template(ctl: socket.socket, template_id: str) -> None:
    """Say whether the sandbox ``template_id`` is parked as a SnapStart template and
    may be forked: checked here, from outside, since its own word is user code's."""
    pid = _PIDS.get(template_id)
    if pid is not None:
        _TEMPLATES.add(template_id)
    if not _RESTORE:
        reason = "SnapStart needs the isolated sandbox backend"
    elif pid is None:
        reason = "the template exited"
    else:
        reason = _inspect(_RESTORE[0], pid)
    _send(ctl, {"type": "template", "id": template_id, "reason": reason})


def _inspect(restore: Any, pid: int) -> str:
    """``restore.inspect``, given a moment to park: it answers the platform just
    before it blocks in its read()."""
    deadline = time.monotonic() + PARK_TIMEOUT
    while True:
        try:
            with _tracing():
                return str(restore.inspect(pid))
        except restore.RestoreError as exc:
            if time.monotonic() > deadline:
                return str(exc)
        except OSError as exc:
            return "the template cannot be inspected: {0}".format(exc)
        time.sleep(0.001)


def _tracing() -> Any:
    """Held while this thread traces a template or waits for children (``Restorers``)."""
    return _RESTORERS[0].tracing if _RESTORERS else contextlib.nullcontext()


def _restorers(selector: Any) -> Any:
    """The restore threads, started with the first restore (a zygote that never
    restores stays single-threaded)."""
    if not _RESTORERS:
        cpus = sorted(os.sched_getaffinity(0))
        _RESTORERS.append(_RESTORE[0].Restorers(cpus))
        selector.register(_RESTORERS[0].wake, selectors.EVENT_READ, "restored")
    return _RESTORERS[0]


def _restore_from(
    ctl: socket.socket, selector: Any, message: dict[str, Any], fds: list[int], confine: Any
) -> None:
    """A new sandbox forked from a parked template (``restore.py``), on a restore
    thread (``_fork_sandbox``); ``_restored`` hands it to the platform. ``fds``:
    the sandbox's environment (``_environment``), which the thread closes."""
    sandbox_id, spec = message["id"], message["spec"]
    template = _PIDS.get(message["template"])
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        _send(ctl, {"type": "spawn_failed", "id": sandbox_id, "error": "no environment"})
        return
    if _SPARE_CGROUPS:
        paths = _SPARE_CGROUPS.pop()
    else:
        paths = confine.create_cgroup(_CONFIG["cgroups"], sandbox_id, None)
    try:
        if not _RESTORE or template is None:
            raise OSError("the template is gone" if _RESTORE else "SnapStart is off here")
        uid = _UIDS[message["template"]]
        confine.set_limits(_CONFIG["cgroups"], paths, spec["limits"])
        joins = confine.join_files(paths, _cgroup_version())
        try:
            # The template's identity for the thread, which runs later: its pid
            # could name another process by then, once the template is reaped.
            identity = os.pidfd_open(template)
        except OSError:
            for fd in joins:
                os.close(fd)
            raise
    except (OSError, KeyError) as exc:
        os.close(fds[0])
        confine.remove_cgroup(paths, _collect)
        _send(ctl, {"type": "spawn_failed", "id": sandbox_id, "error": str(exc)})
        return
    _RESTORING[sandbox_id] = (paths, uid, message["template"])
    job = functools.partial(_fork_sandbox, template, identity, uid, spec, joins, fds[0])
    _restorers(selector).submit(sandbox_id, job)


def _fork_sandbox(
    template: int, identity: int, uid: int, spec: dict[str, Any], joins: list[int], env_fd: int
) -> tuple[int, int, int, int, Any]:
    """On a restore thread: fork ``template``, isolate the fork and let it go with
    the environment in ``env_fd`` (closed here); its pid, the zygote's ends of its
    socket and output pipe, its pidfd and its slirp4netns process (or None)."""
    try:
        return _fork_released(template, identity, uid, spec, joins, env_fd)
    finally:
        os.close(env_fd)


def _fork_released(
    template: int, identity: int, uid: int, spec: dict[str, Any], joins: list[int], env_fd: int
) -> tuple[int, int, int, int, Any]:
    restore, child = _RESTORE[0], 0
    try:
        try:
            with _tracing():
                # Alive (or not yet reaped: reaping needs ``tracing``), so its pid is still its own.
                signal.pidfd_send_signal(identity, 0)
                child, tracee = restore.fork_template(template)
            ours, log = restore.isolate_child(
                tracee, uid, uid, int(spec["tmp_mb"]), _ISOLATION["module"]._LAST_CAP, joins
            )
        finally:
            os.close(identity)
            for fd in joins:
                os.close(fd)
        helper = None
        try:
            if spec.get("egress"):
                helper = _start_egress(child)
            restore.release(tracee)
            _send_claim(ours, b'{"env": ', env_fd)
            pidfd = os.pidfd_open(child)
        except BaseException:
            os.close(ours)
            os.close(log)
            if helper is not None:
                helper.kill()
                helper.wait()
            raise
    except BaseException:
        if child:
            with contextlib.suppress(OSError):
                os.kill(child, signal.SIGKILL)
        raise
    return child, ours, log, pidfd, helper


def _restored(ctl: socket.socket, selector: Any, confine: Any) -> None:
    """Hand the sandboxes the restore threads made to the platform (SPAWNED, with
    their socket and output pipe, as a pre-started runtime's), or say why not."""
    for sandbox_id, outcome in _RESTORERS[0].finished():
        paths, uid, template_id = _RESTORING.pop(sandbox_id)
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, (OSError, KeyError)):
                traceback.print_exception(type(outcome), outcome, outcome.__traceback__)
            confine.remove_cgroup(paths, _collect)
            _send(ctl, {"type": "spawn_failed", "id": sandbox_id, "error": str(outcome)})
            continue
        child, ours, log, pidfd, helper = outcome
        _SANDBOXES[child] = (sandbox_id, paths)
        _PIDS[sandbox_id] = child
        _UIDS[sandbox_id] = uid
        _PIDFDS[child] = pidfd
        _TEMPLATE_OF[child] = template_id
        if helper is not None:
            _EGRESS[child] = helper
        selector.register(pidfd, selectors.EVENT_READ, ("exit", child))
        reply = {"type": "spawned", "id": sandbox_id, "pid": child, "cgroups": paths}
        try:
            socket.send_fds(ctl, [json.dumps(reply).encode("utf-8")], [ours, log])
        except OSError:
            pass  # the platform is gone: shutdown follows from the EOF
        finally:
            os.close(ours)
            os.close(log)


def _forked_exit(selector: Any, pid: int) -> None:
    """A sandbox forked from a template ended (its pidfd became readable): read its
    status while it is a zombie, then have its parent, the template, reap it."""
    pidfd = _PIDFDS.pop(pid)
    selector.unregister(pidfd)
    os.close(pidfd)
    restore = _RESTORE[0]
    status = restore.exit_status(pid)
    template = _PIDS.get(_TEMPLATE_OF.pop(pid, ""))
    # A template being killed cannot be traced (EPERM): its forks go with it.
    if template is not None and template not in _KILLED:
        try:
            with _tracing():
                restore.reap(template)
        except restore.RestoreError:
            # Out of its read: its channel closed (the server stops, or let it go)
            # and it is leaving; as PID 1 of its namespace it reaps its forks then.
            pass
        except OSError as exc:
            if exc.errno != errno.ESRCH:
                os.write(2, "ember zygote: cannot reap a fork: {0}\n".format(exc).encode())
    if pid in _SANDBOXES:
        _EXITED.append((pid, status))


def _destroy(sandbox_id: str, confine: Any) -> None:
    pid = _PIDS.get(sandbox_id)
    if pid is None:
        return  # already gone: destroying twice is harmless
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _KILLED.add(pid)
    paths = _SANDBOXES[pid][1]
    if _ISOLATION.get("module") is not None:
        # The leader is PID 1 of its namespace: the kernel kills every other
        # process of the sandbox with it, once a frozen one is thawed.
        confine.thaw(confine.controller_paths(_CONFIG["cgroups"], paths, "freezer"))
    else:
        confine.kill_all(paths)


def _shutdown(ctl: socket.socket, selector: Any, confine: Any) -> None:
    if _RESTORERS:
        _RESTORERS[0].stop()
        _restored(ctl, selector, confine)
    for sandbox_id in list(_PIDS):
        _destroy(sandbox_id, confine)
    while _SPARE_CGROUPS:
        confine.remove_cgroup(_SPARE_CGROUPS.pop(), _collect)
    for kept in _LEFT.values():
        for left in kept:
            _drop_left(left, confine)
    _LEFT.clear()
    while _VIEWS:
        os.close(_VIEWS.popitem()[1][0])
    while _SANDBOXES:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid in _SANDBOXES:
            _EXITED.append((pid, status))
        _report_exits(ctl, confine)
    # Forked sandboxes die with their template (its PID namespace holds theirs).
    for pid, pidfd in list(_PIDFDS.items()):
        select.select([pidfd], [], [], 2.0)
        del _PIDFDS[pid]
        os.close(pidfd)
        _TEMPLATE_OF.pop(pid, None)
        if pid in _SANDBOXES:
            _EXITED.append((pid, None))
    _report_exits(ctl, confine)


def _setup_isolation() -> None:
    """Load the isolation code, prebuild the seccomp filter, list what the runtime needs."""
    isolate = _load("_ember_isolate", _CONFIG["isolate"])
    seccomp = _load("_ember_seccomp", _CONFIG["seccomp"])
    prefixes = [
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
    ]
    hidden = [os.path.realpath(p) for p in _CONFIG.get("hidden", [])]
    # The host's own node, where it is outside /usr.
    extra = list(_CONFIG.get("runtime_dirs", []))
    runtime = [
        path
        for path in isolate.runtime_paths(prefixes + _CONFIG["base_path"] + extra)
        if not any(
            path == h or path.startswith(h + "/") or h.startswith(path + "/") for h in hidden
        )
    ]
    # The second (empty) lower layer of every code and layer overlay (``_view``).
    _CONFIG["empty"] = os.path.join(os.path.dirname(_CONFIG["etc"]), "empty")
    os.makedirs(_CONFIG["empty"], mode=0o555, exist_ok=True)
    isolate.stage_shared_root(runtime, _CONFIG["etc"])
    _HOME_MOUNTS.append(os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC))
    _MOUNTS.append(isolate.sandbox_mounts())
    # The task root's finder, made once: each sandbox's import of its handler then
    # skips the path hooks (zipimport tries the directory first, and raises).
    machinery = importlib.machinery
    sys.path_importer_cache[isolate.TASK_ROOT] = machinery.FileFinder(
        isolate.TASK_ROOT,
        (machinery.ExtensionFileLoader, machinery.EXTENSION_SUFFIXES),
        (machinery.SourceFileLoader, machinery.SOURCE_SUFFIXES),
        (machinery.SourcelessFileLoader, machinery.BYTECODE_SUFFIXES),
    )
    _HOME_NETNS.append(os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC))
    _ISOLATION.update(
        module=isolate,
        filter=isolate.build_filter(seccomp),
        runtime=runtime,
        userns=isolate.user_namespaces_available(),
    )


def main() -> None:
    ctl = socket.socket(fileno=int(sys.argv[1]))
    _CONFIG.update(json.loads(sys.argv[2]))
    frames = _load("_ember_frames", _CONFIG["frames"])
    confine = _load("_ember_confine", _CONFIG["confine"])
    pyloop = _load("_ember_pyloop", _CONFIG["pyloop"])
    _RAPI.append(_load("_ember_rapi", _CONFIG["rapi"]))
    del frames
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    _CONFIG["base_path"] = [p for p in sys.path if p]
    confine.prctl(confine.PR_SET_CHILD_SUBREAPER, 1)
    # AWS's SnapStart hooks module, importable by every function unchanged.
    _load("snapshot_restore_py", _CONFIG["hooks"])
    if _CONFIG.get("isolated"):
        _setup_isolation()
        restore = _load("_ember_restore", _CONFIG["restore"])
        if not restore.supported():
            _RESTORE.append(restore)

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    stopping: list[bool] = []
    signal.signal(signal.SIGCHLD, lambda *_: None)
    # The platform decides when we stop (it closes the control socket): a
    # SIGTERM or Ctrl-C sent to the whole process group must not pull the
    # sandboxes out from under a server that is still draining its calls.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    selector = selectors.DefaultSelector()
    selector.register(ctl, selectors.EVENT_READ, "ctl")
    selector.register(wake_r, selectors.EVENT_READ, "wake")
    # Objects made so far are shared with every sandbox: keep the collector
    # from touching (and so copying) their pages in the children.
    gc.collect()
    gc.freeze()
    _send(
        ctl,
        {
            "type": "hello",
            "pid": os.getpid(),
            "python": sys.version.split()[0],
            "executable": sys.executable,
            "userns": bool(_ISOLATION.get("userns")),
            "snapStart": bool(_RESTORE),
            "runtimePaths": _ISOLATION.get("runtime", []),
        },
    )

    pool = int(_CONFIG.get("pool", 0))
    retry_at = 0.0
    while not stopping:
        # Refill the pool of blanks only after a short quiet spell, so that
        # neither a claim nor the sandbox just claimed (still importing its
        # handler) competes with a fork for the CPU.
        wait = None
        short = [kind for kind in _STARTED_KEYS if len(_STARTED.get(kind[0], [])) < kind[3]]
        spares = _TEMPLATES and len(_SPARE_CGROUPS) < SPARE_CGROUPS
        if len(_BLANKS) < pool or short or spares:
            wait = max(REFILL_AFTER, retry_at - time.monotonic())
        events = selector.select(timeout=wait)
        if not events:
            try:
                if len(_BLANKS) < pool:
                    _fork_blank(ctl, selector, confine, pyloop)
                elif spares:
                    _COUNTER.append(1)
                    name = "spare-{0}-{1}".format(os.getpid(), len(_COUNTER))
                    _SPARE_CGROUPS.append(confine.create_cgroup(_CONFIG["cgroups"], name, None))
                else:
                    kind, command, settings, _size = short[0]
                    _start_runtime(ctl, selector, confine, pyloop, kind, command, settings)
            except OSError as exc:
                # Out of processes or memory: try again a second later.
                os.write(2, "ember zygote: cannot pre-fork a sandbox: {0}\n".format(exc).encode())
                retry_at = time.monotonic() + 1.0
            continue
        for key, _ in events:
            if isinstance(key.data, tuple):
                _forked_exit(selector, key.data[1])
                _report_exits(ctl, confine)
                continue
            if key.data == "restored":
                _restored(ctl, selector, confine)
                continue
            if key.data == "wake":
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
                _collect()
                _report_exits(ctl, confine)
                continue
            try:
                data, fds, _flags, _addr = socket.recv_fds(ctl, 1 << 20, 4)
            except ConnectionResetError:
                data, fds = b"", []
            if not data:
                stopping.append(True)
                break
            message = json.loads(data)
            if message["type"] == "spawn":
                _spawn(ctl, selector, message, fds, confine, pyloop)
            elif message["type"] == "destroy":
                _destroy(message["id"], confine)
            elif message["type"] == "template":
                _check_template(ctl, message["id"])
            elif message["type"] == "restore":
                _restore_from(ctl, selector, message, fds, confine)
    _shutdown(ctl, selector, confine)


if __name__ == "__main__":
    main()
