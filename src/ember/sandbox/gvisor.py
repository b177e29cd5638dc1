"""The strong backend: each sandbox on gVisor's user-space kernel (``runsc``).

For functions that ask for ``Isolation: strong``. A system call from the
function never reaches the host kernel directly: gVisor's Sentry answers it
(ptrace platform: these machines' KVM cannot run guests). The price is a
new interpreter per sandbox (no zygote to fork from): a cold start of about
half a second here, against a few milliseconds for the standard backend.

Around runsc the same layers as the standard backend hold: the sandbox's
own cgroups (memory = MemorySize plus the Sentry's overhead, pids, CPU), a
minimal read-only root (``gvisor_launch.py``), no network, Lambda's
environment built from scratch. Frames travel over stdin/stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from ember.errors import SandboxUnavailable
from ember.sandbox import confine, isolate, runtimes
from ember.sandbox.base import OutputSink, SandboxSpec, SnapStartRefused
from ember.sandbox.zygote import ForkedSandbox, ZygoteBackend, _Channel, _Exit

log = logging.getLogger("ember.sandbox.gvisor")

_HERE = Path(__file__).resolve().parent
# The Sentry and gofer live in the sandbox's memory cgroup too.
SENTRY_OVERHEAD_MB = 256
PIDS_MAX = 512  # the Sentry is a Go program: it needs threads


class _PipePair:
    """The transport a ForkedSandbox writes to and closes, over two pipes."""

    def __init__(self, writer: asyncio.WriteTransport, reader: asyncio.BaseTransport) -> None:
        self._writer = writer
        self._reader = reader

    def write(self, data: bytes) -> None:
        self._writer.write(data)

    def close(self) -> None:
        self._writer.close()
        self._reader.close()

    def is_closing(self) -> bool:
        return self._writer.is_closing()


class _Process:
    """One runsc process tree and the cgroups it runs in."""

    def __init__(self, popen: subprocess.Popen[bytes], cgroups: list[str]) -> None:
        self.popen = popen
        self.cgroups = cgroups


class GVisorBackend:
    """See ``ember.sandbox.base.SandboxBackend``; shares cgroups and runtimes with the zygotes."""

    name = "gvisor"

    def __init__(self, *, standard: ZygoteBackend, sink: OutputSink, init_timeout: float) -> None:
        self._standard = standard
        self._sink = sink
        self._init_timeout = init_timeout
        self._runsc = shutil.which("runsc")
        self._processes: dict[str, _Process] = {}
        self._sandboxes: dict[str, ForkedSandbox] = {}
        self._state_dir = f"/run/ember-runsc-{os.getpid()}"

    @property
    def available(self) -> bool:
        return self._runsc is not None and self._standard.isolated

    async def start(self) -> None:
        if self._runsc is None:
            log.info("strong isolation (gVisor) unavailable: runsc is not installed")

    async def prepare_snap_start(self, spec: SandboxSpec) -> None:
        raise SnapStartRefused(
            "SnapStartNotSupported",
            "SnapStart does not run under Isolation 'strong' (gVisor): its sandboxes run Init.",
        )

    async def create(self, spec: SandboxSpec) -> ForkedSandbox:
        if not self.available:
            raise SandboxUnavailable(
                "Isolation 'strong' needs gVisor's runsc (Debian package 'runsc') and the "
                "isolated backend; neither the function nor ember can run it here."
            )
        if spec.runtime in runtimes.NODE_RUNTIMES:
            # The Node runtime execs node from the runtimes directory, which the gVisor
            # launcher does not bind yet: refused by name rather than run wrongly.
            raise SandboxUnavailable(
                f"Isolation 'strong' does not run {spec.runtime} yet; use the default isolation."
            )
        interpreter, runtime_paths = await self._standard.runtime_of(spec.runtime)
        cgroups = confine.create_cgroup(
            self._standard.cgroup_config(),
            "gv-" + spec.sandbox_id,
            {
                "memory": (spec.memory_mb + SENTRY_OVERHEAD_MB) * 1024 * 1024,
                "pids": PIDS_MAX,
                "cpu_shares": max(2, spec.memory_mb * 1024 // 1769),
            },
        )
        config = {
            "isolate": str(_HERE / "isolate.py"),
            "cgroups": cgroups,
            "attach": "cgroup.procs"
            if self._standard.cgroup_config().get("version") == 2
            else "tasks",
            # Each launcher has a mount namespace of its own: one path serves all.
            "staging": isolate.STAGING,
            "runtime": runtime_paths,
            "etc": self._standard.etc_dir,
            "code_dir": spec.code_dir,
            "opt_dir": spec.opt_dir,
            "runtime_dir": str(_HERE.parent / "runtime"),
            "runsc": self._runsc,
            "state_dir": self._state_dir,
            "interpreter": interpreter,
            "handler": spec.handler,
            "custom": spec.runtime in runtimes.PROVIDED_RUNTIMES,
            "env": dict(spec.env),
        }
        try:
            popen = await asyncio.to_thread(
                subprocess.Popen,
                [sys.executable, "-I", "-S", str(_HERE / "gvisor_launch.py"), json.dumps(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={"PATH": "/usr/bin:/bin"},
            )
        except OSError as exc:
            confine.remove_cgroup(cgroups, lambda: None)
            raise SandboxUnavailable(f"cannot start runsc: {exc}") from exc
        sandbox = await self._connect(spec, popen, cgroups)
        await sandbox.init(self._init_timeout)
        return sandbox

    async def _connect(
        self, spec: SandboxSpec, popen: subprocess.Popen[bytes], cgroups: list[str]
    ) -> ForkedSandbox:
        loop = asyncio.get_running_loop()
        assert popen.stdin and popen.stdout and popen.stderr
        reader, channel = await loop.connect_read_pipe(_Channel, popen.stdout)
        writer, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, popen.stdin)
        channel.transport = _PipePair(writer, reader)  # type: ignore[assignment]
        sandbox = ForkedSandbox(self, spec, channel)
        sandbox.pid = popen.pid
        self._processes[spec.sandbox_id] = _Process(popen, cgroups)
        self._sandboxes[spec.sandbox_id] = sandbox
        stderr = popen.stderr.fileno()
        os.set_blocking(stderr, False)
        loop.add_reader(stderr, self._drain, spec.sandbox_id, stderr)
        pidfd = os.pidfd_open(popen.pid)
        loop.add_reader(pidfd, self._reaped, spec.sandbox_id, pidfd)
        return sandbox

    def _drain(self, sandbox_id: str, fd: int) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            data = os.read(fd, 65536)
            if data:
                self._sink(sandbox_id, data)
                return
        asyncio.get_running_loop().remove_reader(fd)

    def _reaped(self, sandbox_id: str, pidfd: int) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(pidfd)
        os.close(pidfd)
        process = self._processes.pop(sandbox_id, None)
        sandbox = self._sandboxes.pop(sandbox_id, None)
        if process is None:
            return
        code = process.popen.wait()
        version = int(self._standard.cgroup_config().get("version", 1))
        oom = confine.oom_kills(process.cgroups, version) > 0
        confine.remove_cgroup(process.cgroups, lambda: None)
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(process.popen.stderr.fileno())  # type: ignore[union-attr]
        if sandbox is not None:
            sandbox._exited(_Exit(code, oom))

    def destroy(self, sandbox_id: str) -> None:
        """Kill the runsc process tree (and anything left in its cgroups)."""
        process = self._processes.get(sandbox_id)
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.popen.pid, signal.SIGKILL)
        confine.kill_all(process.cgroups)

    async def close(self) -> None:
        for sandbox_id in list(self._processes):
            self.destroy(sandbox_id)
        for _ in range(200):
            if not self._processes:
                break
            await asyncio.sleep(0.05)
        await asyncio.to_thread(shutil.rmtree, self._state_dir, True)

    def describe(self) -> dict[str, object]:
        return {
            "backend": self.name,
            "available": self.available,
            "runsc": self._runsc,
            "platform": "ptrace",
        }
