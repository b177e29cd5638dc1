"""Wiring: settings in, one running platform out (embedded mode).

``build`` turns Settings into concrete components; the lifespan starts them,
owns every background loop in one task group, and on shutdown (SIGTERM)
destroys every sandbox, stops the zygotes and removes the cgroups.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ember.api.app import Frontend
from ember.api.services import Services
from ember.config import Settings
from ember.control.arns import Arns
from ember.control.layers import LayerRegistry
from ember.control.manifests_wiring import Manifests
from ember.control.registry import FunctionRegistry
from ember.control.urls import FunctionUrls
from ember.errors import SandboxUnavailable, StartupRefused
from ember.invoke.events import AsyncInvocation
from ember.invoke.logs import LogStore
from ember.invoke.service import InvocationService
from ember.mcp.catalog import ToolCatalog
from ember.mcp.endpoint import McpEndpoint
from ember.queue import wiring as queue_wiring
from ember.sandbox.gvisor import GVisorBackend
from ember.sandbox.zygote import ZygoteBackend
from ember.scheduling.manager import WorkerManager
from ember.scheduling.placement import Placement
from ember.storage.localfs import LocalPackageStore
from ember.storage.sqlite import SqliteMetadataStore
from ember.throttle import Throttle
from ember.throttle import wiring as throttle_wiring
from ember.worker.layers import LayerCache
from ember.worker.packages import CodeCache
from ember.worker.worker import LocalWorker, package_keys

log = logging.getLogger("ember")

SANDBOX_BACKENDS = ("zygote", "process")


@dataclass
class Platform:
    settings: Settings
    store: SqliteMetadataStore
    registry: FunctionRegistry
    backend: ZygoteBackend
    manager: WorkerManager
    logs: LogStore
    services: Services
    throttle: Throttle
    asynchronous: AsyncInvocation
    strong: GVisorBackend | None = None
    manifests: Manifests | None = None
    # Layers and function URLs each keep their own SQLite file in the data dir.
    layer_store: SqliteMetadataStore | None = None
    url_store: SqliteMetadataStore | None = None
    tools: ToolCatalog | None = None
    mcp: McpEndpoint | None = None
    worker: LocalWorker | None = None
    # Set when a function changes: its old code may be swept from the worker's cache.
    sweep_wanted: asyncio.Event = field(default_factory=asyncio.Event)


def build(settings: Settings) -> Platform:
    """Construct every component for ``settings``; nothing starts yet."""
    if settings.sandbox not in SANDBOX_BACKENDS:
        raise ValueError(
            f"unknown sandbox backend {settings.sandbox!r}: choose one of {SANDBOX_BACKENDS}"
        )
    data = settings.data_dir.resolve()
    names = Arns(settings.region, settings.account_id)
    store = SqliteMetadataStore(data / "metadata.sqlite3")
    packages = LocalPackageStore(data / "packages")
    layer_store = SqliteMetadataStore(data / "layers.sqlite3")
    layers = LayerRegistry(layer_store, packages, names)
    registry = FunctionRegistry(store, packages, names, layers=layers)
    url_store = SqliteMetadataStore(data / "urls.sqlite3")
    function_urls = FunctionUrls(url_store, registry, names, settings.endpoint_url)
    logs = LogStore(data / "logs", settings.log_file_max_bytes)
    manager_ref: list[WorkerManager] = []

    def sink(sandbox_id: str, output: bytes) -> None:
        function = manager_ref[0].function_of(sandbox_id) if manager_ref else None
        if function is not None:
            logs.raw(function, output)

    backend = ZygoteBackend(
        isolated=settings.sandbox == "zygote",
        sink=sink,
        init_timeout=settings.init_timeout_seconds,
        pool=settings.sandbox_pool,
    )
    strong = GVisorBackend(standard=backend, sink=sink, init_timeout=settings.init_timeout_seconds)
    worker = LocalWorker(
        backend,
        CodeCache(data / "code", packages.get),
        settings,
        strong=strong,
        layers=LayerCache(data / "layers", packages.get),
    )
    manager = WorkerManager(
        Placement([worker]), settings.keep_alive_seconds, freeze_after=settings.freeze_after_seconds
    )
    manager_ref.append(manager)
    registry.subscribe(lambda name: manager.retire(name, keep=registry.revisions(name)))
    registry.on_rename(manager.rename)
    throttle = throttle_wiring.build(settings, data)

    def forget_deleted(name: str) -> None:
        if registry.lookup(name) is None:
            throttle.forget(name)

    registry.subscribe(forget_deleted)
    events = queue_wiring.build(settings.queue_backend, data)
    invocations = InvocationService(
        registry,
        manager,
        logs,
        names,
        throttle,
        events=events,
        max_async_payload=settings.async_max_payload_bytes,
    )
    asynchronous = AsyncInvocation.build(settings, events, registry, invocations.invoke, names)
    tools = ToolCatalog(SqliteMetadataStore(data / "tools.sqlite3"), registry.get)
    registry.subscribe(lambda name: tools.function_changed(name, registry.lookup(name) is not None))
    mcp = McpEndpoint(
        tools,
        invocations.invoke,
        host=settings.host,
        token=settings.mcp_token,
        allowed_hosts=settings.mcp_allowed_hosts,
    )
    manifests = Manifests.build(
        settings,
        data,
        packages,
        registry,
        throttle,
        asynchronous,
        manager,
        invocations,
        names,
        urls=function_urls,
        tools=tools,
    )
    services = Services(
        settings,
        names,
        registry,
        invocations,
        manager,
        logs,
        lambda: {**backend.describe(), "strong": strong.describe()},
        throttle=throttle,
        asynchronous=asynchronous,
        manifests=manifests.objects,
        layers=layers,
        urls=function_urls,
        tools=tools,
    )
    platform = Platform(
        settings,
        store,
        registry,
        backend,
        manager,
        logs,
        services,
        throttle,
        asynchronous=asynchronous,
        strong=strong,
        manifests=manifests,
        layer_store=layer_store,
        url_store=url_store,
        tools=tools,
        mcp=mcp,
        worker=worker,
    )
    registry.subscribe(lambda _name: platform.sweep_wanted.set())
    return platform


def application(platform: Platform) -> Frontend:
    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await _start_sandboxes(platform)
        if platform.strong is not None:
            await platform.strong.start()
        await platform.services.layers.load()
        await platform.registry.load()
        await platform.services.urls.load()
        if platform.tools is not None:
            await platform.tools.load(lambda name: platform.registry.lookup(name) is not None)
        await platform.throttle.start(lambda name: platform.registry.lookup(name) is not None)
        await platform.asynchronous.start()
        if platform.manifests is not None:
            await platform.manifests.start()
        try:
            async with asyncio.TaskGroup() as loops:
                loops.create_task(platform.logs.run())
                loops.create_task(platform.throttle.run())
                loops.create_task(platform.asynchronous.supervisor.run())
                loops.create_task(
                    platform.manager.run_evictor(platform.settings.evict_interval_seconds)
                )
                sweeper = loops.create_task(_sweep_caches(platform))
                for loop in platform.manifests.loops() if platform.manifests else []:
                    loops.create_task(loop)
                if platform.tools is not None and platform.mcp is not None:
                    loops.create_task(platform.tools.run())
                    loops.create_task(platform.mcp.feed.run())
                # Everything built so far lives as long as the server: keep the
                # cyclic collector from walking it again on every collection.
                gc.collect()
                gc.freeze()
                log.info("ember is ready on %s", platform.settings.endpoint_url)
                try:
                    async with _mcp_sessions(platform):
                        yield
                finally:
                    if platform.tools is not None and platform.mcp is not None:
                        platform.tools.stop()
                        platform.mcp.feed.stop()
                    # Deliveries in flight are cancelled before their sandboxes die,
                    # so they are redelivered on restart rather than failed.
                    platform.asynchronous.supervisor.stop()
                    if platform.manifests is not None:
                        platform.manifests.stop()
                    platform.manager.close()
                    platform.logs.stop()
                    platform.throttle.stop()
                    sweeper.cancel()
        finally:
            platform.manager.close()
            if platform.strong is not None:
                await platform.strong.close()
            await platform.backend.close()
            await platform.store.close()
            for extra in (platform.layer_store, platform.url_store):
                if extra is not None:
                    await extra.close()
            if platform.tools is not None:
                await platform.tools.close()
            await platform.throttle.close()
            await platform.asynchronous.close()
            if platform.manifests is not None:
                await platform.manifests.close()
            log.info("ember stopped: every sandbox reaped")

    return Frontend(platform.services, lifespan, mcp=platform.mcp)


CACHE_SWEEP_SECONDS = 10.0


async def _sweep_caches(platform: Platform) -> None:
    """Drop unpacked code and layers that nothing needs any more, soon after a function
    changes (its idle sandboxes are retired at once) and every CACHE_SWEEP_SECONDS (for
    those that were busy then). Runs until cancelled at shutdown."""
    worker = platform.worker
    if worker is None:
        return
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(platform.sweep_wanted.wait(), CACHE_SWEEP_SECONDS)
        platform.sweep_wanted.clear()
        needed = platform.manager.packages_in_use()
        for record in platform.registry.records():
            needed |= package_keys(record)
        try:
            removed = await worker.sweep(needed)
        except OSError as exc:  # a full or failing disk must not stop the server
            log.warning("could not sweep the code cache: %s", exc)
            continue
        if removed:
            log.info("removed %d unpacked package(s) no function uses", removed)


async def _start_sandboxes(platform: Platform) -> None:
    """Start the default backend and prove its isolation, or refuse to serve.

    The server's own interpreter serves its python3.x runtime and every runtime
    the host lacks, so that zygote starts now (the first call does not wait for
    it); with full isolation, its probe sandbox checks every layer from inside.
    """
    backend = platform.backend
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


def _mcp_sessions(platform: Platform) -> contextlib.AbstractAsyncContextManager[None]:
    """The MCP endpoint's session manager, run for as long as the server serves."""
    return platform.mcp.run() if platform.mcp is not None else contextlib.nullcontext()


def serve(settings: Settings, log_level: str = "info") -> None:
    """Run the whole platform in this process until SIGTERM or Ctrl-C."""
    import uvicorn

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = application(build(settings))
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        # ember is not behind a proxy by default; the middleware costs every request.
        proxy_headers=False,
        log_level=log_level,
        timeout_graceful_shutdown=30,
    )
    # uvicorn re-raises the signal that stopped it once shutdown is complete;
    # by then every sandbox is reaped, so a SIGTERM or Ctrl-C is a clean exit.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: sys.exit(0))
    uvicorn.Server(config).run()
