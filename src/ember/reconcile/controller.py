"""The controller: makes every Function object's world match its spec, and says so.

Level-triggered, as Kubernetes controllers are: a key (namespace, name) is
queued on every write of its object, on every change to its function in the
registry and on a periodic resync; reconciling re-reads the object and
compares desired with observed state, never old spec with new. Each step is
idempotent and reports a condition; a step that fails requeues its key with
exponential backoff. Keys are handled one at a time by one loop.

Steps and their conditions: CodeReady (registry: code, configuration,
layers, egress), ConfigReady (throttle: reserved concurrency and rate
limit; event-invoke-config; tags), ProvisionedReady (Worker Manager),
TriggersReady (scheduler, function URLs), ToolPublished (MCP catalog);
Ready when all are True for the current generation.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import logging
import time
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ember.control import tags as tag_rules
from ember.control.arns import Arns
from ember.control.models import FunctionRecord
from ember.control.objects import FunctionObjects, Key, timestamp
from ember.control.registry import FunctionRegistry
from ember.control.tags import FunctionTags
from ember.errors import EmberError
from ember.manifests import schedule as expressions
from ember.queue.configs import EventInvokeConfigs
from ember.reconcile.ports import FunctionUrlsPort, ToolCatalogPort
from ember.scheduling.executor import Executor
from ember.throttle.limits import SCOPES, ThrottleLimits, parse_policy

log = logging.getLogger("ember.control")

DEFAULT_ROLE = "arn:aws:iam::000000000000:role/ember"
BACKOFF_BASE = 0.5
BACKOFF_CAP = 60.0
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
STEPS = ("CodeReady", "ConfigReady", "ProvisionedReady", "TriggersReady", "ToolPublished")


@dataclass(frozen=True)
class Condition:
    type: str
    ok: bool
    reason: str  # CamelCase, machine-readable
    message: str = ""
    retry: bool = False  # the step failed and should be tried again


def inline_package(handler: str, source: str) -> bytes:
    """A deterministic zip of ``source`` as the handler's module (app.handler -> app.py)."""
    module = handler.rsplit(".", 1)[0].replace(".", "/") + ".py"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo(module, date_time=ZIP_EPOCH)
        info.external_attr = 0o644 << 16
        archive.writestr(info, source)
    return buffer.getvalue()


def _period_seconds(text: str) -> float:
    return float(text[:-1] or 1) * _UNITS[text[-1]]


class Controller:
    def __init__(
        self,
        objects: FunctionObjects,
        registry: FunctionRegistry,
        limits: ThrottleLimits,
        configs: EventInvokeConfigs | None,
        executor: Executor,
        arns: Arns,
        tools: ToolCatalogPort | None = None,
        urls: FunctionUrlsPort | None = None,
        tags: FunctionTags | None = None,
        resync_seconds: float = 30.0,
        provision_check_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._objects = objects
        self._registry = registry
        self._limits = limits
        self._configs = configs
        self._executor = executor
        self._arns = arns
        self._tools = tools
        self._urls = urls
        self._tags = tags
        self._resync = resync_seconds
        self._provision_check = provision_check_seconds
        self._clock = clock
        self._wall = wall
        self._due: dict[Key, float] = {}  # the work queue: key -> when to reconcile it
        self._failures: dict[Key, int] = {}
        self._exposed: dict[str, dict[str, Any]] = {}  # tool settings last exposed
        self._wake = asyncio.Event()
        self._stopping = False
        self.reconciles = 0

    # -- the work queue -------------------------------------------------------

    def enqueue(self, key: Key, delay: float = 0.0) -> None:
        """Reconcile ``key`` after ``delay`` seconds (sooner if already queued sooner)."""
        due = self._clock() + delay
        if key not in self._due or due < self._due[key]:
            self._due[key] = due
            self._wake.set()

    def function_changed(self, name: str, local: bool = True) -> None:
        """Registry listener: a managed function changed (perhaps through the Lambda API)."""
        key = self._objects.owner(name)
        if key is not None:
            self.enqueue(key)

    async def run(self) -> None:
        """Reconcile queued keys until ``stop``; runs in the lifespan's task group."""
        next_resync = self._clock()
        while not self._stopping:
            now = self._clock()
            if now >= next_resync:
                for key in self._objects.all_keys():
                    self.enqueue(key)
                next_resync = now + self._resync
            ready = sorted(key for key, due in self._due.items() if due <= now)
            for key in ready:
                del self._due[key]
                await self._work(key)
            if ready:
                continue
            wait = min([next_resync, *self._due.values()]) - now
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, wait))

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _work(self, key: Key) -> None:
        try:
            again = await self.reconcile(key)
        except Exception:
            log.exception("reconciling %s/%s failed", *key)
            again = None
            failed = True
        else:
            failed = again == -1.0
        if failed:
            count = self._failures.get(key, 0)
            self._failures[key] = count + 1
            self.enqueue(key, min(BACKOFF_CAP, BACKOFF_BASE * 2**count))
            return
        self._failures.pop(key, None)
        if again is not None:
            self.enqueue(key, again)

    # -- one reconcile ----------------------------------------------------------

    async def reconcile(self, key: Key) -> float | None:
        """Converge ``key``; the delay before the next look (-1: failed, back off), or None."""
        self.reconciles += 1
        body = self._objects.lookup(*key)
        if body is None:
            return None
        name = key[1]
        if body["metadata"].get("deletionTimestamp"):
            await self._teardown(name)
            await self._objects.finalize(key)
            return None
        spec = body["spec"]
        code = await self._code_step(name, spec)
        record = self._registry.lookup(name)
        if record is None:
            skipped = Condition("", False, "FunctionMissing", "waiting for CodeReady")
            conditions = [code] + [
                Condition(step, False, skipped.reason, skipped.message) for step in STEPS[1:]
            ]
        else:
            conditions = [
                code,
                await self._guard("ConfigReady", self._config_step(name, spec)),
                await self._guard("ProvisionedReady", self._provisioned_step(record, spec)),
                await self._guard("TriggersReady", self._triggers_step(name, spec)),
                await self._guard("ToolPublished", self._tool_step(name, spec)),
            ]
        await self._write_status(key, body, conditions)
        if any(c.retry for c in conditions):
            return -1.0
        provisioned = (spec.get("concurrency") or {}).get("provisioned", 0)
        return self._provision_check if provisioned else None

    async def _guard(self, kind: str, step: Awaitable[Condition]) -> Condition:
        try:
            return await step
        except EmberError as exc:
            return Condition(kind, False, exc.code.removesuffix("Exception"), exc.message, True)
        except Exception as exc:
            log.exception("step %s failed", kind)
            return Condition(kind, False, "InternalError", str(exc), True)

    async def _write_status(
        self, key: Key, body: dict[str, Any], conditions: list[Condition]
    ) -> None:
        generation = body["metadata"]["generation"]
        previous = {c["type"]: c for c in (body.get("status") or {}).get("conditions", [])}
        ready = all(c.ok for c in conditions)
        failing = [c.type for c in conditions if not c.ok]
        summary = Condition(
            "Ready",
            ready,
            "Reconciled" if ready else "NotReady",
            "" if ready else f"not ready: {', '.join(failing)}",
        )
        rendered = []
        for condition in [summary, *conditions]:
            status = "True" if condition.ok else "False"
            before = previous.get(condition.type)
            since = timestamp(self._wall())
            if before is not None and before["status"] == status:
                since = before["lastTransitionTime"]
            rendered.append(
                {
                    "type": condition.type,
                    "status": status,
                    "reason": condition.reason,
                    "message": condition.message,
                    "observedGeneration": generation,
                    "lastTransitionTime": since,
                }
            )
        await self._objects.put_status(
            key, {"observedGeneration": generation, "conditions": rendered}
        )

    # -- steps --------------------------------------------------------------------

    async def _package(self, spec: dict[str, Any]) -> tuple[str, bytes | None]:
        """(hex digest, bytes or None when only the digest is needed yet)."""
        code = spec["code"]
        if "inline" in code:
            data = inline_package(spec["handler"], code["inline"])
            return hashlib.sha256(data).hexdigest(), data
        return code["sha256"], None

    def _configuration(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The Lambda-shaped configuration body; ``Layers`` is applied once layers land."""
        return {
            "Runtime": spec["runtime"],
            "Handler": spec["handler"],
            "Role": spec.get("role", DEFAULT_ROLE),
            "Description": spec.get("description", ""),
            "MemorySize": spec.get("memoryMB", 128),
            "Timeout": spec.get("timeoutSeconds", 3),
            "Environment": {"Variables": dict(spec.get("environment") or {})},
            "Layers": list(spec.get("layers") or []),
            # Absent: no SnapStart (the manifest is the whole configuration).
            "SnapStart": {"ApplyOn": (spec.get("snapStart") or {}).get("applyOn", "None")},
        }

    def _differs(self, record: FunctionRecord, body: dict[str, Any]) -> bool:
        observed = {
            "Runtime": record.runtime,
            "Handler": record.handler,
            "Role": record.role,
            "Description": record.description,
            "MemorySize": record.memory_size,
            "Timeout": record.timeout,
            "Environment": {"Variables": dict(record.environment or {})},
            "Layers": list(getattr(record, "layers", ()) or []),
            "SnapStart": {"ApplyOn": record.snap_start},
        }
        return observed != body

    async def _code_step(self, name: str, spec: dict[str, Any]) -> Condition:
        try:
            digest, data = await self._package(spec)
            record = self._registry.lookup(name)
            configuration = self._configuration(spec)
            if record is None or record.code_digest != digest:
                if data is None:
                    try:
                        data = await self._objects.package(digest)
                    except KeyError:
                        return Condition(
                            "CodeReady", False, "PackageMissing", "apply the manifest again", True
                        )
                code = {"ZipFile": base64.b64encode(data).decode()}
                if record is None:
                    record = await self._registry.create(
                        {"FunctionName": name, "Code": code, **configuration}
                    )
                else:
                    record = await self._registry.update_code(name, code)
            if self._differs(record, configuration):
                record = await self._registry.update_configuration(name, configuration)
            sandbox = {
                "Egress": bool((spec.get("network") or {}).get("egress", False)),
                "Isolation": spec.get("isolation", "standard"),
            }
            if (record.egress, record.isolation) != (sandbox["Egress"], sandbox["Isolation"]):
                await self._registry.update_sandbox(name, sandbox)
        except EmberError as exc:
            return Condition(
                "CodeReady", False, exc.code.removesuffix("Exception"), exc.message, True
            )
        return Condition("CodeReady", True, "Applied", f"code {digest[:12]}")

    async def _config_step(self, name: str, spec: dict[str, Any]) -> Condition:
        reserved = (spec.get("concurrency") or {}).get("reserved")
        current = self._limits.get(name)
        if reserved != current.reserved:
            if reserved is None:
                await self._limits.delete_reserved(name)
            else:
                await self._limits.put_reserved(name, reserved)
        await self._rate_limit(name, spec.get("rateLimit"))
        await self._async_config(name, spec.get("async"))
        await self._converge_tags(name, spec.get("tags"))
        return Condition("ConfigReady", True, "Applied")

    async def _converge_tags(self, name: str, wanted: dict[str, str] | None) -> None:
        """``spec.tags``, when given, is the function's whole set of tags; without it,
        tags set through the API are left alone (they are not the manifest's)."""
        if wanted is None or self._tags is None:
            return
        desired = tag_rules.check(wanted)
        current = self._tags.of(name)
        stale = [key for key in current if key not in desired]
        if stale:
            await self._tags.untag(name, stale)
        if any(current.get(key) != value for key, value in desired.items()):
            await self._tags.tag(name, desired)

    async def _rate_limit(self, name: str, wanted: dict[str, Any] | None) -> None:
        desired: dict[str, Any] = {}
        if wanted is not None:
            body = {
                "scope": wanted.get("scope", "function"),
                "algorithm": wanted.get("algorithm", "token-bucket"),
                "limit": wanted["rate"],
                "period": _period_seconds(wanted.get("period", "1s")),
            }
            if "burst" in wanted:
                body["burst"] = wanted["burst"]
            scope, policy = parse_policy(body)
            desired[scope] = policy
        current = self._limits.get(name)
        for scope in SCOPES:
            have = getattr(current, scope)
            if scope in desired and have != desired[scope]:
                await self._limits.put_policy(name, scope, desired[scope])
            elif scope not in desired and have is not None:
                await self._limits.delete_policy(name, scope)

    async def _async_config(self, name: str, wanted: dict[str, Any] | None) -> None:
        configs = self._configs
        if configs is None:
            return
        current = configs.lookup(name)
        if wanted is None:
            if current is not None:
                await configs.delete(name, None)
            return

        def arn(target: str | None) -> str | None:
            return self._arns.function(target) if target else None

        desired = (
            wanted.get("maxRetryAttempts"),
            wanted.get("maxEventAgeSeconds"),
            arn(wanted.get("onSuccess")),
            arn(wanted.get("onFailure")),
        )
        if current is not None and desired == (
            current.maximum_retry_attempts,
            current.maximum_event_age,
            current.on_success,
            current.on_failure,
        ):
            return
        body: dict[str, Any] = {
            "DestinationConfig": {
                "OnSuccess": {"Destination": desired[2]} if desired[2] else {},
                "OnFailure": {"Destination": desired[3]} if desired[3] else {},
            }
        }
        if desired[0] is not None:
            body["MaximumRetryAttempts"] = desired[0]
        if desired[1] is not None:
            body["MaximumEventAgeInSeconds"] = desired[1]
        await configs.put(name, None, body)

    async def _provisioned_step(self, record: FunctionRecord, spec: dict[str, Any]) -> Condition:
        wanted = (spec.get("concurrency") or {}).get("provisioned", 0)
        live = await self._executor.provision(record, wanted)
        if not wanted:
            return Condition("ProvisionedReady", True, "NotRequested")
        message = f"{live}/{wanted} sandboxes initialized"
        if live < wanted:
            return Condition("ProvisionedReady", False, "Provisioning", message, True)
        return Condition("ProvisionedReady", True, "Provisioned", message)

    async def _triggers_step(self, name: str, spec: dict[str, Any]) -> Condition:
        triggers = spec.get("triggers") or []
        # The scheduler reads the schedules from the object itself (wherever the
        # ``schedules`` duty runs); here they are only checked.
        schedules = [expressions.parse(t["schedule"]) for t in triggers if "schedule" in t]
        wanted = next((t["url"] for t in triggers if "url" in t), None)
        if wanted is not None and self._urls is None:
            return Condition(
                "TriggersReady", False, "URLsUnavailable", "function URLs are not available"
            )
        if self._urls is not None:
            present = self._urls.get(name) is not None
            if wanted is not None and not present:
                await self._urls.create(name, {"AuthType": wanted.get("authType", "NONE")})
            elif wanted is None and present:
                await self._urls.delete(name)
        return Condition("TriggersReady", True, "Registered", f"{len(schedules)} schedule(s)")

    async def _tool_step(self, name: str, spec: dict[str, Any]) -> Condition:
        mcp = spec.get("mcp") or {}
        expose = mcp.get("expose") is True
        if self._tools is None:
            if expose:
                return Condition(
                    "ToolPublished", False, "MCPUnavailable", "the MCP server is not available"
                )
            return Condition("ToolPublished", True, "NotExposed")
        if not expose:
            self._exposed.pop(name, None)
            if self._tools.get(name) is not None:
                await self._tools.hide(name)
            return Condition("ToolPublished", True, "NotExposed")
        settings = {key: value for key, value in mcp.items() if key != "expose"}
        if self._tools.get(name) is None or self._exposed.get(name) != settings:
            await self._tools.expose(name, settings)
            self._exposed[name] = settings
        return Condition("ToolPublished", True, "Exposed", settings.get("toolName", name))

    async def _teardown(self, name: str) -> None:
        """The object is being deleted: remove the function and everything of it
        (its schedules stopped when the object was marked)."""
        if self._tools is not None and self._tools.get(name) is not None:
            await self._tools.hide(name)
        self._exposed.pop(name, None)
        if self._urls is not None and self._urls.get(name) is not None:
            await self._urls.delete(name)
        if self._registry.lookup(name) is not None:
            await self._registry.delete(name)
