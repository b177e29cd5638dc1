"""Simulated hosts for tests and benchmarks: network namespaces on a bridge of this machine.

``Network(n)`` makes a bridge with the host's address ``10.77.N.1/24`` (N
free on this machine, chosen under a lock, so parallel runs never share a
subnet) and ``n`` hosts, each a network namespace with its own address
(``10.77.N.2``, ``.3``, ...) on a veth pair whose host side is plugged into
the bridge. ``host.popen([...])`` runs a command inside (``nsenter --net``);
``host.link_down()`` sets the host side of its veth down, which cuts the host
off as a pulled cable would (its processes live on, their connections hang),
and ``link_up()`` plugs it back in.

The services of this machine listen on loopback (PostgreSQL, Redis), which a
namespace cannot reach: a small relay process (this file, run as a script)
listens on the bridge's address and forwards each port given to the same port
on 127.0.0.1, so ``network.url(url)`` is the URL a host uses. A relay needs no
change to the services and works where ``scripts/services.sh`` started them.

Teardown (``close``, or leaving the ``with`` block, also when the body
failed) kills every process started in the hosts and any other left in their
namespaces, deletes the namespaces, veths and bridge and stops the relay.
What a killed run left behind is swept by the next one: each live network
records its owner's pid and what it made under ``STATE_DIR``.

Needs root, ``ip`` (Debian's iproute2; ``scripts/host-deps.sh`` installs it)
and ``nsenter`` (util-linux, essential on Debian); ``unavailable()`` says why
not, for a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

STATE_DIR = Path("/run/ember-netns")
SUBNET = "10.77.{}.0/24"
_PREFIX = "10.77."
IP_TIMEOUT_SECONDS = 10


class NetnsError(RuntimeError):
    """A namespace, link or relay could not be made; the message says which and why."""


def unavailable() -> str | None:
    """Why simulated hosts cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "simulated hosts need root (network namespaces, veth pairs, a bridge)"
    if shutil.which("ip") is None:
        return "simulated hosts need `ip` (Debian iproute2: scripts/host-deps.sh installs it)"
    if shutil.which("nsenter") is None:
        return "simulated hosts need `nsenter` (Debian util-linux)"
    probe = f"ember-probe-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def ip(*args: str, namespace: str | None = None, check: bool = True) -> str:
    """Run ``ip ARGS`` (inside ``namespace`` when given); its output, or NetnsError."""
    argv = ["ip", *(["-n", namespace] if namespace else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=IP_TIMEOUT_SECONDS)
    if check and done.returncode != 0:
        raise NetnsError(f"`{' '.join(argv)}` failed: {done.stderr.strip()}")
    return done.stdout


@dataclass
class Host:
    """One simulated host: a network namespace with one address on the bridge."""

    namespace: str
    address: str
    veth: str  # the host side of its veth pair, on the bridge
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` as run inside this host: in its network namespace only. Not ``ip
        netns exec``, which also remounts /sys in a mount namespace of its own, and so
        hides the cgroup hierarchy a worker's sandboxes need."""
        return ["nsenter", f"--net=/run/netns/{self.namespace}", "--", *argv]

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside this host in a session of its own; killed at teardown."""
        process = subprocess.Popen(self.command(argv), start_new_session=True, **kwargs)
        self.processes.append(process)
        return process

    def run(self, argv: Sequence[str], timeout: float = 60, **kwargs: Any) -> Any:
        """Run ``argv`` inside this host to completion (``subprocess.run``'s result)."""
        return subprocess.run(self.command(argv), timeout=timeout, **kwargs)

    def link_down(self) -> None:
        """Cut the host off: its processes keep running, nothing reaches them or leaves."""
        ip("link", "set", self.veth, "down")

    def link_up(self) -> None:
        ip("link", "set", self.veth, "up")

    def kill(self) -> None:
        """SIGKILL every process in this host (those started here and any they left)."""
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        for pid in _pids_in(self.namespace):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)


class Network:
    """A bridge, its hosts and the relay to this machine's services; see the module doc.

    ``forward``: ports on 127.0.0.1 the hosts reach at ``gateway:port``.
    """

    def __init__(self, hosts: int = 0, forward: Sequence[int] = ()) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.bridge = f"emb-{self.tag}"
        self.forward = tuple(forward)
        self.gateway = ""
        self.hosts: list[Host] = []
        self._initial = hosts
        self._relay: subprocess.Popen[bytes] | None = None
        self._state = STATE_DIR / f"{self.tag}.json"

    # --- the context manager ---------------------------------------------------------

    def __enter__(self) -> Network:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        sweep()
        with _locked():
            third = _free_octet()
            self.gateway = f"{_PREFIX}{third}.1"
            self._record()
            ip("link", "add", self.bridge, "type", "bridge")
            ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        if self.forward:
            self._relay = _start_relay(self.gateway, self.forward)
            self._record()
        for _ in range(self._initial):
            self.add_host()

    def add_host(self) -> Host:
        """One more host on the bridge, with the next address."""
        n = len(self.hosts)
        host = Host(
            namespace=f"ember-{self.tag}-{n}",
            address=self.gateway.rsplit(".", 1)[0] + f".{n + 2}",
            veth=f"emh-{self.tag}-{n}",
        )
        self.hosts.append(host)
        self._record()
        inner = f"emw-{self.tag}-{n}"
        ip("netns", "add", host.namespace)
        ip("link", "add", host.veth, "type", "veth", "peer", "name", inner)
        ip("link", "set", inner, "netns", host.namespace)
        ip("link", "set", host.veth, "master", self.bridge)
        ip("link", "set", host.veth, "up")
        ip("addr", "add", f"{host.address}/24", "dev", inner, namespace=host.namespace)
        ip("link", "set", inner, "up", namespace=host.namespace)
        ip("link", "set", "lo", "up", namespace=host.namespace)
        return host

    @property
    def relay_pid(self) -> int | None:
        return self._relay.pid if self._relay is not None else None

    def url(self, url: str) -> str:
        """``url`` with 127.0.0.1 (or localhost) replaced by the gateway: as a host reaches it."""
        return re.sub(r"(?<=[@/])(127\.0\.0\.1|localhost)(?=[:/])", self.gateway, url, count=1)

    def close(self) -> None:
        """Tear everything down; safe to call twice, and after a failed ``open``."""
        for host in self.hosts:
            host.kill()
        _teardown(
            [h.namespace for h in self.hosts],
            [h.veth for h in self.hosts],
            self.bridge,
            self.relay_pid,
        )
        if self._relay is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._relay.wait(timeout=10)
            self._relay = None
        self._state.unlink(missing_ok=True)

    def _record(self) -> None:
        state = {
            "owner": os.getpid(),
            "bridge": self.bridge,
            "namespaces": [h.namespace for h in self.hosts],
            "veths": [h.veth for h in self.hosts],
            "relay": self.relay_pid,
            "gateway": self.gateway,
        }
        self._state.write_text(json.dumps(state))


def sweep() -> None:
    """Tear down what networks of dead owners left (a run killed before its teardown)."""
    for path in STATE_DIR.glob("*.json"):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if _alive(int(state.get("owner", 0))):
            continue
        for namespace in state.get("namespaces", []):
            for pid in _pids_in(namespace):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        _teardown(state["namespaces"], state["veths"], state["bridge"], state.get("relay"))
        path.unlink(missing_ok=True)


def _teardown(
    namespaces: Sequence[str], veths: Sequence[str], bridge: str, relay: int | None
) -> None:
    for namespace in namespaces:
        ip("netns", "del", namespace, check=False)
    for veth in veths:  # gone with its peer's namespace, unless that failed
        ip("link", "del", veth, check=False)
    ip("link", "del", bridge, check=False)
    if relay is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(relay, signal.SIGKILL)


def _pids_in(namespace: str) -> list[int]:
    out = ip("netns", "pids", namespace, check=False)
    return [int(pid) for pid in out.split() if pid.isdigit()]


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One network at a time picks its subnet and claims it on this machine."""
    with open(STATE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _free_octet() -> int:
    used = set(re.findall(r"inet 10\.77\.(\d+)\.", ip("-o", "-4", "addr", "show")))
    free = [n for n in range(256) if str(n) not in used]
    if not free:
        raise NetnsError("every 10.77.N.0/24 subnet is in use on this machine")
    return random.choice(free)


# --- the relay: this file run as a script -------------------------------------------

RELAY_READY = b"relay ready\n"


def _start_relay(listen: str, ports: Sequence[int]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, __file__, "relay", listen, *map(str, ports)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert process.stdout is not None
    line = _readline(process.stdout, timeout=15)
    if line != RELAY_READY:
        process.kill()
        process.wait()
        raise NetnsError(f"the relay to {listen} did not start: {line.decode(errors='replace')}")
    process.stdout.close()
    return process


def _readline(stream: IO[bytes], timeout: float) -> bytes:
    """The first line ``stream`` gives within ``timeout`` (b"" when none)."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if selector.select(deadline - time.monotonic()):
                return stream.readline()
    return b""


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _relay(listen: str, ports: Sequence[int]) -> None:
    """Forward ``listen:port`` to ``127.0.0.1:port`` for each port, until the parent dies."""

    def handler(port: int) -> Any:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                writer.close()
                return
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

        return handle

    servers = [await asyncio.start_server(handler(p), listen, p) for p in ports]
    sys.stdout.buffer.write(RELAY_READY)
    sys.stdout.flush()
    parent = os.getppid()
    try:
        while os.getppid() == parent:  # orphaned: the harness died without its teardown
            await asyncio.sleep(1)
    finally:
        for server in servers:
            server.close()


if __name__ == "__main__" and sys.argv[1:2] == ["relay"]:
    asyncio.run(_relay(sys.argv[2], [int(p) for p in sys.argv[3:]]))
