"""ResourcePolicies: AddPermission's statements in Lambda's shape, Lambda's errors, the
RevisionId, and a policy's life bound to its function's (and alias's)."""

from __future__ import annotations

import asyncio
import base64
import io
import zipfile

import orjson
import pytest

from ember.auth.policy import Decision, Request, evaluate
from ember.auth.principals import Principal, ServicePrincipal
from ember.control.arns import Arns
from ember.control.policies import ResourcePolicies
from ember.control.registry import FunctionRegistry
from ember.errors import (
    InvalidParameterValue,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
    ValidationError,
)
from ember.storage.memory import MemoryMetadataStore, MemoryPackageStore

DEFAULT = "000000000000"
OTHER = "123456789012"
ARNS = Arns("us-east-1", DEFAULT)
F = f"arn:aws:lambda:us-east-1:{DEFAULT}:function:f"


def code() -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(e, c): return e")
    return base64.b64encode(buffer.getvalue()).decode()


async def setup() -> tuple[FunctionRegistry, ResourcePolicies, MemoryMetadataStore]:
    registry = FunctionRegistry(MemoryMetadataStore(), MemoryPackageStore(), ARNS)
    await registry.create(
        {
            "FunctionName": "f",
            "Runtime": "python3.11",
            "Handler": "app.handler",
            "Role": f"arn:aws:iam::{DEFAULT}:role/r",
            "Code": {"ZipFile": code()},
        }
    )
    store = MemoryMetadataStore()
    return registry, ResourcePolicies(store, registry, ARNS), store


def test_statements_are_written_in_lambdas_shape() -> None:
    async def scenario() -> None:
        _, policies, _ = await setup()
        s3 = await policies.add(
            "f",
            {
                "StatementId": "s3",
                "Action": "lambda:InvokeFunction",
                "Principal": "s3.amazonaws.com",
                "SourceArn": "arn:aws:s3:::uploads",
                "SourceAccount": DEFAULT,
            },
        )
        assert s3 == {
            "Sid": "s3",
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "lambda:InvokeFunction",
            "Resource": F,
            "Condition": {
                "StringEquals": {"AWS:SourceAccount": DEFAULT},
                "ArnLike": {"AWS:SourceArn": "arn:aws:s3:::uploads"},
            },
        }
        account = await policies.add(
            "f", {"StatementId": "acct", "Action": "lambda:GetFunction", "Principal": OTHER}
        )
        assert account["Principal"] == {"AWS": f"arn:aws:iam::{OTHER}:root"}
        assert "Condition" not in account
        url = await policies.add(
            "f",
            {
                "StatementId": "url",
                "Action": "lambda:InvokeFunctionUrl",
                "Principal": "*",
                "FunctionUrlAuthType": "NONE",
            },
        )
        assert url["Principal"] == "*"
        assert url["Condition"] == {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}}
        policy = policies.get("f")
        assert policy.document() == {
            "Version": "2012-10-17",
            "Id": "default",
            "Statement": [s3, account, url],
        }

    asyncio.run(scenario())


def test_the_stored_policy_is_what_the_authorizer_evaluates() -> None:
    async def scenario() -> None:
        _, policies, _ = await setup()
        await policies.add(
            "f",
            {
                "StatementId": "s3",
                "Action": "lambda:InvokeFunction",
                "Principal": "s3.amazonaws.com",
                "SourceArn": "arn:aws:s3:::uploads",
            },
        )
        await policies.add("f", {"StatementId": "acct", "Action": "lambda:*", "Principal": OTHER})
        attached = policies.policy_of(F)
        assert attached is not None and policies.policy_of(F + ":prod") is None
        s3 = ServicePrincipal("s3.amazonaws.com")
        for source, expected in (
            ("arn:aws:s3:::uploads", Decision.ALLOW),
            ("arn:aws:s3:::other", Decision.NO_RESOURCE_ALLOW),
        ):
            context = {"AWS:SourceArn": source}
            request = Request(s3, "lambda:InvokeFunction", F, DEFAULT, context)
            assert evaluate(request, (), attached) is expected
        root = Request(Principal(OTHER), "lambda:GetFunction", F, DEFAULT)
        assert evaluate(root, (), attached) is Decision.ALLOW

    asyncio.run(scenario())


def test_lambdas_errors() -> None:
    async def scenario() -> None:
        _, policies, _ = await setup()
        with pytest.raises(ResourceNotFound, match="No policy is associated"):
            policies.get("f")
        body = {"StatementId": "a", "Action": "lambda:InvokeFunction", "Principal": OTHER}
        await policies.add("f", body)
        with pytest.raises(
            ResourceConflict,
            match=r"The statement id \(a\) provided already exists\. Please provide a new",
        ):
            await policies.add("f", body)
        with pytest.raises(ResourceNotFound, match=r"Function not found: .*function:g"):
            await policies.add("g", body)
        with pytest.raises(ResourceNotFound, match=r"Function not found: .*function:f:prod"):
            await policies.add("f", body, "prod")
        with pytest.raises(ValidationError, match="statementId"):
            await policies.add("f", {**body, "StatementId": "no spaces"})
        with pytest.raises(ValidationError, match="action"):
            await policies.add("f", {**body, "StatementId": "b", "Action": "s3:GetObject"})
        with pytest.raises(ValidationError, match=r"principal.*must not be null"):
            await policies.add("f", {"StatementId": "b", "Action": "lambda:InvokeFunction"})
        with pytest.raises(InvalidParameterValue, match="principal"):
            await policies.add("f", {**body, "StatementId": "b", "Principal": "nobody"})
        with pytest.raises(ResourceNotFound, match="Statement zz is not found"):
            await policies.remove("f", "zz")

    asyncio.run(scenario())


def test_the_revision_id_guards_every_write() -> None:
    async def scenario() -> None:
        _, policies, _ = await setup()
        body = {"Action": "lambda:InvokeFunction", "Principal": OTHER}
        await policies.add("f", {**body, "StatementId": "a"})
        first = policies.get("f").revision_id
        with pytest.raises(PreconditionFailed, match="does not match the latest Revision Id"):
            await policies.add("f", {**body, "StatementId": "b", "RevisionId": "stale"})
        await policies.add("f", {**body, "StatementId": "b", "RevisionId": first})
        second = policies.get("f").revision_id
        assert second != first
        with pytest.raises(PreconditionFailed):
            await policies.remove("f", "a", revision_id=first)
        await policies.remove("f", "a", revision_id=second)
        assert [s["Sid"] for s in policies.get("f").statements] == ["b"]
        await policies.remove("f", "b")
        with pytest.raises(ResourceNotFound, match="No policy is associated"):
            policies.get("f")
        assert policies.policy_of(F) is None

    asyncio.run(scenario())


def test_a_policy_goes_with_its_alias_and_its_function() -> None:
    async def scenario() -> None:
        registry, policies, store = await setup()
        await registry.publish("f", {})
        await registry.create_alias("f", {"Name": "prod", "FunctionVersion": "1"})
        body = {"StatementId": "a", "Action": "lambda:InvokeFunction", "Principal": OTHER}
        await policies.add("f", body, "prod")
        await policies.add("f", body, "1")
        await policies.add("f", body)
        assert policies.policy_of(F + ":prod") is not None
        reloaded = ResourcePolicies(store, registry, ARNS)
        await reloaded.load()
        assert reloaded.policy_of(F + ":1") is not None

        await registry.delete_alias("f", "prod")
        assert policies.policy_of(F + ":prod") is None  # at once, before the row goes
        assert policies.policy_of(F) is not None
        await asyncio.sleep(0)  # the row's removal runs as a task of its own
        assert set(await store.load_all()) == {"f", "f:1"}

        await registry.delete("f")
        assert policies.policy_of(F) is None and policies.policy_of(F + ":1") is None
        await asyncio.sleep(0)
        assert await store.load_all() == {}

    asyncio.run(scenario())


def test_another_nodes_writes_arrive_through_the_feed() -> None:
    async def scenario() -> None:
        registry, policies, store = await setup()
        other = ResourcePolicies(MemoryMetadataStore(), registry, ARNS)
        await policies.add(
            "f", {"StatementId": "a", "Action": "lambda:InvokeFunction", "Principal": OTHER}
        )
        document = (await store.load_all())["f"]
        await other.apply_remote("f", document)
        await other.apply_remote("f", document)  # idempotent
        assert orjson.loads(other.get("f").to_json()) == orjson.loads(document)
        assert other.policy_of(F) is not None
        await other.apply_remote("f", None)
        assert other.policy_of(F) is None

    asyncio.run(scenario())


def test_another_accounts_function_is_found_by_its_arn() -> None:
    async def scenario() -> None:
        _, policies, _ = await setup()
        key = ARNS.key(OTHER, "f")  # as the node that owns it stored it
        arn = f"arn:aws:lambda:us-east-1:{OTHER}:function:f"
        statement = {
            "Sid": "a",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{DEFAULT}:root"},
            "Action": "lambda:InvokeFunction",
            "Resource": arn,
        }
        document = {
            "function": key,
            "qualifier": None,
            "revision_id": "r",
            "statements": [statement],
        }
        await policies.apply_remote(key, orjson.dumps(document).decode())
        assert policies.policy_of(arn) is not None and policies.policy_of(F) is None

    asyncio.run(scenario())
