"""Two nodes over one shared store: a change made through node A, applied on node B
through ``apply_remote`` (as the change feed does), makes B answer as A does.

Each namespace is one ``Shared`` store that both nodes' components use; it
records what the feed would deliver to the other node (key and document, in
commit order). Applying a change twice must change nothing more, and applying
must never write to the store.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import io
import zipfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from ember.control.arns import Arns
from ember.control.layers import LayerRegistry
from ember.control.objects import FunctionObjects
from ember.control.policies import ResourcePolicies
from ember.control.registry import FunctionRegistry
from ember.control.urls import FunctionUrls
from ember.errors import ResourceNotFound
from ember.mcp.catalog import ToolCatalog
from ember.queue.configs import EventInvokeConfigs
from ember.queue.shared_configs import MetadataConfigStore
from ember.storage.memory import MemoryMetadataStore, MemoryPackageStore
from ember.throttle.base import Policy
from ember.throttle.limits import ThrottleLimits

ARNS = Arns("us-east-1", "0" * 12)
Apply = Callable[[str, "str | None"], Awaitable[None]]


class Shared(MemoryMetadataStore):
    """One namespace both nodes share; ``feed`` holds the changes not yet delivered."""

    def __init__(self) -> None:
        super().__init__()
        self.feed: list[tuple[str, str | None]] = []
        self.writes = 0

    async def put(self, name: str, document: str) -> None:
        await super().put(name, document)
        self.feed.append((name, document))
        self.writes += 1

    async def delete(self, name: str) -> None:
        await super().delete(name)
        self.feed.append((name, None))
        self.writes += 1

    async def deliver(self, apply: Apply, twice: bool = True) -> None:
        """Hand every pending change to the other node (``twice``: each one again,
        which must change nothing), and check that applying wrote nothing."""
        changes, self.feed = self.feed, []
        writes = self.writes
        for key, document in changes:
            await apply(key, document)
            if twice:
                await apply(key, document)
        assert self.writes == writes, "applying a remote change wrote to the store"
        assert self.feed == []


def zipped(text: str) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", text)
    return base64.b64encode(buffer.getvalue()).decode()


def body(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "FunctionName": name,
        "Runtime": "python3.11",
        "Handler": "app.handler",
        "Role": "arn:aws:iam::000000000000:role/r",
        "Code": {"ZipFile": zipped("x = 1\n")},
        **extra,
    }


class Node:
    """One node's registry layer over the shared stores."""

    def __init__(self, functions: Shared, layers: Shared, urls: Shared) -> None:
        packages = SHARED_PACKAGES
        self.layers = LayerRegistry(layers, packages, ARNS)
        self.registry = FunctionRegistry(functions, packages, ARNS, layers=self.layers)
        self.urls = FunctionUrls(urls, self.registry, ARNS, "http://127.0.0.1:9900")
        self.heard: list[tuple[str, bool]] = []
        self.renamed: list[tuple[str, str]] = []
        self.registry.subscribe(lambda name, local: self.heard.append((name, local)))
        self.registry.on_rename(lambda old, new: self.renamed.append((old, new)))


SHARED_PACKAGES = MemoryPackageStore()


def two_nodes() -> tuple[Node, Node, Shared, Shared, Shared]:
    functions, layers, urls = Shared(), Shared(), Shared()
    return Node(functions, layers, urls), Node(functions, layers, urls), functions, layers, urls


def same_functions(a: Node, b: Node) -> None:
    assert list(a.registry.records()) == list(b.registry.records())
    for record in a.registry.records():
        assert b.registry.revisions(record.name) == a.registry.revisions(record.name)


def test_function_lifecycle_reaches_the_other_node() -> None:
    async def scenario() -> None:
        a, b, functions, _, _ = two_nodes()
        await a.registry.create(body("f", Environment={"Variables": {"KEY": "v"}}))
        await functions.deliver(b.registry.apply_remote)
        assert b.registry.get("f") == a.registry.get("f")
        assert b.heard == []  # a create is heard by nobody, as on the node that made it

        await a.registry.update_configuration("f", {"Timeout": 9})
        await a.registry.update_code("f", {"ZipFile": zipped("x = 2\n")})
        await functions.deliver(b.registry.apply_remote)
        assert b.registry.get("f") == a.registry.get("f") and b.registry.get("f").timeout == 9
        assert b.heard == [("f", False), ("f", False)]  # the Worker Manager retires, caches sweep

        await a.registry.delete("f")
        await functions.deliver(b.registry.apply_remote)
        assert b.registry.lookup("f") is None and len(b.registry) == 0
        assert b.heard[-1] == ("f", False)
        with pytest.raises(ResourceNotFound):
            b.registry.get("f")

    asyncio.run(scenario())


def test_versions_and_aliases_reach_the_other_node() -> None:
    async def scenario() -> None:
        a, b, functions, _, _ = two_nodes()
        await a.registry.create(body("f"))
        await functions.deliver(b.registry.apply_remote)
        latest = a.registry.get("f").revision_id
        one = await a.registry.publish("f", {})
        await functions.deliver(b.registry.apply_remote)
        same_functions(a, b)
        assert b.registry.get("f", "1") == one
        # PublishVersion only renames $LATEST's revision: its sandboxes keep serving.
        assert b.renamed == [(latest, a.registry.get("f").revision_id)] and b.heard == []

        await a.registry.update_code("f", {"ZipFile": zipped("x = 2\n")})
        await a.registry.publish("f", {"Description": "two"})
        alias = await a.registry.create_alias(
            "f",
            {
                "Name": "live",
                "FunctionVersion": "1",
                "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.5}},
            },
        )
        await functions.deliver(b.registry.apply_remote)
        same_functions(a, b)
        assert b.registry.get_alias("f", "live") == alias
        page = b.registry.versions_page("f", None, None)[0]
        assert [r.version for r in page] == ["$LATEST", "1", "2"]

        updated = await a.registry.update_alias(
            "f", "live", {"FunctionVersion": "2", "RoutingConfig": {}}
        )
        await functions.deliver(b.registry.apply_remote)
        assert b.registry.get_alias("f", "live") == updated

        b.heard.clear()
        await a.registry.delete_alias("f", "live")
        await a.registry.delete("f", "1")
        await functions.deliver(b.registry.apply_remote)
        with pytest.raises(ResourceNotFound):
            b.registry.get_alias("f", "live")
        with pytest.raises(ResourceNotFound):
            b.registry.get("f", "1")
        assert b.heard == [("f", False), ("f", False)]
        same_functions(a, b)
        # Numbers are never reused, on either node.
        await b.registry.update_code("f", {"ZipFile": zipped("x = 3\n")})
        assert (await b.registry.publish("f", {})).version == "3"

        await a.registry.delete("f")
        await functions.deliver(b.registry.apply_remote)
        assert list(b.registry.records()) == []

    asyncio.run(scenario())


def test_layer_versions_reach_the_other_node() -> None:
    async def scenario() -> None:
        a, b, _, layers, _ = two_nodes()
        content = {"Content": {"ZipFile": zipped("y = 1\n")}}
        one = await a.layers.publish("lib", content)
        await a.layers.publish("lib", content)
        await a.layers.delete("lib", 2)
        await layers.deliver(b.layers.apply_remote)
        assert b.layers.get("lib", 1) == one
        assert b.layers.list_versions("lib", None, None) == a.layers.list_versions(
            "lib", None, None
        )
        with pytest.raises(ResourceNotFound):
            b.layers.get("lib", 2)

    asyncio.run(scenario())


def test_url_configs_reach_the_other_node_and_go_with_their_function() -> None:
    async def scenario() -> None:
        a, b, functions, _, urls = two_nodes()
        await a.registry.create(body("f"))
        await functions.deliver(b.registry.apply_remote)
        config = await a.urls.create("f", {"AuthType": "NONE"})
        await urls.deliver(b.urls.apply_remote)
        assert b.urls.get("f") == config
        changed = await a.urls.update("f", {"Cors": {"AllowOrigins": ["*"]}})
        await urls.deliver(b.urls.apply_remote)
        assert b.urls.get("f") == changed

        await a.registry.delete("f")
        await functions.deliver(b.registry.apply_remote)
        assert b.urls.get("f") is None  # gone from memory at once on B too
        await asyncio.sleep(0)  # A's own listener deletes the row in a task of its own
        await urls.deliver(b.urls.apply_remote)  # ... which B applies: nothing left to do
        assert await urls.load_all() == {}

    asyncio.run(scenario())


def test_resource_policies_reach_the_other_node_and_go_with_their_alias() -> None:
    async def scenario() -> None:
        a, b, functions, _, _ = two_nodes()
        shared = Shared()
        on_a = ResourcePolicies(shared, a.registry, ARNS)
        on_b = ResourcePolicies(shared, b.registry, ARNS)
        await a.registry.create(body("f"))
        await a.registry.publish("f", {})
        await a.registry.create_alias("f", {"Name": "prod", "FunctionVersion": "1"})
        await functions.deliver(b.registry.apply_remote)
        grant = {"Action": "lambda:InvokeFunction", "Principal": "123456789012"}
        await on_a.add("f", {**grant, "StatementId": "a"})
        await on_a.add("f", {**grant, "StatementId": "p"}, "prod")
        await shared.deliver(on_b.apply_remote)
        assert on_b.get("f") == on_a.get("f") and on_b.get("f", "prod") == on_a.get("f", "prod")
        arn = ARNS.function("f")
        assert on_b.policy_of(arn) == on_a.policy_of(arn) is not None

        await a.registry.delete_alias("f", "prod")
        await functions.deliver(b.registry.apply_remote)
        assert on_b.policy_of(arn + ":prod") is None  # gone from memory at once on B too
        await asyncio.sleep(0)  # A's own listener deletes the row in a task of its own
        await shared.deliver(on_b.apply_remote)
        assert set(await shared.load_all()) == {"f"}
        await on_a.remove("f", "a")
        await shared.deliver(on_b.apply_remote)
        assert on_b.policy_of(arn) is None

    asyncio.run(scenario())


def test_limits_reach_the_other_node() -> None:
    async def scenario() -> None:
        store = Shared()
        a, b = ThrottleLimits(store, 1000), ThrottleLimits(store, 1000)
        await a.put_reserved("f", 50)
        await a.put_policy("f", "caller", Policy("token-bucket", 5, 1.0, None))
        await store.deliver(b.apply_remote)
        assert b.rules == a.rules and b.unreserved == 950
        rules = b.rules  # the Throttle holds this very dict: it must change in place
        await a.delete_reserved("f")
        await a.delete_policy("f", None)
        await store.deliver(b.apply_remote)
        assert b.rules is rules and b.rules == {} and b.unreserved == 1000

    asyncio.run(scenario())


def test_a_deleted_function_s_limits_are_forgotten_once() -> None:
    async def scenario() -> None:
        store = Shared()
        a, b = ThrottleLimits(store, 1000), ThrottleLimits(store, 1000)
        await a.put_reserved("f", 50)
        await store.deliver(b.apply_remote)
        # The function is deleted through A: both forget, only A deletes the row.
        a.forget("f", local=True)
        b.forget("f", local=False)
        runner = asyncio.create_task(a.run())
        for _ in range(100):
            if not await store.load_all():
                break
            await asyncio.sleep(0.01)
        runner.cancel()
        assert b.rules == {} and b.unreserved == 1000
        await store.deliver(b.apply_remote)
        assert b.rules == {}

    asyncio.run(scenario())


SCHEMA = {"type": "object"}


def test_tools_reach_the_other_node_and_its_clients_hear_of_them() -> None:
    async def scenario() -> None:
        store = Shared()

        def resolve(name: str, qualifier: str | None) -> object:
            return name

        a, b = ToolCatalog(store, resolve), ToolCatalog(store, resolve)
        heard: list[int] = []
        b.subscribe(lambda: heard.append(1))
        spec = await a.expose("adder", {"toolName": "add", "inputSchema": SCHEMA})
        await store.deliver(b.apply_remote)
        assert b.by_tool_name("add") == spec and heard == [1]  # once: the repeat is silent
        await a.expose("adder", {"toolName": "plus", "inputSchema": SCHEMA})
        await store.deliver(b.apply_remote)
        assert b.by_tool_name("add") is None and b.by_tool_name("plus") is not None
        await a.hide("adder")
        await store.deliver(b.apply_remote)
        assert b.list() == [] and heard == [1, 1, 1]
        # A function deleted through another node: hidden here, its row left to that node.
        await a.expose("adder", {"inputSchema": SCHEMA})
        await store.deliver(b.apply_remote)
        writes = store.writes
        b.function_changed("adder", exists=False, local=False)
        assert b.get("adder") is None
        runner = asyncio.create_task(b.run())
        await asyncio.sleep(0.01)
        b.stop()
        await runner
        assert store.writes == writes

    asyncio.run(scenario())


def test_event_invoke_configs_reach_the_other_node() -> None:
    async def scenario() -> None:
        store = Shared()
        functions = {"f", "g"}

        def exists(target: str) -> bool:
            return target.partition(":")[0] in functions

        a = EventInvokeConfigs(MetadataConfigStore(store), exists, ARNS, 60.0)
        b = EventInvokeConfigs(MetadataConfigStore(store), exists, ARNS, 60.0)
        put = await a.put("f", None, {"MaximumRetryAttempts": 1})
        await a.put("f", "live", {"MaximumEventAgeInSeconds": 120})
        await store.deliver(b.apply_remote)
        assert b.get("f", None) == put and b.policy("f").max_retry_attempts == 1
        assert b.get("f", "live") == a.get("f", "live")
        await a.delete("f", "live")
        await store.deliver(b.apply_remote)
        with pytest.raises(ResourceNotFound):
            b.get("f", "live")
        # Function f deleted through A: A discards the stored configs, B only forgets.
        functions.discard("f")
        b.forget("f", local=False)
        assert store.feed == []
        a.forget("f", local=True)
        for _ in range(100):
            if not await store.load_all():
                break
            await asyncio.sleep(0.01)
        await store.deliver(b.apply_remote)
        assert b.lookup("f") is None and await store.load_all() == {}

    asyncio.run(scenario())


MANIFEST: dict[str, Any] = {
    "apiVersion": "ember.dev/v1",
    "kind": "Function",
    "metadata": {"name": "fn"},
    "spec": {"runtime": "python3.11", "handler": "app.handler", "code": {"inline": "x = 1\n"}},
}


def test_manifest_objects_reach_the_other_node_and_wake_its_controller() -> None:
    async def scenario() -> None:
        store = Shared()
        a = FunctionObjects(store, SHARED_PACKAGES, lambda: datetime.now(UTC))
        b = FunctionObjects(store, SHARED_PACKAGES, lambda: datetime.now(UTC))
        woken: list[tuple[str, str]] = []
        b.subscribe(woken.append)
        created = (await a.apply("default", None, copy.deepcopy(MANIFEST)))[0]
        await store.deliver(b.apply_remote)
        assert b.get("default", "fn") == created and woken == [("default", "fn")]
        changed = copy.deepcopy(MANIFEST)
        changed["spec"]["memoryMB"] = 256
        await a.apply("default", "fn", changed)
        await a.put_status(("default", "fn"), {"observedGeneration": 2})
        await store.deliver(b.apply_remote)
        assert b.get("default", "fn") == a.get("default", "fn")
        # B's next write continues A's resourceVersions, never reusing one.
        rv = int(a.get("default", "fn")["metadata"]["resourceVersion"])
        await b.delete("default", "fn")
        assert int(b.get("default", "fn")["metadata"]["resourceVersion"]) > rv
        await store.deliver(a.apply_remote)
        await b.finalize(("default", "fn"))
        await store.deliver(a.apply_remote)
        assert a.lookup("default", "fn") is None

    asyncio.run(scenario())
