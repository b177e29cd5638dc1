"""What the HTTP layer is given: the services it turns requests into calls on."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from ember.audit.log import AuditLog
from ember.auth.admin import Admin
from ember.auth.tokens import TokenStore
from ember.config import Settings
from ember.control.arns import Arns
from ember.control.layers import LayerRegistry
from ember.control.objects import FunctionObjects
from ember.control.policies import ResourcePolicies
from ember.control.registry import FunctionRegistry
from ember.control.tags import FunctionTags
from ember.control.urls import FunctionUrls
from ember.invoke.events import AsyncInvocation
from ember.invoke.logs import LogStore
from ember.invoke.service import InvocationService
from ember.mcp.catalog import ToolCatalog
from ember.observe.metrics import Exposition
from ember.observe.recorder import Recorder
from ember.reconcile.provisioned import ProvisionedConcurrency
from ember.scheduling.cluster_runtimes import ClusterRuntimes
from ember.scheduling.executor import Executor
from ember.scheduling.roster import Roster
from ember.sources.wiring import EventSources
from ember.throttle import Throttle
from ember.worker.runtime_installs import RuntimeInstaller


@dataclass(frozen=True)
class NodeInfo:
    """Who this node is in its cluster, for /health."""

    node_id: str
    storage: str  # "embedded" (SQLite in the data dir) or "cluster" (PostgreSQL)
    duties: tuple[str, ...]  # the singleton duties this node competes for
    # The duties it holds now, when its Leadership can tell (None: it cannot).
    held: Callable[[], Collection[str]] | None = None

    def describe(self) -> dict[str, object]:
        body: dict[str, object] = {"id": self.node_id, "storage": self.storage}
        if self.held is not None:
            body["duties"] = sorted(self.held())
        else:
            body["competesFor"] = list(self.duties)
        return body


@dataclass(frozen=True)
class Services:
    settings: Settings
    arns: Arns
    registry: FunctionRegistry
    invocations: InvocationService
    executor: Executor
    logs: LogStore
    describe_sandboxes: Callable[[], dict[str, object]]
    throttle: Throttle
    # Queue, event-invoke-configs and pollers; None when async invocation is not wired.
    asynchronous: AsyncInvocation | None = None
    # Function manifests (/_ember/apis/ember.dev/v1); None when not wired.
    manifests: FunctionObjects | None = None
    # Provisioned concurrency configs (Lambda's API); None when not wired.
    provisioned: ProvisionedConcurrency | None = None
    # Functions exposed as MCP tools; None when MCP is not wired.
    tools: ToolCatalog | None = None
    # The audit log of control-plane changes (the guard records, GET /_ember/audit
    # reads); None when not wired.
    audit: AuditLog | None = None
    # Bearer tokens of /mcp (/_ember/tokens); None when MCP is not wired.
    mcp_tokens: TokenStore | None = None
    # Layer versions (PublishLayerVersion, ...) and function URL configs.
    layers: LayerRegistry = field(kw_only=True)
    urls: FunctionUrls = field(kw_only=True)
    # Functions' resource policies (AddPermission, GetPolicy, RemovePermission).
    policies: ResourcePolicies = field(kw_only=True)
    # Functions' tags (TagResource, UntagResource, ListTags; GetFunction's Tags).
    tags: FunctionTags = field(kw_only=True)
    node: NodeInfo = field(kw_only=True, default=NodeInfo("local", "embedded", ()))
    # Accounts and access keys (/_ember/accounts, /_ember/keys); None when not wired.
    admin: Admin | None = field(kw_only=True, default=None)
    # The cluster's worker hosts (/_ember/workers); an embedded node's lists none.
    roster: Roster = field(kw_only=True, default=Roster(None))
    # Event source mappings (CreateEventSourceMapping, ...) and their pollers; None
    # when not wired.
    sources: EventSources | None = field(kw_only=True, default=None)
    # Invocation history, per-minute series and the counters behind them; None when
    # not wired. ``metrics`` renders GET /metrics.
    recorder: Recorder | None = field(kw_only=True, default=None)
    metrics: Exposition | None = field(kw_only=True, default=None)
    # Installs Node majors on this host (/_ember/runtimes).
    runtimes: ClusterRuntimes = field(
        kw_only=True, default_factory=lambda: ClusterRuntimes(RuntimeInstaller())
    )
