"""Wiring: settings in, one running platform out.

``build`` only composes: storage first, then each subsystem's own wiring
(``control.wiring``, ``scheduling.wiring``, ``throttle.wiring``,
``invoke.wiring``, ``mcp.wiring``, ``reconcile.wiring``), each building its
parts from the settings and the node's Storage and saying what it starts,
runs and stops (``ember.lifecycle.Part``); the registry's listeners are their
named methods. The lifespan opens the storage, starts the parts in order,
owns every loop (the change feed's too) in one task group, and on shutdown
(SIGTERM) stops them, destroys every sandbox and closes the parts in reverse
order, the storage last.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ember.api.app import Frontend
from ember.api.guard import Guard
from ember.api.services import NodeInfo, Services
from ember.audit import postgres as audit_postgres
from ember.audit.wiring import Audit
from ember.auth.wiring import Auth
from ember.config import Settings
from ember.console.app import ConsoleApp
from ember.console.session import Sessions
from ember.console.views import Console
from ember.control.wiring import ControlPlane
from ember.invoke.urls import UrlInvoker
from ember.invoke.wiring import Invocation
from ember.lifecycle import Part
from ember.mcp.wiring import Mcp
from ember.observe import postgres as observe_postgres
from ember.observe.wiring import Observability
from ember.queue import postgres as queue_postgres
from ember.reconcile.wiring import DUTIES, Manifests
from ember.sandbox import runtimes
from ember.scheduling import membership_postgres
from ember.scheduling.cluster_runtimes import ClusterRuntimes, RuntimeSyncPart
from ember.scheduling.executor import Executor
from ember.scheduling.membership_postgres import PostgresMembership
from ember.scheduling.roster import Roster
from ember.scheduling.wiring import RemoteWorkers, Workers
from ember.sources.wiring import EventSources
from ember.storage import wiring as storage_wiring
from ember.storage.node import node_id
from ember.storage.wiring import Storage
from ember.throttle import wiring as throttle_wiring
from ember.worker.runtime_installs import RuntimeInstaller, RuntimeSync

log = logging.getLogger("ember")
# How long the background loops (pollers, schedulers, the change feed) get to
# finish once told to stop, before they are cancelled.
STOP_GRACE_SECONDS = 10.0


@dataclass
class Platform:
    settings: Settings
    storage: Storage
    services: Services
    mcp: Mcp
    auth: Auth
    # In start order: sandboxes first (a host that cannot isolate refuses at once),
    # then the audit log (open before any request, closed after every other part),
    # then the invocation history (closed after the calls that write it),
    # then the registries, then what drops orphans against them.
    parts: list[Part]


def build(settings: Settings) -> Platform:
    """Construct every component for ``settings``; nothing starts yet."""
    storage = storage_wiring.build(settings)
    node = node_id(storage.data_dir)
    # Installed Node majors (``ember runtimes install``) live in the data dir.
    runtimes.use_runtimes_dir(storage.data_dir / "runtimes")
    control = ControlPlane.build(settings, storage)
    audit = Audit.build(settings, storage)
    auth = Auth.build(
        settings, storage, resource_policy_of=control.policies.policy_of, audit=audit.log
    )
    logs = Invocation.logs_of(settings)
    workers: Workers | RemoteWorkers
    if settings.role == "frontend":  # no sandboxes here: calls go to worker hosts
        workers = RemoteWorkers.build(settings, storage.database, node)
    else:
        workers = Workers.build(settings, storage.packages, control.registry, logs.raw)
    throttle = throttle_wiring.build(settings, storage, control.account_of)
    control.registry.subscribe(throttle.function_changed)
    observability = Observability.build(settings, storage, node)
    invocation = Invocation.build(
        settings,
        storage,
        control,
        workers.executor,
        throttle,
        logs,
        node,
        observability.recorder if settings.observe else None,
    )
    asynchronous = invocation.asynchronous
    mcp = Mcp.build(
        settings, storage, control.registry.get, control.exists, invocation.service.invoke
    )
    control.registry.subscribe(mcp.function_changed)
    sources = EventSources.build(settings, storage, control, throttle, invocation.service.invoke)
    manifests = Manifests.build(
        settings,
        storage,
        control,
        throttle,
        asynchronous,
        workers.executor,
        invocation.service,
        tools=mcp.tools,
        urls=control.urls,
    )
    roster = Roster(None if storage.database is None else PostgresMembership(storage.database))
    installer = RuntimeInstaller()
    # In a cluster every node keeps its runtimes to the cluster's wishes.
    runtime_sync = (
        None if storage.database is None else RuntimeSync(storage.metadata("runtimes"), installer)
    )
    services = Services(
        settings,
        control.names,
        control.registry,
        invocation.service,
        workers.executor,
        logs,
        workers.describe,
        throttle=throttle,
        asynchronous=asynchronous,
        manifests=manifests.objects,
        provisioned=manifests.provisioned,
        layers=control.layers,
        urls=control.urls,
        policies=control.policies,
        tags=control.tags,
        tools=mcp.tools,
        audit=audit.log,
        mcp_tokens=mcp.tokens,
        node=NodeInfo(
            node,
            "embedded" if storage.database is None else "cluster",
            DUTIES,
            # Not part of the Leadership protocol: shown when the backend offers it.
            held=getattr(storage.leadership, "held", None),
        ),
        admin=auth.admin,
        roster=roster,
        runtimes=ClusterRuntimes(installer, runtime_sync, roster),
        sources=sources,
        recorder=observability.recorder,
        metrics=observability.exposition(functools.partial(_sandbox_states, workers.executor)),
    )
    parts: list[Part] = [
        workers,
        audit,
        observability,
        auth,
        control,
        throttle_wiring.ThrottlePart(throttle, control.exists),
        invocation,
        mcp,
        manifests,
        sources,
    ]
    if runtime_sync is not None:
        parts.append(RuntimeSyncPart(runtime_sync))
    return Platform(settings, storage, services, mcp, auth, parts)


async def _stopped(running: list[asyncio.Task[None]]) -> None:
    """Give the stopped loops ``STOP_GRACE_SECONDS`` to finish, then cancel the rest:
    a loop stuck on a peer (a broker's socket, a database) never holds shutdown."""
    _, late = await asyncio.wait(running, timeout=STOP_GRACE_SECONDS)
    for task in late:
        log.warning("a background loop did not stop in time and was cancelled: %s", task)
        task.cancel()


def _sandbox_states(executor: Executor) -> dict[str, int]:
    """Sandboxes by state for ``/metrics``: this node's, or its worker hosts' (a frontend)."""
    statistics = executor.statistics()
    return {"idle": statistics.get("idle", 0), "busy": statistics.get("busy", 0)}


def application(platform: Platform) -> Frontend:
    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        storage = platform.storage
        started: list[Part] = []
        try:
            await storage.open(
                (
                    queue_postgres.MIGRATION,
                    audit_postgres.MIGRATION,
                    membership_postgres.MIGRATION,
                    observe_postgres.MIGRATION,
                )
            )
            for part in platform.parts:
                await part.start()
                started.append(part)
            async with asyncio.TaskGroup() as loops:
                running = [
                    loops.create_task(loop) for part in platform.parts for loop in part.loops()
                ]
                running.append(loops.create_task(storage.feed.run()))
                # Everything built so far lives as long as the server: keep the
                # cyclic collector from walking it again on every collection.
                gc.collect()
                gc.freeze()
                log.info("ember is ready on %s", platform.settings.endpoint_url)
                try:
                    async with platform.mcp.endpoint.run():
                        yield
                finally:
                    storage.feed.stop()
                    # Later parts first: pollers stop before the sandboxes die, so
                    # deliveries in flight are redelivered on restart, not failed.
                    for part in reversed(platform.parts):
                        part.stop()
                    await _stopped(running)
        finally:
            for part in reversed(started):
                await part.close()
            await storage.close()
            log.info("ember stopped: every sandbox reaped")

    auth = platform.auth
    guard = Guard(auth.verifier, auth.default_root, auth.authorizer, auth.audit)
    services = platform.services
    urls = UrlInvoker(
        services.urls,
        services.invocations.invoke,
        verify=auth.verify_url,
        authorizer=auth.authorizer,
    )
    return Frontend(
        services,
        lifespan,
        mcp=platform.mcp.endpoint,
        guard=guard,
        url_invoker=urls,
        console=_console(platform),
    )


def _console(platform: Platform) -> ConsoleApp:
    """The web console: signs in with the access keys (none with --auth none, where
    everyone is the default root, as on the API) and authorizes as the API does."""
    auth = platform.auth
    sessions = None
    if auth.keys is not None:
        sessions = Sessions(auth.keys.derive("ember console sessions"), auth.keys.lookup)
    return ConsoleApp(Console(platform.services, auth.authorizer), sessions, auth.default_root)


def serve(settings: Settings, log_level: str = "info") -> None:
    """Run the whole platform in this process until SIGTERM or Ctrl-C."""
    import uvicorn

    from ember.api.wire import WireLimits, bounded_protocol

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = application(build(settings))
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        # httptools, with the head's size, header count and read time bounded, and
        # Invoke answered by the Frontend without the ASGI cycle (the lane). Not
        # behind a trusted proxy: its middleware must name the client first.
        http=bounded_protocol(
            WireLimits(
                head_bytes=settings.max_head_bytes,
                max_headers=settings.max_headers,
                read_timeout=settings.read_timeout_seconds,
            ),
            lane=None if settings.trusted_proxies else app,
        ),
        lifespan="on",
        access_log=False,
        # X-Forwarded-For names the client only when sent by a proxy the operator
        # trusts (--trusted-proxy; the rightmost untrusted hop wins); none by default,
        # and then the middleware, which costs every request, is left out.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies) or None,
        log_level=log_level,
        timeout_graceful_shutdown=30,
        # Longer than clients wait between calls on one connection: boto3's waiters
        # poll every 5 s, uvicorn's default, so a poll raced the server closing its
        # idle connection ("Connection was closed before we received a valid
        # response"). 75 s, as nginx; AWS's load balancers keep 60 s.
        timeout_keep_alive=75,
    )
    # uvicorn re-raises the signal that stopped it once shutdown is complete;
    # by then every sandbox is reaped, so a SIGTERM or Ctrl-C is a clean exit.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: sys.exit(0))
    uvicorn.Server(config).run()
