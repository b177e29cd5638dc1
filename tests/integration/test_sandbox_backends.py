"""One behavioural suite for every sandbox backend, on real forked processes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ember.errors import SandboxUnavailable
from ember.sandbox.base import InitFailed, Outcome, SandboxRequest, SandboxSpec
from ember.sandbox.zygote import ZygoteBackend

HANDLER = """
import os, sys, time
count = 0
print("init output")

def handler(event, context):
    global count
    count += 1
    action = event.get("do")
    if action == "raise":
        raise ValueError("kaboom")
    if action == "exit":
        sys.exit(3)
    if action == "sleep":
        time.sleep(event["seconds"])
    if action == "spawn":
        import subprocess
        child = subprocess.Popen(["sleep", "1000"])
        return {"child": child.pid}
    if action == "netns":
        return {"netns": os.readlink("/proc/self/ns/net")}
    if action == "time_wait":
        import socket
        server = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        accepted.close()  # the side that closes first waits in TIME_WAIT
        client.close()
        server.close()
        return {"netns": os.readlink("/proc/self/ns/net")}
    if action == "hog":
        global held
        held = bytearray(event["mb"] << 20)
        for offset in range(0, len(held), 4096):
            held[offset] = 1
    print("invoked", count)
    return {"count": count, "pid": os.getpid(), "cwd": os.getcwd(), "env": os.environ.get("ONLY")}
"""


@pytest.fixture(params=["zygote", "process"])
def backend_name(request: pytest.FixtureRequest) -> str:
    if request.param == "zygote" and os.geteuid() != 0:
        pytest.skip("the isolated backend needs root (cgroups, mount namespaces)")
    return str(request.param)


def run(
    backend_name: str,
    code_dir: Path,
    scenario: Callable[[Any, Any], Awaitable[None]],
    pool: int = 1,
) -> None:
    async def main() -> None:
        backend = ZygoteBackend(isolated=backend_name == "zygote", sink=lambda *_: None, pool=pool)
        await backend.start()

        def spec(handler: str = "app.handler") -> SandboxSpec:
            return SandboxSpec(
                uuid.uuid4().hex[:16],
                "python3.11",
                handler,
                str(code_dir),
                {"ONLY": "this", "PATH": "/usr/bin:/bin"},
                128,
                64,
                32,
                256,
            )

        try:
            await scenario(backend, spec)
        finally:
            await backend.close()

    asyncio.run(main())


def request(payload: dict[str, Any], timeout: float = 5.0) -> SandboxRequest:
    request_id = str(uuid.uuid4())
    deadline = int(time.time() * 1000 + timeout * 1000)
    return SandboxRequest(
        request_id, deadline, "arn", "", "", "Root=1", json.dumps(payload).encode(), timeout
    )


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(HANDLER)
    # The isolated sandbox runs as an unprivileged uid: the code must be world-readable,
    # as the server's package store leaves it (pytest makes tmp_path 0700).
    tmp_path.chmod(0o755)
    return tmp_path


def namespace_pids(pid: int) -> list[int]:
    """``NSpid`` of a host pid: its pid in each PID namespace, outermost first."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return [int(field) for field in line.split()[1:]]
    raise AssertionError(f"no NSpid line for pid {pid}")


def host_children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue  # exited meanwhile
        if stat and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def test_init_invoke_and_warm_state(backend_name: str, code_dir: Path) -> None:
    async def scenario(backend: Any, spec: Any) -> None:
        sandbox = await backend.create(spec())
        assert sandbox.init_log == b"init output\n"
        first = await sandbox.invoke(request({}))
        second = await sandbox.invoke(request({}))
        assert first.outcome is Outcome.OK and first.log == b"invoked 1\n"
        body = json.loads(second.body)
        assert body["count"] == 2 and body["env"] == "this"
        if backend_name == "zygote":
            # PID 1 of a PID namespace of its own; the backend knows its host pid.
            assert body["pid"] == 1
            assert namespace_pids(sandbox.pid) == [sandbox.pid, 1]
        else:
            assert body["pid"] == sandbox.pid
        expected_root = "/var/task" if backend_name == "zygote" else str(code_dir)
        assert body["cwd"] == expected_root
        sandbox.destroy()
        sandbox.destroy()  # harmless twice

    run(backend_name, code_dir, scenario)


def test_failures_become_function_errors(backend_name: str, code_dir: Path) -> None:
    async def scenario(backend: Any, spec: Any) -> None:
        sandbox = await backend.create(spec())
        raised = await sandbox.invoke(request({"do": "raise"}))
        assert raised.outcome is Outcome.FUNCTION_ERROR and raised.reusable
        assert json.loads(raised.body)["errorType"] == "ValueError"
        timed_out = await sandbox.invoke(request({"do": "sleep", "seconds": 5}, timeout=0.5))
        assert json.loads(timed_out.body)["errorType"] == "Sandbox.Timedout"
        assert not timed_out.reusable and not sandbox.alive
        crashed = await (await backend.create(spec())).invoke(request({"do": "exit"}))
        assert json.loads(crashed.body)["errorMessage"].endswith("exit status 3")

    run(backend_name, code_dir, scenario)


def test_init_failure(backend_name: str, code_dir: Path) -> None:
    async def scenario(backend: Any, spec: Any) -> None:
        with pytest.raises(InitFailed) as failure:
            await backend.create(spec("missing.handler"))
        assert json.loads(failure.value.payload)["errorType"] == "Runtime.ImportModuleError"

    run(backend_name, code_dir, scenario)


def test_destroy_kills_what_the_function_started(code_dir: Path) -> None:
    """Only the isolated backend promises this: it finds a function's processes by cgroup."""
    if os.geteuid() != 0:
        pytest.skip("the isolated backend needs root (cgroups, mount namespaces)")

    async def scenario(backend: Any, spec: Any) -> None:
        sandbox = await backend.create(spec())
        inside = json.loads((await sandbox.invoke(request({"do": "spawn"}))).body)["child"]
        # The pid the function saw is its namespace's; find the host pid of that child.
        (child,) = [pid for pid in host_children(sandbox.pid) if namespace_pids(pid)[-1] == inside]
        sandbox.destroy()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert not Path(f"/proc/{child}").exists()

    run("zygote", code_dir, scenario)


def needs_snapstart() -> None:
    if os.geteuid() != 0:
        pytest.skip("SnapStart needs the isolated backend, which needs root")


def snapped(spec: Callable[[], SandboxSpec]) -> SandboxSpec:
    return dataclasses.replace(spec(), snap_start=True)


def test_a_failed_restore_falls_back_to_init_and_spares_the_templates_sandboxes(
    code_dir: Path,
) -> None:
    """A restore the zygote cannot make (a ptrace or clone failure) gives the call an
    ordinary sandbox, and the next call a new template; the old template lives on
    while sandboxes forked from it run (its PID namespace holds theirs)."""
    needs_snapstart()

    async def scenario(backend: Any, spec: Any) -> None:
        first = await backend.create(snapped(spec))
        assert first.restore_ms is not None  # a fork of the template
        (made,) = backend._templates.values()
        template = made.result()
        zygote_restore = template.zygote.restore

        async def fails_once(*args: Any, **kwargs: Any) -> Any:
            template.zygote.restore = zygote_restore
            raise SandboxUnavailable("could not start a sandbox: injected")

        template.zygote.restore = fails_once
        fallback = await backend.create(snapped(spec))
        assert fallback.restore_ms is None and fallback.init_log == b"init output\n"
        still = await first.invoke(request({}))  # the earlier fork was not killed
        assert still.outcome is Outcome.OK and template.sandbox.alive
        renewed = await backend.create(snapped(spec))
        assert renewed.restore_ms is not None
        (made_again,) = backend._templates.values()
        assert made_again.result() is not template
        first.destroy()
        await asyncio.sleep(0.2)  # its exit reported
        await backend.create(snapped(spec))  # a later SnapStart start lets the old template go
        assert not template.sandbox.alive

    run("zygote", code_dir, scenario)


def test_restores_interleaved_with_the_templates_reaps_all_restore(code_dir: Path) -> None:
    """Each ended fork is reaped through its template (put back into its read
    afterwards); a restore that comes before the template has run again must still
    find it parked. Before that was so, a quarter of these restores fell back to Init."""
    needs_snapstart()

    async def scenario(backend: Any, spec: Any) -> None:
        previous: list[Any] = []

        async def start(index: int) -> Any:
            if index < len(previous):
                await asyncio.sleep(0.0005 * index)
                previous[index].destroy()  # its reap lands among the restores
            return await backend.create(snapped(spec))

        for _ in range(12):
            sandboxes = await asyncio.gather(*(start(index) for index in range(16)))
            assert [s for s in sandboxes if s.restore_ms is None] == []
            previous = sandboxes

    run("zygote", code_dir, scenario)


def test_restores_made_while_signals_reach_the_template_all_restore(code_dir: Path) -> None:
    """A signal that reaches the template while its clone() is injected (a fork of
    it ended: SIGCHLD, which a traced process queues though it ignores it) makes the
    call return ERESTARTNOINTR; the restore makes the call again, as the kernel would
    have, instead of failing the restore. Here SIGCHLD is sent the whole time."""
    needs_snapstart()

    async def scenario(backend: Any, spec: Any) -> None:
        first = await backend.create(snapped(spec))
        (made,) = backend._templates.values()
        pid = made.result().sandbox.pid
        assert pid > 0 and first.restore_ms is not None
        stop = threading.Event()

        def storm() -> None:
            with contextlib.suppress(ProcessLookupError):  # the template failed: asserted below
                while not stop.is_set():
                    os.kill(pid, signal.SIGCHLD)

        sender = threading.Thread(target=storm)
        sender.start()
        try:
            for _ in range(10):
                sandboxes = await asyncio.gather(*(backend.create(snapped(spec)) for _ in range(8)))
                assert [s for s in sandboxes if s.restore_ms is None] == []
                for sandbox in sandboxes:
                    sandbox.destroy()
        finally:
            stop.set()
            sender.join()
        assert made.result().sandbox.alive  # the same template all along

    run("zygote", code_dir, scenario)


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the isolated backend needs root (cgroups, mount namespaces)")


async def ended(sandbox: Any) -> None:
    """Destroy ``sandbox`` and give the zygote a moment to see it end."""
    sandbox.destroy()
    await asyncio.sleep(0.3)


async def netns_of(sandbox: Any, action: str = "netns") -> str:
    return str(json.loads((await sandbox.invoke(request({"do": action}))).body)["netns"])


def test_a_versions_next_sandbox_is_handed_the_network_namespace_its_last_left(
    code_dir: Path,
) -> None:
    """With no blank waiting, a new sandbox of a version is cloned into the network
    namespace an ended sandbox of that same version left (making one is ~1 ms of
    CPU); another version, or no key at all, never gets it."""
    needs_root()

    async def scenario(backend: Any, spec: Any) -> None:
        def of(key: str) -> SandboxSpec:
            return dataclasses.replace(spec(), reuse_key=key)

        first = await backend.create(of("fn:1:a"))
        left = await netns_of(first)
        await ended(first)
        other = await backend.create(of("fn:1:b"))  # another version: a new namespace
        assert await netns_of(other) != left
        unkeyed = await backend.create(spec())
        assert await netns_of(unkeyed) != left
        again = await backend.create(of("fn:1:a"))
        assert await netns_of(again) == left
        # Its loopback is up, as a new namespace's is brought up.
        assert json.loads((await again.invoke(request({"do": "time_wait"}))).body)["netns"] == left
        await ended(again)
        # A socket was left (in TIME_WAIT): the namespace is not handed on.
        last = await backend.create(of("fn:1:a"))
        assert await netns_of(last) != left

    run("zygote", code_dir, scenario, pool=0)


def test_cgroups_handed_on_report_only_their_own_sandboxs_oom_and_peak(code_dir: Path) -> None:
    """A version's next sandbox may join the cgroups its last one left: the OOM kill of
    the one before is not reported again, and its peak memory is not the new one's."""
    needs_root()

    async def scenario(backend: Any, spec: Any) -> None:
        def of() -> SandboxSpec:
            return dataclasses.replace(spec(), reuse_key="fn:1:a")

        def peak_file(sandbox: Any) -> Path:
            # Read by the platform for runtimes that cannot report their own (provided.*).
            name = Path(sandbox.freezer[0]).parent.name
            return Path(backend._cgroups.dirs["memory"], name, "memory.max_usage_in_bytes")

        hog = await backend.create(of())
        result = await hog.invoke(request({"do": "hog", "mb": 90}))
        assert result.outcome is Outcome.OK and int(peak_file(hog).read_text()) > 90 << 20
        await ended(hog)
        calm = await backend.create(of())
        assert peak_file(calm) == peak_file(hog)  # handed on
        result = await calm.invoke(request({}))
        assert result.outcome is Outcome.OK and int(peak_file(calm).read_text()) < 60 << 20
        killed = await backend.create(of())
        result = await killed.invoke(request({"do": "hog", "mb": 400}))
        assert b"Runtime.OutOfMemory" in result.body
        await asyncio.sleep(0.3)
        after = await backend.create(of())
        result = await after.invoke(request({"do": "exit"}))
        assert b"Runtime.ExitError" in result.body, result.body

    run("zygote", code_dir, scenario, pool=0)


def test_a_code_directory_unpacked_again_is_seen_anew(code_dir: Path, tmp_path: Path) -> None:
    """Each code directory's read-only view is made once and cloned for its sandboxes;
    one removed and unpacked again at the same path (the package cache evicts) is
    viewed anew, never through the view of the directory it replaced."""
    needs_root()
    package = tmp_path / "package"
    package.mkdir()
    package.chmod(0o755)
    (package / "app.py").write_text(HANDLER)

    async def scenario(backend: Any, spec: Any) -> None:
        def of() -> SandboxSpec:
            return dataclasses.replace(spec(), code_dir=str(package))

        first = await backend.create(of())
        assert json.loads((await first.invoke(request({}))).body)["count"] == 1
        second = await backend.create(of())  # a clone of the same view
        assert (await second.invoke(request({}))).outcome is Outcome.OK
        first.destroy()
        second.destroy()
        for entry in package.iterdir():
            entry.unlink()
        package.rmdir()
        package.mkdir()
        package.chmod(0o755)
        (package / "app.py").write_text("def handler(event, context):\n    return 'anew'\n")
        third = await backend.create(of())
        assert json.loads((await third.invoke(request({}))).body) == "anew"

    run("zygote", code_dir, scenario, pool=0)
