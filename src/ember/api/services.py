"""What the HTTP layer is given: the services it turns requests into calls on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ember.config import Settings
from ember.control.arns import Arns
from ember.control.registry import FunctionRegistry
from ember.invoke.logs import LogStore
from ember.invoke.service import InvocationService
from ember.scheduling.manager import WorkerManager


@dataclass(frozen=True)
class Services:
    settings: Settings
    arns: Arns
    registry: FunctionRegistry
    invocations: InvocationService
    manager: WorkerManager
    logs: LogStore
    describe_sandboxes: Callable[[], dict[str, object]]
