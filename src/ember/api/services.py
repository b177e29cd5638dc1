"""What the HTTP layer is given: the services it turns requests into calls on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ember.config import Settings
from ember.control.arns import Arns
from ember.control.objects import FunctionObjects
from ember.control.ports import FunctionUrlsPort, ToolCatalogPort
from ember.control.registry import FunctionRegistry
from ember.invoke.events import AsyncInvocation
from ember.invoke.logs import LogStore
from ember.invoke.service import InvocationService
from ember.scheduling.manager import WorkerManager
from ember.throttle import Throttle


@dataclass(frozen=True)
class Services:
    settings: Settings
    arns: Arns
    registry: FunctionRegistry
    invocations: InvocationService
    manager: WorkerManager
    logs: LogStore
    describe_sandboxes: Callable[[], dict[str, object]]
    throttle: Throttle
    # Queue, event-invoke-configs and pollers; None when async invocation is not wired.
    asynchronous: AsyncInvocation | None = None
    # Function manifests (/_ember/apis/ember.dev/v1); None when not wired.
    manifests: FunctionObjects | None = None
    # The MCP tool catalog and function URLs, from other branches; None until wired.
    tools: ToolCatalogPort | None = None
    urls: FunctionUrlsPort | None = None
