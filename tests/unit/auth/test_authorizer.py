"""The authorizer: which IAM action and resource every route is, and IAM's decision on
requests as they arrive (method, path, query) for roots, users and services."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Route

from ember import server
from ember.auth.authorizer import INVOKE_ACTION, PUBLIC, ROUTES, UNKNOWN_ACTION, Authorizer
from ember.auth.base import Access
from ember.auth.policy import Policy
from ember.auth.principals import Caller, Principal, ServicePrincipal
from ember.config import Settings
from ember.errors import AccessDenied

DEFAULT = "000000000000"
OWNER = "123456789012"
OTHER = "210987654321"
REGION = "us-east-1"
ROOT = Principal(OWNER)
ALICE = Principal(OWNER, "alice")
BOB = Principal(OWNER, "bob")
OTHER_ROOT = Principal(OTHER)
MALLORY = Principal(OTHER, "mallory")
OPERATOR = Principal(DEFAULT)
OPERATOR_USER = Principal(DEFAULT, "ops")
S3 = ServicePrincipal("s3.amazonaws.com")
F = f"arn:aws:lambda:{REGION}:{OWNER}:function:f"
G = f"arn:aws:lambda:{REGION}:{OWNER}:function:g"
LAYER = f"arn:aws:lambda:{REGION}:{OWNER}:layer:deps"
INVOKE = "/2015-03-31/functions/f/invocations"
GET_F = "/2015-03-31/functions/f"
BUCKET = "arn:aws:s3:::uploads"


def identity(*statements: dict[str, Any]) -> Policy:
    return Policy.parse({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any, resource: Any = "*") -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource}


def permission(principal: Any, resource: str = F, **extra: Any) -> dict[str, Any]:
    """A statement as AddPermission writes it (see ember.control.policies)."""
    return {
        "Sid": "s",
        "Effect": "Allow",
        "Principal": principal,
        "Action": extra.pop("action", "lambda:InvokeFunction"),
        "Resource": resource,
        **extra,
    }


def attached(*statements: dict[str, Any]) -> Policy:
    return Policy.parse({"Statement": list(statements)}, resource_based=True)


@dataclass(frozen=True)
class Row:
    caller: Caller
    method: str
    path: str
    query: str = ""
    users: dict[Principal, Policy] = field(default_factory=dict)
    resources: dict[str, Policy] = field(default_factory=dict)  # ARN -> its policy
    context: dict[str, str] = field(default_factory=dict)
    denied: str | None = None  # a fragment of the refusal; None: allowed


def authorizer(row: Row) -> Authorizer:
    return Authorizer(
        region=REGION,
        default_account=DEFAULT,
        policies_of=lambda p: [row.users[p]] if p in row.users else [],
        resource_policy_of=row.resources.get,
    )


CROSS_F = f"/2015-03-31/functions/{F}/invocations"
NO_IDENTITY = "because no identity-based policy allows"
NO_RESOURCE = "because no resource-based policy allows"

TABLE: dict[str, Row] = {
    # Roots.
    "a root may do anything in its own account": Row(ROOT, "DELETE", GET_F),
    "a root's own account holds the unqualified names it uses": Row(ROOT, "POST", INVOKE),
    "another account's root is refused without a resource policy": Row(
        OTHER_ROOT, "POST", CROSS_F, denied=NO_RESOURCE
    ),
    "another account's root is let in by a permission naming its account": Row(
        OTHER_ROOT, "POST", CROSS_F, resources={F: attached(permission({"AWS": OTHER}))}
    ),
    "a permission for one action grants no other": Row(
        OTHER_ROOT,
        "GET",
        f"/2015-03-31/functions/{F}",
        resources={F: attached(permission({"AWS": OTHER}))},
        denied=NO_RESOURCE,
    ),
    "an explicit deny in the resource policy binds even the owner's root": Row(
        ROOT,
        "POST",
        INVOKE,
        resources={F: attached({**permission("*"), "Effect": "Deny"})},
        denied="explicit deny in a resource-based policy",
    ),
    # Users: identity policies.
    "a user without policies is refused": Row(ALICE, "GET", GET_F, denied=NO_IDENTITY),
    "a user allowed the exact action and resource": Row(
        ALICE, "GET", GET_F, users={ALICE: identity(allow("lambda:GetFunction", F))}
    ),
    "a user allowed one action is refused another": Row(
        ALICE,
        "DELETE",
        GET_F,
        users={ALICE: identity(allow("lambda:GetFunction", F))},
        denied=NO_IDENTITY,
    ),
    "a wildcard action matches": Row(
        ALICE,
        "GET",
        GET_F + "/configuration",
        users={ALICE: identity(allow("lambda:Get*", F))},
    ),
    "a wildcard action does not overreach": Row(
        ALICE, "DELETE", GET_F, users={ALICE: identity(allow("lambda:Get*"))}, denied=NO_IDENTITY
    ),
    "a wildcard resource matches a qualified ARN": Row(
        ALICE,
        "POST",
        INVOKE,
        query="Qualifier=prod",
        users={ALICE: identity(allow("lambda:InvokeFunction", F + ":*"))},
    ),
    "an unqualified resource does not match a qualified call": Row(
        ALICE,
        "POST",
        INVOKE,
        query="Qualifier=prod",
        users={ALICE: identity(allow("lambda:InvokeFunction", F))},
        denied=NO_IDENTITY,
    ),
    "explicit deny wins over an allow": Row(
        ALICE,
        "DELETE",
        GET_F,
        users={ALICE: identity(allow("*"), deny("lambda:DeleteFunction", F))},
        denied="explicit deny in an identity-based policy",
    ),
    "NotAction allows what it does not name": Row(
        ALICE,
        "GET",
        GET_F,
        users={
            ALICE: identity({"Effect": "Allow", "NotAction": "lambda:Delete*", "Resource": "*"})
        },
    ),
    "NotAction refuses what it names": Row(
        ALICE,
        "DELETE",
        GET_F,
        users={
            ALICE: identity({"Effect": "Allow", "NotAction": "lambda:Delete*", "Resource": "*"})
        },
        denied=NO_IDENTITY,
    ),
    "NotResource allows other resources": Row(
        ALICE,
        "GET",
        GET_F,
        users={ALICE: identity({"Effect": "Allow", "Action": "*", "NotResource": G})},
    ),
    "NotResource refuses the one it names": Row(
        ALICE,
        "GET",
        "/2015-03-31/functions/g",
        users={ALICE: identity({"Effect": "Allow", "Action": "*", "NotResource": G})},
        denied=NO_IDENTITY,
    ),
    "list actions are on resource *": Row(
        ALICE,
        "GET",
        "/2015-03-31/functions",
        users={ALICE: identity(allow("lambda:ListFunctions", F))},
        denied=NO_IDENTITY,
    ),
    "layers have layer ARNs": Row(
        ALICE,
        "GET",
        "/2018-10-31/layers/deps/versions/3",
        users={ALICE: identity(allow("lambda:GetLayerVersion", LAYER + ":*"))},
    ),
    "ember's own routes have ember actions": Row(
        ALICE,
        "GET",
        "/_ember/functions/f/logs",
        users={ALICE: identity(allow("ember:GetLogs", F))},
    ),
    # Resource policies.
    "a resource policy alone lets a user of the same account in": Row(
        BOB, "POST", INVOKE, resources={F: attached(permission({"AWS": BOB.arn}))}
    ),
    "a resource policy naming another user does not": Row(
        ALICE,
        "POST",
        INVOKE,
        resources={F: attached(permission({"AWS": BOB.arn}))},
        denied=NO_IDENTITY,
    ),
    "an alias's policy covers the alias named in the path": Row(
        OTHER_ROOT,
        "POST",
        f"/2015-03-31/functions/{F}:prod/invocations",
        resources={F + ":prod": attached(permission({"AWS": OTHER}, F + ":prod"))},
    ),
    "an alias's policy does not cover the unqualified function": Row(
        OTHER_ROOT,
        "POST",
        CROSS_F,
        resources={F + ":prod": attached(permission({"AWS": OTHER}, F + ":prod"))},
        denied=NO_RESOURCE,
    ),
    # Across accounts: both sides.
    "cross-account: the identity side alone is not enough": Row(
        MALLORY,
        "POST",
        CROSS_F,
        users={MALLORY: identity(allow("lambda:InvokeFunction"))},
        denied=NO_RESOURCE,
    ),
    "cross-account: the resource side alone is not enough": Row(
        MALLORY,
        "POST",
        CROSS_F,
        resources={F: attached(permission({"AWS": OTHER}))},
        denied=NO_IDENTITY,
    ),
    "cross-account: both sides allow": Row(
        MALLORY,
        "POST",
        CROSS_F,
        users={MALLORY: identity(allow("lambda:InvokeFunction"))},
        resources={F: attached(permission({"AWS": OTHER}))},
    ),
    "a partial ARN names its account too": Row(
        OTHER_ROOT, "GET", f"/2015-03-31/functions/{OWNER}:function:f", denied=NO_RESOURCE
    ),
    # Function URLs.
    "a URL permission holds for its auth type": Row(
        OTHER_ROOT,
        "POST",
        CROSS_F,
        resources={
            F: attached(
                permission(
                    {"AWS": OTHER},
                    Condition={"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}},
                )
            )
        },
        context={"lambda:FunctionUrlAuthType": "AWS_IAM"},
    ),
    "a URL permission does not hold without it": Row(
        OTHER_ROOT,
        "POST",
        CROSS_F,
        resources={
            F: attached(
                permission(
                    {"AWS": OTHER},
                    Condition={"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}},
                )
            )
        },
        denied=NO_RESOURCE,
    ),
    # Administration.
    "the default root creates accounts": Row(OPERATOR, "POST", "/_ember/accounts"),
    "another root does not": Row(ROOT, "POST", "/_ember/accounts", denied="creates accounts"),
    "nor does a user allowed everything": Row(
        ALICE,
        "POST",
        "/_ember/accounts",
        users={ALICE: identity(allow("*"))},
        denied="creates accounts",
    ),
    "the default root manages another account's keys": Row(
        OPERATOR, "GET", "/_ember/keys", query=f"AccountId={OWNER}"
    ),
    "a root manages its own account's keys": Row(ROOT, "POST", "/_ember/keys"),
    "a root does not manage another account's keys": Row(
        OTHER_ROOT, "GET", "/_ember/keys", query=f"AccountId={OWNER}", denied=NO_RESOURCE
    ),
    "a user needs a policy to manage keys": Row(ALICE, "POST", "/_ember/keys", denied=NO_IDENTITY),
    "the default root lists and drains worker hosts": Row(
        OPERATOR, "POST", "/_ember/workers/w-1/drain"
    ),
    "another root does not list them": Row(
        ROOT, "GET", "/_ember/workers", denied="worker hosts belong to account"
    ),
    "nor does another account's user allowed everything": Row(
        ALICE,
        "POST",
        "/_ember/workers/w-1/drain",
        users={ALICE: identity(allow("*"))},
        denied="worker hosts belong to account",
    ),
    "a user of the default account lists them as its policy allows": Row(
        OPERATOR_USER,
        "GET",
        "/_ember/workers",
        users={OPERATOR_USER: identity(allow("ember:ListWorkers"))},
    ),
    "and drains them only if it allows that too": Row(
        OPERATOR_USER,
        "POST",
        "/_ember/workers/w-1/drain",
        users={OPERATOR_USER: identity(allow("ember:ListWorkers"))},
        denied=NO_IDENTITY,
    ),
    "an unknown route is a root's 404": Row(ROOT, "GET", "/no/such/route"),
    "an unknown route is refused to users": Row(ALICE, "GET", "/no/such/route", denied=NO_IDENTITY),
}


def test_the_table_covers_every_kind_of_decision() -> None:
    assert len(TABLE) >= 30
    assert {row.denied is None for row in TABLE.values()} == {True, False}


@pytest.mark.parametrize("row", TABLE.values(), ids=TABLE.keys())
def test_authorization(row: Row) -> None:
    guard = authorizer(row)
    access = guard.access_of(row.caller, row.method, row.path, row.query)  # type: ignore[arg-type]
    call = guard.authorize(row.caller, access, row.context)  # type: ignore[arg-type]
    if row.denied is None:
        asyncio.run(call)
        return
    with pytest.raises(AccessDenied) as refused:
        asyncio.run(call)
    assert row.denied in refused.value.message
    assert refused.value.message.startswith(f"User: {row.caller.arn} is not authorized to perform")


@pytest.mark.parametrize(
    ("source_arn", "allowed"),
    [(BUCKET, True), ("arn:aws:s3:::elsewhere", False), (None, False)],
)
def test_a_service_principal_is_held_to_its_source_arn(
    source_arn: str | None, allowed: bool
) -> None:
    statement = permission(
        {"Service": "s3.amazonaws.com"},
        Condition={
            "ArnLike": {"AWS:SourceArn": BUCKET},
            "StringEquals": {"AWS:SourceAccount": OWNER},
        },
    )
    row = Row(S3, "POST", INVOKE, resources={F: attached(statement)})
    guard = authorizer(row)
    access = Access("lambda:InvokeFunction", F, OWNER, change=False)
    context = {"AWS:SourceAccount": OWNER} | ({"AWS:SourceArn": source_arn} if source_arn else {})
    if allowed:
        guard.decide(S3, access, context)
        return
    with pytest.raises(AccessDenied, match="no resource-based policy allows"):
        guard.decide(S3, access, context)


# --- the route table ---------------------------------------------------------------

ACCESS: dict[tuple[str, str, str], tuple[str, str, bool]] = {
    ("POST", INVOKE, ""): ("lambda:InvokeFunction", F, False),
    ("POST", INVOKE, "Qualifier=7"): ("lambda:InvokeFunction", F + ":7", False),
    ("GET", GET_F, "Qualifier=%24LATEST"): ("lambda:GetFunction", F + ":$LATEST", False),
    ("GET", GET_F + ":prod/configuration", ""): (
        "lambda:GetFunctionConfiguration",
        F + ":prod",
        False,
    ),
    ("POST", "/2015-03-31/functions", ""): ("lambda:CreateFunction", "*", True),
    ("GET", "/2015-03-31/functions", ""): ("lambda:ListFunctions", "*", False),
    ("PUT", GET_F + "/code", ""): ("lambda:UpdateFunctionCode", F, True),
    ("PUT", GET_F + "/aliases/prod", ""): ("lambda:UpdateAlias", F + ":prod", True),
    ("POST", GET_F + "/policy", "Qualifier=prod"): ("lambda:AddPermission", F + ":prod", True),
    ("GET", GET_F + "/policy", ""): ("lambda:GetPolicy", F, False),
    ("DELETE", GET_F + "/policy/s1", ""): ("lambda:RemovePermission", F, True),
    ("POST", "/2021-10-31/functions/f/url", ""): ("lambda:CreateFunctionUrlConfig", F, True),
    ("POST", "/2018-10-31/layers/deps/versions", ""): ("lambda:PublishLayerVersion", LAYER, True),
    ("DELETE", "/2018-10-31/layers/deps/versions/2", ""): (
        "lambda:DeleteLayerVersion",
        LAYER + ":2",
        True,
    ),
    ("GET", f"/2018-10-31/layers/{LAYER}/versions/2", ""): (
        "lambda:GetLayerVersion",
        LAYER + ":2",
        False,
    ),
    ("GET", "/2018-10-31/layers", "CompatibleRuntime=python3.11"): (
        "lambda:ListLayers",
        "*",
        False,
    ),
    ("GET", "/2018-10-31/layers", f"find=LayerVersion&Arn={LAYER}:3"): (
        "lambda:GetLayerVersion",
        LAYER + ":3",
        False,
    ),
    ("PUT", "/_ember/functions/f/tool", ""): ("ember:PutTool", F, True),
    ("POST", "/2015-03-31/event-source-mappings", ""): (
        "lambda:CreateEventSourceMapping",
        "*",
        True,
    ),
    ("GET", "/2015-03-31/event-source-mappings/", "FunctionName=f"): (
        "lambda:ListEventSourceMappings",
        "*",
        False,
    ),
    ("PUT", "/2015-03-31/event-source-mappings/u-1", ""): (
        "lambda:UpdateEventSourceMapping",
        f"arn:aws:lambda:{REGION}:{OWNER}:event-source-mapping:u-1",
        True,
    ),
    ("DELETE", "/2015-03-31/event-source-mappings/u-1", ""): (
        "lambda:DeleteEventSourceMapping",
        f"arn:aws:lambda:{REGION}:{OWNER}:event-source-mapping:u-1",
        True,
    ),
    ("POST", "/_ember/accounts", ""): ("ember:CreateAccount", "*", True),
    ("GET", "/_ember/audit", "since=0"): ("ember:ListAuditEvents", "*", False),
    ("DELETE", "/_ember/tokens/t-1", ""): ("ember:DeleteToken", "*", True),
    ("GET", "/_ember/workers", ""): ("ember:ListWorkers", "*", False),
    ("POST", "/_ember/workers/w-1/drain", ""): ("ember:DrainWorker", "*", True),
}


@pytest.mark.parametrize(
    ("request_", "expected"), ACCESS.items(), ids=[" ".join(k) for k in ACCESS]
)
def test_access_of_a_request(
    request_: tuple[str, str, str], expected: tuple[str, str, bool]
) -> None:
    access = authorizer(Row(ALICE, "GET", "/")).access_of(ALICE, *request_)
    assert (access.action, access.resource, access.change) == expected
    assert access.account == OWNER


def test_an_arn_in_the_path_names_the_owning_account() -> None:
    other = f"arn:aws:lambda:{REGION}:{OTHER}:function:f:prod"
    access = authorizer(Row(ALICE, "GET", "/")).access_of(
        ALICE, "GET", f"/2015-03-31/functions/{other}"
    )
    assert (access.resource, access.account) == (other, OTHER)


def test_a_tagged_resource_is_its_arn_in_the_account_it_names() -> None:
    other = f"arn:aws:lambda:{REGION}:{OTHER}:function:f"
    access = authorizer(Row(ALICE, "GET", "/")).access_of(
        ALICE, "POST", f"/2017-03-31/tags/{other}"
    )
    assert (access.action, access.resource, access.account) == ("lambda:TagResource", other, OTHER)
    assert access.change


def test_list_all_of_the_provisioned_concurrency_path_is_its_list_operation() -> None:
    guard = authorizer(Row(ALICE, "GET", "/"))
    path = "/2019-09-30/functions/f/provisioned-concurrency"
    listed = guard.access_of(ALICE, "GET", path, "List=ALL")
    one = guard.access_of(ALICE, "GET", path, "Qualifier=live")
    assert listed.action == "lambda:ListProvisionedConcurrencyConfigs"
    assert (one.action, one.resource) == (
        "lambda:GetProvisionedConcurrencyConfig",
        f"arn:aws:lambda:{REGION}:{OWNER}:function:f:live",
    )


def test_every_row_is_read_or_change_by_its_method() -> None:
    for route in ROUTES:
        assert route.change == (route.method != "GET" and route.action != INVOKE_ACTION), route
        assert re.fullmatch(r"(lambda|ember):[A-Z][A-Za-z]+", route.action), route


@pytest.fixture(scope="module")
def frontend_routes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Route]]:
    """The Starlette routes of a real Frontend (built, never started)."""
    data = Path(tmp_path_factory.mktemp("ember"))
    platform = server.build(Settings(data_dir=data))
    app = server.application(platform)
    yield [r for r in app._app.routes if isinstance(r, Route)]


def concrete(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: f"x{m[1]}", template)


def test_every_route_of_the_frontend_maps_to_its_row(frontend_routes: list[Route]) -> None:
    guard = authorizer(Row(ALICE, "GET", "/"))
    assert len(frontend_routes) > 50
    unmapped = []
    for route in frontend_routes:
        for method in sorted((route.methods or set()) - {"HEAD"}):
            if (method, route.path) in PUBLIC:
                continue
            found = guard.route_of(method, concrete(route.path))
            if found is None or found[0].template != route.path:
                unmapped.append(f"{method} {route.path}")
    assert unmapped == []


def test_public_routes_are_the_health_check_and_the_api_description_only() -> None:
    assert {("GET", "/health"), ("GET", "/openapi.json")} == PUBLIC
    guard = authorizer(Row(ALICE, "GET", "/"))
    assert guard.access_of(ALICE, "GET", "/nowhere").action == UNKNOWN_ACTION


def test_a_mappings_tags_are_authorized_on_the_mappings_own_arn() -> None:
    mapping_id = "6d0c2e6a-1b2c-4d5e-8f90-0123456789ab"
    auth = authorizer(Row(ALICE, "GET", "/"))
    own = auth.access_of(ALICE, "GET", f"/2015-03-31/event-source-mappings/{mapping_id}")
    tagged = auth.access_of(ALICE, "GET", f"/2017-03-31/tags/{own.resource}")
    assert own.resource.endswith(f":event-source-mapping:{mapping_id}")
    assert (tagged.action, tagged.resource, tagged.account) == (
        "lambda:ListTags",
        own.resource,
        own.account,
    )
