"""`ember worker`: a worker host of a cluster (issue 14).

Holds sandboxes, the package and layer caches and nothing else: no public
API, no registry. It starts today's sandbox backends (refusing to run when
its isolation check fails, as ``ember serve`` does), listens for frontends on
the channel (``ember.scheduling.serving``), registers in the membership table
and heartbeats every second, to the table and to every connected frontend.
Drained (``ember workers drain``) or sent SIGTERM, it takes no call that
needs a new sandbox; on SIGTERM it also leaves the table, lets the calls in
flight finish, then destroys its sandboxes and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from ember.config import Settings
from ember.errors import StartupRefused, StorageUnavailable
from ember.invoke.logs import LogStore
from ember.sandbox import runtimes
from ember.scheduling import membership_postgres
from ember.scheduling.base import HEARTBEAT_SECONDS, WorkerInfo, WorkerLoad
from ember.scheduling.membership_postgres import PostgresMembership
from ember.scheduling.serving import HostState, WorkerEndpoint
from ember.scheduling.wiring import Workers
from ember.storage import wiring as storage_wiring
from ember.storage.node import node_id
from ember.worker.runtime_installs import RuntimeInstaller, RuntimeSync

log = logging.getLogger("ember.worker")

# How long a stopping worker waits for its calls in flight (Lambda's longest timeout).
STOP_GRACE_SECONDS = 900.0


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``) into its parts; ValueError names the bad value."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not HOST:PORT: {address!r}")
    return host.strip("[]"), int(port)


class WorkerNode:
    """One worker host's parts, from start to a clean exit."""

    def __init__(self, settings: Settings) -> None:
        if settings.cluster_token is None or settings.database_url is None:
            raise StartupRefused("a worker needs --database and a cluster token")
        self.settings = settings
        self.storage = storage_wiring.build(settings)
        assert self.storage.database is not None
        self.worker_id = node_id(self.storage.data_dir)
        # Each worker reads its own <data_dir>/runtimes, kept to the cluster's wishes
        # (`ember runtimes install` through a frontend) by its RuntimeSync.
        runtimes.use_runtimes_dir(self.storage.data_dir / "runtimes")
        self.membership = PostgresMembership(self.storage.database)
        self.logs = LogStore(self.storage.data_dir / "logs", settings.log_file_max_bytes)
        self.workers = Workers.build(settings, self.storage.packages, None, self.logs.raw)
        self.draining = False  # set by the membership table (drain) or SIGTERM
        self.stopping = asyncio.Event()
        self.runtime_sync = RuntimeSync(
            self.storage.metadata("runtimes"), RuntimeInstaller(), self._runtimes_changed
        )
        self.endpoint = WorkerEndpoint(
            self.workers.executor,
            settings.cluster_token,
            HostState(self.worker_id, lambda: self.draining),
        )

    def info(self) -> WorkerInfo:
        isolation = self.workers.describe()
        return WorkerInfo(
            worker_id=self.worker_id,
            address=self.settings.advertise or self.settings.listen,
            memory_mb=self.settings.worker_memory_mb,
            max_sandboxes=self.settings.max_sandboxes,
            runtimes=runtimes.installed(),
            isolation="full" if isolation.get("isolated") else "process",
        )

    def load(self) -> WorkerLoad:
        manager = self.workers.manager
        stats = manager.statistics()
        return WorkerLoad(
            sandboxes=stats["sandboxes"],
            busy=stats["busy"],
            memory_reserved_mb=manager.memory_reserved_mb(),
            busy_memory_mb=manager.busy_memory_mb(),
        )

    async def run(self) -> None:
        await self.storage.open((membership_postgres.MIGRATION,))
        try:
            await self.workers.start()
            try:
                await self._serve()
            finally:
                self.workers.stop()
                await self.workers.close()
        finally:
            await self.storage.close()

    async def _serve(self) -> None:
        host, port = split_address(self.settings.listen)
        await self.endpoint.listen(host, port)
        await self.membership.register(self.info())
        log.info("worker %s is ready on %s", self.worker_id, self.info().address)
        async with asyncio.TaskGroup() as loops:
            for loop in self.workers.loops():
                loops.create_task(loop)
            loops.create_task(self.logs.run())
            beats = loops.create_task(self._heartbeats())
            frames = loops.create_task(self._heartbeat_frames())
            loops.create_task(self.runtime_sync.run())
            await self.stopping.wait()
            self.runtime_sync.stop()
            beats.cancel()
            await self._leave()
            frames.cancel()
            self.logs.stop()
            self.workers.stop()

    async def _heartbeat_frames(self) -> None:
        """To every frontend, every second: a loop of its own, so that a slow database
        never makes the frontends think this worker is gone."""
        while True:
            self.endpoint.heartbeat()
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def _heartbeats(self) -> None:
        """To the membership table, every second; learns from it whether to drain."""
        while True:
            try:
                await self._heartbeat()
            except StorageUnavailable as exc:  # frontends keep the last table they read
                log.warning("could not heartbeat to the membership table: %s", exc.message)
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def _heartbeat(self) -> None:
        draining = await self.membership.heartbeat(self.worker_id, self.load())
        if draining is None:
            log.warning("this worker's row was removed: registering again")
            await self.membership.register(self.info())
        elif draining != self.draining:
            log.info("draining" if draining else "no longer draining")
            self.draining = draining

    async def _runtimes_changed(self) -> None:
        """Tell the frontends what this worker runs now (an install waits for it)."""
        have = await asyncio.to_thread(runtimes.installed)
        with contextlib.suppress(StorageUnavailable):
            await self.membership.set_runtimes(self.worker_id, have)

    async def _leave(self) -> None:
        """Take no new sandbox, leave the table, let the calls in flight end."""
        self.draining = True
        with contextlib.suppress(StorageUnavailable):
            await self.membership.leave(self.worker_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_GRACE_SECONDS
        while self.workers.manager.statistics()["busy"] and loop.time() < deadline:
            await asyncio.sleep(0.1)
        await self.endpoint.close()
        log.info("worker %s left the cluster", self.worker_id)


def run(settings: Settings, log_level: str = "info") -> None:
    """Run a worker host in this process until SIGTERM or Ctrl-C."""
    import uvloop

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def main() -> None:
        node = WorkerNode(settings)
        loop = asyncio.get_running_loop()
        for stop in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(stop, node.stopping.set)
        await node.run()

    uvloop.run(main())
