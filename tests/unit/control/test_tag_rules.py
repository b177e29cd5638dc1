"""Lambda's rules for tags (``ember.control.tags``), and the store's life with a function."""

from __future__ import annotations

import asyncio

import pytest

from ember.control import tags
from ember.control.arns import Arns
from ember.errors import InvalidParameterValue, ResourceNotFound, ValidationError
from ember.storage.memory import MemoryMetadataStore

ARNS = Arns("us-east-1", "000000000000")
ARN = "arn:aws:lambda:us-east-1:000000000000:function:f"


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({f"k{i}": "v" for i in range(51)}, InvalidParameterValue),
        ({"aws:team": "x"}, InvalidParameterValue),
        ({"AWS:team": "x"}, InvalidParameterValue),
        ({"": "x"}, ValidationError),
        ({"k" * 129: "x"}, ValidationError),
        ({"k": "v" * 257}, ValidationError),
        ({"k": "semi;colon"}, ValidationError),
        ({"k": 1}, InvalidParameterValue),
    ],
)
def test_check_refuses_what_lambda_refuses(raw: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        tags.check(raw)


def test_check_takes_lambdas_limits() -> None:
    limit = {f"k{i}": "v" * 256 for i in range(49)} | {"k" * 128: ""}
    assert tags.check(limit) == limit
    assert tags.check(None) == {}


def test_resource_names_an_existing_unqualified_function() -> None:
    store = tags.FunctionTags(MemoryMetadataStore(), ARNS)
    store.bind(lambda key: key == "f")
    assert store.resource(ARN) == "f"
    with pytest.raises(InvalidParameterValue, match="aliases and versions"):
        store.resource(ARN + ":1")
    with pytest.raises(ResourceNotFound, match="Function not found"):
        store.resource(ARN + "x")
    with pytest.raises(ValidationError):
        store.resource("arn:aws:lambda:us-east-1:000000000000:layer:l")
    with pytest.raises(ValidationError):
        store.resource(ARN + "\n")


def test_tags_merge_within_the_limit_and_go_with_the_function() -> None:
    async def scenario() -> None:
        backing = MemoryMetadataStore()
        store = tags.FunctionTags(backing, ARNS)
        store.bind(lambda key: True)
        await store.tag("f", {f"k{i}": "v" for i in range(50)})
        with pytest.raises(InvalidParameterValue):
            await store.tag("f", {"one-more": "v"})
        await store.tag("f", {"k0": "new"})  # an overwrite is no new tag
        await store.untag("f", ["k1", "absent"])
        assert len(store.of("f")) == 49 and store.of("f")["k0"] == "new"
        again = tags.FunctionTags(backing, ARNS)
        again.bind(lambda key: True)
        await again.load()
        assert again.of("f") == store.of("f")
        await store.forget("f")
        assert store.of("f") == {} and await backing.load_all() == {}

    asyncio.run(scenario())


MAPPING_ID = "6d0c2e6a-1b2c-4d5e-8f90-0123456789ab"
MAPPING_ARN = f"arn:aws:lambda:us-east-1:000000000000:event-source-mapping:{MAPPING_ID}"


def test_resource_names_a_mapping_of_the_arns_account() -> None:
    store = tags.FunctionTags(MemoryMetadataStore(), ARNS)
    store.bind_mappings(lambda mapping_id, account: (mapping_id, account) == (MAPPING_ID, "0" * 12))
    assert store.resource(MAPPING_ARN) == tags.mapping_key(MAPPING_ID)
    elsewhere = MAPPING_ARN.replace(":000000000000:", ":111111111111:")
    with pytest.raises(ResourceNotFound, match="The resource you requested does not exist"):
        store.resource(elsewhere)


def test_a_gone_mappings_tags_are_pruned_once_mappings_are_loaded() -> None:
    async def scenario() -> None:
        backing = MemoryMetadataStore()
        await backing.put(tags.mapping_key(MAPPING_ID), '{"team":"shop"}')
        await backing.put(tags.mapping_key("gone"), '{"team":"ops"}')
        store = tags.FunctionTags(backing, ARNS)
        await store.load()  # mappings are not loaded yet: nothing of theirs is judged
        assert store.of(tags.mapping_key("gone")) == {"team": "ops"}
        await store.prune_mappings(lambda mapping_id: mapping_id == MAPPING_ID)
        assert store.of(tags.mapping_key(MAPPING_ID)) == {"team": "shop"}
        assert list(await backing.load_all()) == [tags.mapping_key(MAPPING_ID)]

    asyncio.run(scenario())
