"""The zygote: a trusted process per runtime that forks sandboxes.

Started by the platform as ``python -I zygote_main.py <control fd> <config
JSON>`` under the function's interpreter. It imports the runtime and common
standard-library modules once, freezes its heap, and then only ever forks:
it never imports or runs user code itself. A new sandbox is a fork of it
(about 1-2 ms here) instead of a new interpreter (about 40 ms).

The control socket (SOCK_SEQPACKET: one JSON message per record, fds passed
with SCM_RIGHTS) carries ``spawn`` and ``destroy`` requests in and ``hello``,
``spawn_failed`` and ``exited`` reports out. The zygote is the parent and
subreaper of every sandbox, so it reaps them (and any process a function
forked), reads whether the OOM killer fired, and removes their cgroups.
When the control socket closes, it destroys every sandbox and exits.

Standard library only, Python 3.9 syntax: it runs under python3.9 and up.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import selectors
import signal
import socket
import sys
import traceback
from typing import Any

_CONFIG: dict[str, Any] = {}
_SANDBOXES: dict[int, tuple[str, list[str]]] = {}  # leader pid -> (sandbox id, cgroup dirs)
_PIDS: dict[str, int] = {}  # sandbox id -> leader pid
_EXITED: list[tuple[int, int]] = []  # (leader pid, wait status), not yet reported

# Imported once here so that a sandbox's Init does not pay for them.
PRELOAD = (
    "asyncio", "base64", "collections", "contextlib", "copy", "csv", "dataclasses", "datetime",
    "decimal", "email.utils", "enum", "functools", "gzip", "hashlib", "hmac", "html", "http.client",
    "importlib", "io", "itertools", "json", "logging", "math", "pathlib", "random", "re", "secrets",
    "shutil", "string", "struct", "tempfile", "textwrap", "threading", "time", "traceback",
    "typing", "urllib.parse", "urllib.request", "uuid", "zlib",
)


def _load(name: str, path: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _send(ctl: socket.socket, message: dict[str, Any]) -> None:
    try:
        ctl.send(json.dumps(message).encode("utf-8"))
    except OSError:
        pass  # the platform is gone; shutdown follows from the EOF


def _collect() -> None:
    """Reap every exited child; remember the sandbox leaders among them."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in _SANDBOXES:
            _EXITED.append((pid, status))


def _report_exits(ctl: socket.socket, confine: Any) -> None:
    version = _CONFIG["cgroups"].get("version", 0) if _CONFIG["cgroups"] else 0
    while _EXITED:
        pid, status = _EXITED.pop(0)
        sandbox_id, paths = _SANDBOXES.pop(pid)
        _PIDS.pop(sandbox_id, None)
        oom = confine.oom_killed(paths, version)
        leftover = confine.remove_cgroup(paths, _collect)
        _send(ctl, {
            "type": "exited",
            "id": sandbox_id,
            "pid": pid,
            "exitCode": os.waitstatus_to_exitcode(status),
            "oom": oom,
            "leftoverCgroups": leftover,
        })


def _child(ctl: socket.socket, selector: Any, spec: dict[str, Any], fds: list[int],
           paths: list[str], confine: Any, pyloop: Any) -> None:
    code = 70  # EX_SOFTWARE: confinement or the runtime itself failed
    try:
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
            signal.signal(signum, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        selector.close()
        ctl.detach()
        version = _CONFIG["cgroups"].get("version", 0) if _CONFIG["cgroups"] else 0
        task_root = confine.enter(spec, paths, version)
        sock_fd, log_fd = fds
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.dup2(sock_fd, 3)
        os.closerange(4, 1 << 20)
        os.environ.clear()
        os.environ.update(spec["env"])
        sys.path[:] = [task_root, *spec.get("extra_path", []), *_CONFIG["base_path"]]
        sock = socket.socket(fileno=3)
        code = pyloop.run(sock, spec["handler"])
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            os.write(2, (str(exc.code) + "\n").encode("utf-8", "replace"))
            code = 1
    except BaseException:
        try:
            os.write(2, traceback.format_exc().encode("utf-8", "replace"))
        except OSError:
            pass
    finally:
        os._exit(code)


def _spawn(ctl: socket.socket, selector: Any, message: dict[str, Any], fds: list[int],
           confine: Any, pyloop: Any) -> None:
    sandbox_id = message["id"]
    spec = message["spec"]
    paths: list[str] = []
    try:
        if len(fds) != 2:
            raise OSError("expected 2 file descriptors, got {0}".format(len(fds)))
        paths = confine.create_cgroup(_CONFIG["cgroups"], sandbox_id, spec["limits"])
        pid = os.fork()
    except OSError as exc:
        for path in paths:
            confine.remove_cgroup([path], _collect)
        for fd in fds:
            os.close(fd)
        _send(ctl, {"type": "spawn_failed", "id": sandbox_id, "error": str(exc)})
        return
    if pid == 0:
        _child(ctl, selector, spec, fds, paths, confine, pyloop)
    for fd in fds:
        os.close(fd)
    _SANDBOXES[pid] = (sandbox_id, paths)
    _PIDS[sandbox_id] = pid


def _destroy(sandbox_id: str, confine: Any) -> None:
    pid = _PIDS.get(sandbox_id)
    if pid is None:
        return  # already gone: destroying twice is harmless
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    confine.kill_all(_SANDBOXES[pid][1])


def _shutdown(ctl: socket.socket, confine: Any) -> None:
    for sandbox_id in list(_PIDS):
        _destroy(sandbox_id, confine)
    while _SANDBOXES:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid in _SANDBOXES:
            _EXITED.append((pid, status))
        _report_exits(ctl, confine)
    _report_exits(ctl, confine)


def main() -> None:
    ctl = socket.socket(fileno=int(sys.argv[1]))
    _CONFIG.update(json.loads(sys.argv[2]))
    frames = _load("_ember_frames", _CONFIG["frames"])
    confine = _load("_ember_confine", _CONFIG["confine"])
    pyloop = _load("_ember_pyloop", _CONFIG["pyloop"])
    del frames
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    _CONFIG["base_path"] = [p for p in sys.path if p]
    confine.prctl(confine.PR_SET_CHILD_SUBREAPER, 1)
    if _CONFIG.get("private_mounts"):
        os.makedirs(confine.TASK_ROOT, exist_ok=True)

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    stopping = []
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the platform decides when we stop
    selector = selectors.DefaultSelector()
    selector.register(ctl, selectors.EVENT_READ, "ctl")
    selector.register(wake_r, selectors.EVENT_READ, "wake")
    # Objects made so far are shared with every sandbox: keep the collector
    # from touching (and so copying) their pages in the children.
    gc.collect()
    gc.freeze()
    _send(ctl, {"type": "hello", "pid": os.getpid(), "python": sys.version.split()[0],
                "executable": sys.executable})

    while not stopping:
        for key, _ in selector.select():
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
    _shutdown(ctl, confine)


if __name__ == "__main__":
    main()
