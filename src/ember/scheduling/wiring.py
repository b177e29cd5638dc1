"""This node's sandboxes, wired: backends, the local worker, Placement, the Worker Manager.

Starts the default sandbox backend (refusing to serve when its isolation is
impossible) and the strong one; runs the evictor and the code-cache sweeper;
stops by destroying every sandbox; closes the backends. The registry's
listeners (``function_changed``, ``manager.rename``) fire for changes made on
any node, so stale sandboxes are retired wherever they run. A worker host
(``ember worker``) has no registry: a changed function's calls name a new
revision, so its old sandboxes get no more calls and the keep-alive reclaims them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ember.config import Settings
from ember.control.models import FunctionRecord
from ember.control.registry import FunctionRegistry
from ember.errors import SandboxUnavailable, StartupRefused, StorageUnavailable
from ember.lifecycle import Loop
from ember.sandbox.gvisor import GVisorBackend
from ember.sandbox.zygote import ZygoteBackend
from ember.scheduling.executor import LocalExecutor
from ember.scheduling.manager import WorkerManager
from ember.scheduling.membership_postgres import PostgresMembership
from ember.scheduling.placement import Placement
from ember.scheduling.remote import Links, RemoteExecutor
from ember.scheduling.rendezvous import RendezvousPlacement
from ember.storage.base import PackageStore
from ember.storage.postgres import Database
from ember.worker.layers import LayerCache
from ember.worker.packages import CodeCache
from ember.worker.worker import LocalWorker, package_keys

log = logging.getLogger("ember")

SANDBOX_BACKENDS = ("zygote", "process")
CACHE_SWEEP_SECONDS = 10.0
# Writes one chunk of a sandbox's output to its function's log.
WriteLog = Callable[[str, bytes], None]


@dataclass(frozen=True)
class SandboxOutput:
    """The sandbox backends' sink: output goes to the log of the function the sandbox runs."""

    manager: WorkerManager
    write: WriteLog

    def __call__(self, sandbox_id: str, output: bytes) -> None:
        function = self.manager.function_of(sandbox_id)
        if function is not None:
            self.write(function, output)


@dataclass
class Workers:
    settings: Settings
    registry: FunctionRegistry | None  # None on a worker host
    backend: ZygoteBackend
    strong: GVisorBackend
    worker: LocalWorker
    manager: WorkerManager
    executor: LocalExecutor
    # Set when a function changes: its old code may be swept from the worker's cache.
    sweep_wanted: asyncio.Event = field(default_factory=asyncio.Event)
    stopped: bool = False

    @classmethod
    def build(
        cls,
        settings: Settings,
        packages: PackageStore,
        registry: FunctionRegistry | None,
        write_log: WriteLog,
    ) -> Workers:
        if settings.sandbox not in SANDBOX_BACKENDS:
            raise ValueError(
                f"unknown sandbox backend {settings.sandbox!r}: choose one of {SANDBOX_BACKENDS}"
            )
        data = settings.data_dir.resolve()
        placement = Placement([])
        manager = WorkerManager(
            placement, settings.keep_alive_seconds, freeze_after=settings.freeze_after_seconds
        )
        sink = SandboxOutput(manager, write_log)
        backend = ZygoteBackend(
            isolated=settings.sandbox == "zygote",
            sink=sink,
            init_timeout=settings.init_timeout_seconds,
            pool=settings.sandbox_pool,
        )
        strong = GVisorBackend(
            standard=backend, sink=sink, init_timeout=settings.init_timeout_seconds
        )
        worker = LocalWorker(
            backend,
            CodeCache(data / "code", packages.get),
            settings,
            strong=strong,
            layers=LayerCache(data / "layers", packages.get),
        )
        placement.add(worker)
        workers = cls(settings, registry, backend, strong, worker, manager, LocalExecutor(manager))
        if registry is not None:
            registry.subscribe(workers.function_changed)
            registry.on_rename(manager.rename)
        return workers

    def function_changed(self, name: str, local: bool) -> None:
        """The registry's listener: sandboxes of revisions no longer current retire,
        and the code they ran may be swept."""
        if self.registry is not None:
            self.manager.retire(name, keep=self.registry.revisions(name))
        self.sweep_wanted.set()

    def describe(self) -> dict[str, object]:
        """The isolation in force, for /health."""
        return {**self.backend.describe(), "strong": self.strong.describe()}

    async def start(self) -> None:
        await _start_sandboxes(self.backend)
        await self.strong.start()
        await self._start_runtimes_in_use()

    async def _start_runtimes_in_use(self) -> None:
        """Start the zygote of every runtime a stored function uses, so that the
        first call of each after a restart pays only its cold start, not its
        interpreter's start-up (a few hundred ms). One that cannot start now is
        left to its first call, which reports why."""
        records = self.registry.records() if self.registry is not None else ()
        wanted = sorted({record.runtime for record in records})
        results = await asyncio.gather(
            *(self.backend.prestart(runtime) for runtime in wanted), return_exceptions=True
        )
        for runtime, result in zip(wanted, results, strict=True):
            if isinstance(result, SandboxUnavailable):
                log.warning("the %s runtime cannot start now: %s", runtime, result.message)
            elif isinstance(result, BaseException):
                raise result

    def loops(self) -> list[Loop]:
        return [self.manager.run_evictor(self.settings.evict_interval_seconds), self._sweep()]

    def stop(self) -> None:
        self.manager.close()
        self.stopped = True
        self.sweep_wanted.set()

    async def close(self) -> None:
        self.manager.close()
        await self.strong.close()
        await self.backend.close()

    async def _sweep(self) -> None:
        """Drop unpacked code and layers that nothing needs any more, soon after a function
        changes (its idle sandboxes are retired at once) and every CACHE_SWEEP_SECONDS (for
        those that were busy then). Runs until ``stop``."""
        while not self.stopped:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.sweep_wanted.wait(), CACHE_SWEEP_SECONDS)
            self.sweep_wanted.clear()
            if self.stopped:
                return
            await self._sweep_once(self.registry.records() if self.registry else ())

    async def _sweep_once(self, records: Iterable[FunctionRecord]) -> None:
        needed = self.manager.packages_in_use()
        for record in records:
            needed |= package_keys(record)
        try:
            removed = await self.worker.sweep(needed)
        except OSError as exc:  # a full or failing disk must not stop the server
            log.warning("could not sweep the code cache: %s", exc)
            return
        if removed:
            log.info("removed %d unpacked package(s) no function uses", removed)


async def _start_sandboxes(backend: ZygoteBackend) -> None:
    """Start the default backend and prove its isolation, or refuse to serve.

    The server's own interpreter serves its python3.x runtime and every runtime
    the host lacks, so that zygote starts now (the first call does not wait for
    it); with full isolation, its probe sandbox checks every layer from inside.
    """
    try:
        await backend.start()
        await backend.prestart(f"python3.{sys.version_info.minor}")
    except SandboxUnavailable as exc:
        with contextlib.suppress(Exception):
            await backend.close()
        if not backend.describe()["isolated"]:
            raise StartupRefused(f"cannot start sandboxes: {exc.message}") from None
        raise StartupRefused(
            f"full isolation is not possible on this host: {exc.message}. ember refuses to "
            "run strangers' code without it; start with `--sandbox process` to run functions "
            "unisolated, for development only"
        ) from None
    isolation = backend.describe()
    if isolation["isolated"]:
        log.info("isolation: %s", isolation)
    else:
        log.warning("isolation: NONE: %s", isolation["warning"])


POLL_SECONDS = 0.5  # how often a frontend reads the membership table


@dataclass
class RemoteWorkers:
    """A frontend's part (``ember serve --role frontend``): no sandboxes here; calls go
    to worker hosts. Polls the membership table into Placement every POLL_SECONDS,
    watches the links' heartbeats, and closes the links at the end."""

    membership: PostgresMembership
    placement: RendezvousPlacement
    links: Links
    executor: RemoteExecutor
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def build(
        cls, settings: Settings, database: Database | None, frontend_id: str
    ) -> RemoteWorkers:
        if database is None or settings.cluster_token is None:
            raise StartupRefused("--role frontend needs --database and a cluster token")
        placement = RendezvousPlacement()
        links = Links(settings.cluster_token, frontend_id, placement)
        executor = RemoteExecutor(links, placement, settings.init_timeout_seconds)
        return cls(PostgresMembership(database), placement, links, executor)

    def describe(self) -> dict[str, object]:
        """For /health: this node runs no sandboxes; how many workers it can use."""
        stats = self.placement.statistics()
        return {"role": "frontend", "workers": stats.members, "usable": stats.usable}

    async def start(self) -> None:
        await self._poll_once()

    def loops(self) -> list[Loop]:
        return [self._poll(), self.links.watch()]

    def stop(self) -> None:
        self.stopping.set()
        self.links.stop()

    async def close(self) -> None:
        self.links.close()

    async def _poll(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), POLL_SECONDS)
            await self._poll_once()

    async def _poll_once(self) -> None:
        try:
            workers = await self.membership.workers()
        except StorageUnavailable as exc:  # placement keeps the last table it read
            log.warning("could not read the membership table: %s", exc.message)
            return
        self.links.members(workers)
