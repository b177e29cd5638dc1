"""IAM policy evaluation: one table of requests and the decision IAM reaches on each,
the refusal messages in Lambda's words, and what is refused when a policy is attached."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from ember.auth.policy import Decision, Policy, Request, authorize, evaluate
from ember.auth.principals import Caller, Principal, ServicePrincipal
from ember.errors import AccessDenied, InvalidParameterValue

OWNER = "123456789012"
OTHER = "210987654321"
ALICE = Principal(OWNER, "alice")
ROOT = Principal(OWNER)
MALLORY = Principal(OTHER, "mallory")
OTHER_ROOT = Principal(OTHER)
S3 = ServicePrincipal("s3.amazonaws.com")
F = f"arn:aws:lambda:us-east-1:{OWNER}:function:f"
G = f"arn:aws:lambda:us-east-1:{OWNER}:function:g"
F_PROD = f"{F}:prod"
BUCKET = "arn:aws:s3:::uploads"

ALLOW = Decision.ALLOW
NO_IDENTITY = Decision.NO_IDENTITY_ALLOW
NO_RESOURCE = Decision.NO_RESOURCE_ALLOW
IDENTITY_DENY = Decision.IDENTITY_DENY
RESOURCE_DENY = Decision.RESOURCE_DENY


def allow(action: Any = "lambda:InvokeFunction", resource: Any = F, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any = "lambda:InvokeFunction", resource: Any = F, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def identity(*statements: dict[str, Any]) -> Policy:
    return Policy.parse({"Version": "2012-10-17", "Statement": list(statements)})


def resource(*statements: dict[str, Any]) -> Policy:
    return Policy.parse(
        {"Version": "2012-10-17", "Statement": list(statements)}, resource_based=True
    )


def permission(principal: Any, condition: dict[str, Any] | None = None, **extra: Any) -> Policy:
    """A statement as Lambda's AddPermission writes it."""
    statement = {
        "Sid": "s1",
        "Effect": "Allow",
        "Principal": principal,
        "Action": "lambda:InvokeFunction",
        "Resource": F,
        **extra,
    }
    if condition:
        statement["Condition"] = condition
    return resource(statement)


@dataclass(frozen=True)
class Row:
    caller: Caller
    identity: tuple[Policy, ...] = ()
    resource: Policy | None = None
    expected: Decision = ALLOW
    action: str = "lambda:InvokeFunction"
    target: str = F
    context: dict[str, str] = field(default_factory=dict)


TABLE: dict[str, Row] = {
    # Identity policies, same account.
    "no policy at all: default deny": Row(ALICE, expected=NO_IDENTITY),
    "an exact allow": Row(ALICE, (identity(allow()),)),
    "allow of another action": Row(
        ALICE, (identity(allow("lambda:GetFunction")),), expected=NO_IDENTITY
    ),
    "allow on another function": Row(ALICE, (identity(allow(resource=G)),), expected=NO_IDENTITY),
    "lambda:* allows every Lambda action": Row(
        ALICE, (identity(allow("lambda:*", "*")),), action="lambda:DeleteFunction"
    ),
    "lambda:Get* allows GetFunction": Row(
        ALICE, (identity(allow("lambda:Get*", "*")),), action="lambda:GetFunction"
    ),
    "lambda:Get* does not allow InvokeFunction": Row(
        ALICE, (identity(allow("lambda:Get*", "*")),), expected=NO_IDENTITY
    ),
    "action names compare without case": Row(
        ALICE, (identity(allow("Lambda:invokefunction")),), action="lambda:InvokeFunction"
    ),
    "? matches exactly one character": Row(ALICE, (identity(allow("lambda:InvokeFunctio?")),)),
    "a list of actions": Row(
        ALICE,
        (identity(allow(["lambda:GetFunction", "lambda:InvokeFunction"])),),
    ),
    "wildcard resource over every function": Row(
        ALICE, (identity(allow(resource=f"arn:aws:lambda:*:{OWNER}:function:*")),), target=G
    ),
    "resource wildcard with ? and a qualifier": Row(
        ALICE, (identity(allow(resource=f"{F}:pro?")),), target=F_PROD
    ),
    "resources compare with case": Row(
        ALICE, (identity(allow(resource=F.upper())),), expected=NO_IDENTITY
    ),
    "an unqualified ARN does not match a qualified one": Row(
        ALICE, (identity(allow()),), target=F_PROD, expected=NO_IDENTITY
    ),
    "NotAction allows everything else": Row(
        ALICE,
        (identity({"Effect": "Allow", "NotAction": "lambda:DeleteFunction", "Resource": "*"}),),
    ),
    "NotAction does not allow the named action": Row(
        ALICE,
        (identity({"Effect": "Allow", "NotAction": "lambda:Delete*", "Resource": "*"}),),
        action="lambda:DeleteFunction",
        expected=NO_IDENTITY,
    ),
    "NotResource allows other functions": Row(
        ALICE,
        (identity({"Effect": "Allow", "Action": "lambda:*", "NotResource": G}),),
    ),
    "NotResource does not allow the named function": Row(
        ALICE,
        (identity({"Effect": "Allow", "Action": "lambda:*", "NotResource": [G, F]}),),
        expected=NO_IDENTITY,
    ),
    "explicit deny wins over allow": Row(
        ALICE, (identity(allow("lambda:*", "*"), deny()),), expected=IDENTITY_DENY
    ),
    "deny in a second policy wins too": Row(
        ALICE,
        (identity(allow("lambda:*", "*")), identity(deny("lambda:Invoke*"))),
        expected=IDENTITY_DENY,
    ),
    "deny of another function leaves the allow": Row(
        ALICE, (identity(allow("lambda:*", "*"), deny(resource=G)),)
    ),
    "the root of the account needs no policy": Row(ROOT),
    "the root is still bound by a resource policy's deny": Row(
        ROOT,
        resource=resource({**deny(), "Principal": "*"}),
        expected=RESOURCE_DENY,
    ),
    # Resource policies, same account: either side may allow.
    "resource policy allows a user of the account": Row(
        ALICE, resource=permission({"AWS": f"arn:aws:iam::{OWNER}:user/alice"})
    ),
    "resource policy naming another user does not": Row(
        ALICE,
        resource=permission({"AWS": f"arn:aws:iam::{OWNER}:user/bob"}),
        expected=NO_IDENTITY,
    ),
    "resource policy deny beats an identity allow": Row(
        ALICE,
        (identity(allow()),),
        resource(deny(Principal={"AWS": OWNER})),
        expected=RESOURCE_DENY,
    ),
    # Cross-account: both sides must allow.
    "cross-account with neither": Row(MALLORY, expected=NO_IDENTITY),
    "cross-account with the identity policy only": Row(
        MALLORY, (identity(allow()),), expected=NO_RESOURCE
    ),
    "cross-account with the resource policy only": Row(
        MALLORY, resource=permission({"AWS": OTHER}), expected=NO_IDENTITY
    ),
    "cross-account with both (account id principal)": Row(
        MALLORY, (identity(allow()),), permission({"AWS": OTHER})
    ),
    "cross-account with both (root ARN principal)": Row(
        MALLORY, (identity(allow()),), permission({"AWS": f"arn:aws:iam::{OTHER}:root"})
    ),
    "the other account's root, allowed by the resource policy": Row(
        OTHER_ROOT, resource=permission({"AWS": [f"arn:aws:iam::{OTHER}:root"]})
    ),
    "a resource policy for a third account does not help": Row(
        MALLORY, (identity(allow()),), permission({"AWS": "111122223333"}), expected=NO_RESOURCE
    ),
    "Principal * lets every account in": Row(MALLORY, (identity(allow()),), permission("*")),
    "AWS * lets every account in": Row(MALLORY, (identity(allow()),), permission({"AWS": "*"})),
    # Service principals and conditions (what AddPermission writes).
    "a service principal with the right source ARN": Row(
        S3,
        resource=permission(
            {"Service": "s3.amazonaws.com"}, {"ArnLike": {"AWS:SourceArn": "arn:aws:s3:::upl*"}}
        ),
        context={"aws:SourceArn": BUCKET},
    ),
    "a service principal with another source ARN": Row(
        S3,
        resource=permission(
            {"Service": "s3.amazonaws.com"}, {"ArnLike": {"AWS:SourceArn": "arn:aws:s3:::other"}}
        ),
        context={"aws:SourceArn": BUCKET},
        expected=NO_RESOURCE,
    ),
    "ArnLike does not let * cross a colon of the ARN": Row(
        S3,
        resource=permission(
            {"Service": "s3.amazonaws.com"}, {"ArnLike": {"AWS:SourceArn": "arn:aws:*"}}
        ),
        context={"aws:SourceArn": BUCKET},
        expected=NO_RESOURCE,
    ),
    "a condition key the request lacks fails a positive test": Row(
        S3,
        resource=permission(
            {"Service": "s3.amazonaws.com"}, {"StringEquals": {"AWS:SourceAccount": OWNER}}
        ),
        expected=NO_RESOURCE,
    ),
    "StringEquals on the source account": Row(
        S3,
        resource=permission(
            {"Service": "s3.amazonaws.com"}, {"StringEquals": {"AWS:SourceAccount": OWNER}}
        ),
        context={"AWS:SourceAccount": OWNER},
    ),
    "another service principal": Row(
        ServicePrincipal("sns.amazonaws.com"),
        resource=permission({"Service": "s3.amazonaws.com"}),
        expected=NO_RESOURCE,
    ),
    "a public function URL (FunctionUrlAuthType NONE)": Row(
        MALLORY,
        resource=permission(
            "*",
            {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}},
            Action="lambda:InvokeFunctionUrl",
        ),
        action="lambda:InvokeFunctionUrl",
        context={"lambda:FunctionUrlAuthType": "NONE"},
        expected=NO_IDENTITY,  # cross-account still needs the caller's own allow
    ),
    "the same, with the caller's allow": Row(
        MALLORY,
        (identity(allow("lambda:InvokeFunctionUrl")),),
        permission(
            "*",
            {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}},
            Action="lambda:InvokeFunctionUrl",
        ),
        action="lambda:InvokeFunctionUrl",
        context={"lambda:functionurlauthtype": "NONE"},
    ),
    "a URL permission for AWS_IAM does not match NONE": Row(
        ALICE,
        resource=permission(
            {"AWS": OWNER},
            {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}},
            Action="lambda:InvokeFunctionUrl",
        ),
        action="lambda:InvokeFunctionUrl",
        context={"lambda:FunctionUrlAuthType": "NONE"},
        expected=NO_IDENTITY,
    ),
    "StringNotEquals passes when the key is missing": Row(
        ALICE,
        (identity(allow(Condition={"StringNotEquals": {"aws:SourceAccount": OTHER}})),),
    ),
    "StringLike on a condition key": Row(
        ALICE,
        (identity(allow(Condition={"StringLike": {"aws:SourceArn": "arn:aws:s3:::up*"}})),),
        context={"aws:SourceArn": BUCKET},
    ),
    "an IfExists condition passes when the key is missing": Row(
        ALICE,
        (identity(allow(Condition={"StringEqualsIfExists": {"aws:SourceAccount": OTHER}})),),
    ),
    "a single Statement object (not a list)": Row(ALICE, (Policy.parse({"Statement": allow()}),)),
}


def test_the_table_has_at_least_twenty_five_rows() -> None:
    assert len(TABLE) >= 25


@pytest.mark.parametrize("row", TABLE.values(), ids=TABLE.keys())
def test_policy_evaluation(row: Row) -> None:
    request = Request(row.caller, row.action, row.target, OWNER, row.context)
    assert evaluate(request, row.identity, row.resource) is row.expected


# --- Lambda's refusal messages ----------------------------------------------------------


def _refusal(row: Row) -> str:
    request = Request(row.caller, row.action, row.target, OWNER, row.context)
    with pytest.raises(AccessDenied) as refused:
        authorize(request, row.identity, row.resource)
    assert refused.value.code == "AccessDeniedException"
    return refused.value.message


def test_no_identity_allow_is_worded_as_lambda_words_it() -> None:
    assert _refusal(Row(ALICE)) == (
        "User: arn:aws:iam::123456789012:user/alice is not authorized to perform: "
        "lambda:InvokeFunction on resource: arn:aws:lambda:us-east-1:123456789012:function:f "
        "because no identity-based policy allows the lambda:InvokeFunction action"
    )


def test_explicit_denies_and_missing_resource_policies_say_so() -> None:
    assert _refusal(TABLE["explicit deny wins over allow"]).endswith(
        "on resource: arn:aws:lambda:us-east-1:123456789012:function:f "
        "with an explicit deny in an identity-based policy"
    )
    assert _refusal(TABLE["resource policy deny beats an identity allow"]).endswith(
        "with an explicit deny in a resource-based policy"
    )
    assert _refusal(TABLE["cross-account with the identity policy only"]) == (
        "User: arn:aws:iam::210987654321:user/mallory is not authorized to perform: "
        "lambda:InvokeFunction on resource: arn:aws:lambda:us-east-1:123456789012:function:f "
        "because no resource-based policy allows the lambda:InvokeFunction action"
    )


def test_an_allowed_request_passes_authorize() -> None:
    authorize(Request(ALICE, "lambda:InvokeFunction", F, OWNER), [identity(allow())])


# --- Refused when attached --------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "resource_based", "reason"),
    [
        ("{not json", False, "not valid JSON"),
        ({"Statement": []}, False, "needs a Statement"),
        ({"Version": "2020-01-01", "Statement": allow()}, False, "unknown policy Version"),
        ({"Statement": {**allow(), "Effect": "Maybe"}}, False, "Effect must be Allow or Deny"),
        ({"Statement": {"Effect": "Allow", "Resource": "*"}}, False, "exactly one of Action"),
        (
            {"Statement": {**allow(), "NotAction": "lambda:Get*"}},
            False,
            "exactly one of Action and NotAction",
        ),
        ({"Statement": allow("InvokeFunction")}, False, "must be SERVICE:ACTION"),
        ({"Statement": allow(resource=[])}, False, "non-empty list of strings"),
        ({"Statement": {**allow(), "Principal": "*"}}, False, "must not name a Principal"),
        ({"Statement": allow()}, True, "needs a Principal"),
        ({"Statement": {**allow(), "NotPrincipal": "*"}}, True, "'NotPrincipal'"),
        (
            {"Statement": {**allow(), "Principal": {"Federated": "cognito"}}},
            True,
            "unsupported principal type 'Federated'",
        ),
        (
            {"Statement": {**allow(), "Principal": {"AWS": "arn:aws:iam::1:role/r"}}},
            True,
            "unsupported AWS principal",
        ),
        (
            {"Statement": allow(Condition={"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}})},
            False,
            "the condition operator 'NumericLessThan' is not supported",
        ),
        (
            {"Statement": allow(Condition={"ForAnyValue:StringEquals": {"aws:TagKeys": "a"}})},
            False,
            "'ForAnyValue:StringEquals' is not supported",
        ),
    ],
)
def test_what_cannot_be_evaluated_is_refused_at_attach_time(
    document: Any, resource_based: bool, reason: str
) -> None:
    with pytest.raises(InvalidParameterValue) as refused:
        Policy.parse(document, resource_based=resource_based)
    assert reason in refused.value.message
    assert refused.value.message.startswith("The policy is not valid: ")
