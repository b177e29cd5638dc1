"""The mapping service alone: states, transitions, ownership, paging, storage round trip."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ember.control import tags as tag_rules
from ember.control.arns import Arns
from ember.control.tags import FunctionTags
from ember.errors import (
    InvalidParameterValue,
    ResourceConflict,
    ResourceInUse,
    ResourceNotFound,
)
from ember.sources.brokers import Brokers
from ember.sources.mappings import EventSourceMappings, State
from ember.sources.pollers import EventSourcePollers
from ember.storage.memory import MemoryMetadataStore

DEFAULT = "000000000000"
OTHER = "111111111111"
BROKER = "arn:aws:mq:us-east-1:000000000000:broker:mq:b-1"
FUNCTIONS = {"f", f"{OTHER}.g"}


def service(
    store: MemoryMetadataStore | None = None, tags: FunctionTags | None = None
) -> EventSourceMappings:
    return EventSourceMappings(
        store or MemoryMetadataStore(),
        lambda key, qualifier: key in FUNCTIONS,
        Arns("us-east-1", DEFAULT),
        Brokers((("mq", "amqp://u:p@127.0.0.1:5672"),)),
        clock=lambda: 1000.0,
        tags=tags,
    )


def body(**extra: Any) -> dict[str, Any]:
    return {"FunctionName": "f", "EventSourceArn": BROKER, "Queues": ["q"], **extra}


def test_create_settle_update_disable_delete() -> None:
    async def scenario() -> None:
        mappings = service()
        created = await mappings.create(body(), DEFAULT)
        assert (created.state, created.batch_size, created.enabled) == (State.CREATING, 100, True)
        with pytest.raises(ResourceInUse):
            await mappings.update(created.uuid, {"BatchSize": 5}, DEFAULT)
        await mappings.settle(created.uuid, State.CREATING)
        assert mappings.get(created.uuid, DEFAULT).state is State.ENABLED
        updated = await mappings.update(created.uuid, {"Enabled": False}, DEFAULT)
        assert updated.state is State.DISABLING
        await mappings.settle(created.uuid, State.DISABLING)
        assert mappings.get(created.uuid, DEFAULT).state is State.DISABLED
        assert (await mappings.delete(created.uuid, DEFAULT)).state is State.DELETING
        await mappings.settle(created.uuid, State.DELETING)
        with pytest.raises(ResourceNotFound):
            mappings.get(created.uuid, DEFAULT)

    asyncio.run(scenario())


def test_tags_are_stored_at_create_and_go_when_the_mapping_does() -> None:
    async def scenario() -> None:
        stored = MemoryMetadataStore()
        tags = FunctionTags(stored, Arns("us-east-1", DEFAULT))
        mappings = service(tags=tags)
        created = await mappings.create(body(Tags={"team": "shop"}), DEFAULT)
        arn = created.describe(Arns("us-east-1", DEFAULT))["EventSourceMappingArn"]
        key = tags.resource(arn)
        assert tags.of(key) == {"team": "shop"}
        await mappings.settle(created.uuid, State.CREATING)
        await mappings.delete(created.uuid, DEFAULT)
        assert tags.of(key) == {"team": "shop"}  # Deleting: still the mapping's
        await mappings.settle(created.uuid, State.DELETING)
        assert tags.of(key) == {} and await stored.load_all() == {}
        with pytest.raises(ResourceNotFound):
            tags.resource(arn)
        assert tag_rules.mapping_key(created.uuid) == key

    asyncio.run(scenario())


def test_a_stale_settle_never_undoes_a_later_change() -> None:
    async def scenario() -> None:
        mappings = service()
        created = await mappings.create(body(), DEFAULT)
        await mappings.settle(created.uuid, State.CREATING)
        await mappings.update(created.uuid, {"Enabled": False}, DEFAULT)
        await mappings.settle(created.uuid, State.CREATING)  # late: the mapping moved on
        assert mappings.get(created.uuid, DEFAULT).state is State.DISABLING

    asyncio.run(scenario())


def test_another_account_neither_sees_nor_lists_it() -> None:
    async def scenario() -> None:
        mappings = service()
        mine = await mappings.create(body(), DEFAULT)
        theirs = await mappings.create(body(FunctionName="g"), OTHER)
        with pytest.raises(ResourceNotFound):
            mappings.get(mine.uuid, OTHER)
        assert [m.uuid for m in mappings.list(OTHER, None, None, None, None)[0]] == [theirs.uuid]
        with pytest.raises(ResourceNotFound):
            await mappings.create(body(FunctionName="f"), OTHER)  # their own "f": none

    asyncio.run(scenario())


def test_pages_by_uuid_and_a_duplicate_conflicts() -> None:
    async def scenario() -> None:
        mappings = service()
        made = {(await mappings.create(body(Queues=[f"q{i}"]), DEFAULT)).uuid for i in range(5)}
        seen: set[str] = set()
        marker = None
        while True:
            page, marker = mappings.list(DEFAULT, "f", BROKER, marker, 2)
            seen |= {m.uuid for m in page}
            if marker is None:
                break
        assert seen == made
        with pytest.raises(ResourceConflict, match="already exists"):
            await mappings.create(body(Queues=["q0"]), DEFAULT)

    asyncio.run(scenario())


def test_the_store_round_trips_every_field() -> None:
    async def scenario() -> None:
        store = MemoryMetadataStore()
        first = service(store)
        access = [{"Type": "VIRTUAL_HOST", "URI": "/v"}, {"Type": "BASIC_AUTH", "URI": "arn:s"}]
        created = await first.create(
            body(SourceAccessConfigurations=access, MaximumBatchingWindowInSeconds=3), DEFAULT
        )
        second = service(store)
        await second.load()
        assert second.get(created.uuid, DEFAULT) == created
        assert created.vhost == "/v"

    asyncio.run(scenario())


def test_an_undeclared_broker_and_foreign_members_are_refused_by_name() -> None:
    async def scenario() -> None:
        mappings = service()
        with pytest.raises(InvalidParameterValue, match="not declared"):
            await mappings.create(body(EventSourceArn=BROKER.replace(":mq:b", ":nope:b")), DEFAULT)
        with pytest.raises(InvalidParameterValue, match="Topics"):
            await mappings.create(body(Topics=["t"]), DEFAULT)

    asyncio.run(scenario())


def test_a_broker_no_longer_declared_is_reported_and_the_supervisor_lives_on() -> None:
    async def scenario() -> None:
        mappings = service()
        created = await mappings.create(body(), DEFAULT)

        def source_of(mapping: Any) -> Any:
            raise InvalidParameterValue("The broker mq is not declared on this ember")

        async def invoke(command: Any) -> Any:
            raise AssertionError("nothing to deliver")

        async def instant(seconds: float) -> None:
            await asyncio.sleep(0)

        pollers = EventSourcePollers(mappings, source_of, invoke, lambda key: None, instant)
        running = asyncio.create_task(pollers.run())
        for _ in range(200):
            await asyncio.sleep(0)
            found = mappings.get(created.uuid, DEFAULT)
            if found.state is State.ENABLED and found.last_result.startswith("PROBLEM"):
                break
        assert "not declared" in mappings.get(created.uuid, DEFAULT).last_result
        assert not running.done()
        pollers.stop()
        await running

    asyncio.run(scenario())
