"""Who may do what: every route's IAM action and resource, and IAM's decision on it.

``access_of`` reads one table (``ROUTES``): each route of the Lambda API and
of ember's own ``/_ember`` routes names IAM's action (Lambda's own names,
``ember:<Verb>`` for ember's routes) and how its resource ARN is found (a
function, with the qualifier of the path or the query; a layer; ``*``). The
owning account is the one an ARN in the path names, else the caller's.

``authorize`` applies IAM's evaluation (``ember.auth.policy``): an account's
root may do anything to its own account's resources; a user needs an Allow
in its identity policies; an explicit Deny wins; a resource of another
account also needs the resource policy's Allow. Creating accounts is the
default account's root's alone, and that root administers every account's
keys, tokens and audit log (it is the operator's). The worker hosts are the
operator's too: no other account may list or drain them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from urllib.parse import parse_qsl

import orjson

from ember import packagejson
from ember.auth.base import Access
from ember.auth.policy import Policy, Request, authorize
from ember.auth.principals import Caller, Principal
from ember.errors import AccessDenied

__all__ = [
    "INVOKE_ACTION",
    "PUBLIC",
    "ROUTES",
    "UNKNOWN_ACTION",
    "Authorizer",
    "Kind",
    "RouteAccess",
]

# The identity policies of a principal (the users' store answers; a root has none).
PoliciesOf = Callable[[Principal], Sequence[Policy]]
# The resource policy attached to a function ARN (qualified or not), or None.
ResourcePolicyOf = Callable[[str], "Policy | None"]

# What a request no route describes is authorized as: a root may (the answer is
# a 404), a user only with a policy allowing it; a route added without a row here
# is therefore never open to users (and tests/unit/auth fails on it).
UNKNOWN_ACTION = "ember:UnknownOperation"
INVOKE_ACTION = "lambda:InvokeFunction"
_CREATE_ACCOUNT = "ember:CreateAccount"
# The worker hosts are the operator's, not any tenant's: the default account's
# root, and its users as their policies allow; no other account sees them.
_HOST_ACTIONS = frozenset(
    {
        "ember:ListWorkers",
        "ember:DrainWorker",
        "ember:ListRuntimes",
        "ember:InstallRuntime",
        "ember:RemoveRuntime",
    }
)
# Account administration the default account's root may do for any account.
_OPERATOR_ACTIONS = frozenset(
    {
        _CREATE_ACCOUNT,
        "ember:ListAccounts",
        "ember:CreateAccessKey",
        "ember:ListAccessKeys",
        "ember:DeleteAccessKey",
        "ember:CreateToken",
        "ember:ListTokens",
        "ember:DeleteToken",
        "ember:ListAuditEvents",
        *_HOST_ACTIONS,
    }
)

_FUNCTION = re.compile(
    r"^(?:arn:[^:]*:lambda:[^:]*:)?(?:(?P<account>\d{12}):)?(?:function:)?(?P<name>[^:]+)"
    r"(?::(?P<qualifier>[^:]+))?$"
)
# Routes whose ``?List=ALL`` makes them another operation on the same path.
_LISTED_BY_QUERY = {
    "lambda:GetProvisionedConcurrencyConfig": "lambda:ListProvisionedConcurrencyConfigs"
}
_TAGGABLE = re.compile(r"^arn:[^:]*:lambda:[^:]*:(?P<account>\d{12}):")
_LAYER = re.compile(r"^arn:[^:]*:lambda:[^:]*:(?P<account>\d{12}):layer:(?P<name>[^:]+)$")


class Kind(Enum):
    """How a route's resource ARN is found."""

    NONE = "*"  # an account-wide or list action: Resource "*"
    FUNCTION = "function"  # {name}, qualified by "name:q" or ?Qualifier=
    ALIAS = "alias"  # {name} qualified by the {alias} of the path
    LAYER = "layer"  # {name} of a layer
    LAYER_VERSION = "layer-version"  # {name} and {version} of a layer
    ACCOUNT = "account"  # "*", in the account of ?AccountId= (else the caller's)
    LAYERS = "layers"  # ListLayers ("*"), or GetLayerVersionByArn (?find=LayerVersion&Arn=)
    CREATED = "created"  # the function the body's FunctionName names (CreateFunction)
    TAGGED = "tagged"  # the resource ARN {arn} of the path, in the account it names
    MAPPING = "mapping"  # {uuid} of an event source mapping, in the caller's account


@dataclass(frozen=True, slots=True)
class RouteAccess:
    """One row of the table: ``method`` and ``template`` (Starlette's syntax) -> IAM."""

    method: str
    template: str
    action: str
    kind: Kind

    @property
    def change(self) -> bool:
        """Whether it changes the control plane (audited): every write but Invoke,
        which runs code and changes nothing (and is the hot path)."""
        return self.method not in ("GET", "HEAD") and self.action != INVOKE_ACTION

    def pattern(self) -> re.Pattern[str]:
        parts = re.split(r"\{(\w+)\}", self.template)
        regex = "".join(
            f"(?P<{part}>[^/]+)" if i % 2 else re.escape(part) for i, part in enumerate(parts)
        )
        return re.compile(regex + r"\Z")


def _rows(kind: Kind, prefix: str, *rows: tuple[str, str, str]) -> list[RouteAccess]:
    return [RouteAccess(method, prefix + suffix, action, kind) for method, suffix, action in rows]


_F = "/2015-03-31/functions/{name}"
_E = "/_ember/functions/{name}"
_M = "/_ember/apis/ember.dev/v1"
_N = Kind.NONE
ROUTES: tuple[RouteAccess, ...] = (
    # Invoke first: it is the hot path.
    RouteAccess("POST", _F + "/invocations", INVOKE_ACTION, Kind.FUNCTION),
    # InvokeWithResponseStream: the same permission as Invoke, as on Lambda.
    RouteAccess(
        "POST",
        "/2021-11-15/functions/{name}/response-streaming-invocations",
        INVOKE_ACTION,
        Kind.FUNCTION,
    ),
    *_rows(
        Kind.FUNCTION,
        _F,
        ("GET", "", "lambda:GetFunction"),
        ("DELETE", "", "lambda:DeleteFunction"),
        ("GET", "/configuration", "lambda:GetFunctionConfiguration"),
        ("PUT", "/configuration", "lambda:UpdateFunctionConfiguration"),
        ("PUT", "/code", "lambda:UpdateFunctionCode"),
        ("POST", "/versions", "lambda:PublishVersion"),
        ("GET", "/versions", "lambda:ListVersionsByFunction"),
        ("POST", "/aliases", "lambda:CreateAlias"),
        ("GET", "/aliases", "lambda:ListAliases"),
        ("POST", "/policy", "lambda:AddPermission"),
        ("GET", "/policy", "lambda:GetPolicy"),
        ("DELETE", "/policy/{sid}", "lambda:RemovePermission"),
    ),
    *_rows(
        Kind.ALIAS,
        _F + "/aliases/{alias}",
        ("GET", "", "lambda:GetAlias"),
        ("PUT", "", "lambda:UpdateAlias"),
        ("DELETE", "", "lambda:DeleteAlias"),
    ),
    *_rows(
        _N,
        "",
        ("GET", "/2015-03-31/functions", "lambda:ListFunctions"),
        ("GET", "/2016-08-19/account-settings", "lambda:GetAccountSettings"),
        ("GET", "/2016-08-19/account-settings/", "lambda:GetAccountSettings"),
    ),
    RouteAccess("POST", "/2015-03-31/functions", "lambda:CreateFunction", Kind.CREATED),
    RouteAccess("GET", "/2018-10-31/layers", "lambda:ListLayers", Kind.LAYERS),
    *_rows(
        Kind.FUNCTION,
        "",
        ("PUT", "/2017-10-31/functions/{name}/concurrency", "lambda:PutFunctionConcurrency"),
        ("GET", "/2019-09-30/functions/{name}/concurrency", "lambda:GetFunctionConcurrency"),
        ("DELETE", "/2017-10-31/functions/{name}/concurrency", "lambda:DeleteFunctionConcurrency"),
    ),
    *_rows(
        Kind.FUNCTION,
        "/2019-09-30/functions/{name}/provisioned-concurrency",
        ("PUT", "", "lambda:PutProvisionedConcurrencyConfig"),
        ("GET", "", "lambda:GetProvisionedConcurrencyConfig"),
        ("DELETE", "", "lambda:DeleteProvisionedConcurrencyConfig"),
    ),
    *_rows(
        Kind.FUNCTION,
        "/2019-09-25/functions/{name}/event-invoke-config",
        ("PUT", "", "lambda:PutFunctionEventInvokeConfig"),
        ("POST", "", "lambda:UpdateFunctionEventInvokeConfig"),
        ("GET", "", "lambda:GetFunctionEventInvokeConfig"),
        ("DELETE", "", "lambda:DeleteFunctionEventInvokeConfig"),
        ("GET", "/list", "lambda:ListFunctionEventInvokeConfigs"),
    ),
    *_rows(
        Kind.FUNCTION,
        "/2021-10-31/functions/{name}",
        ("POST", "/url", "lambda:CreateFunctionUrlConfig"),
        ("GET", "/url", "lambda:GetFunctionUrlConfig"),
        ("PUT", "/url", "lambda:UpdateFunctionUrlConfig"),
        ("DELETE", "/url", "lambda:DeleteFunctionUrlConfig"),
        ("GET", "/urls", "lambda:ListFunctionUrlConfigs"),
    ),
    *_rows(
        Kind.FUNCTION,
        "",
        (
            "GET",
            "/2021-07-20/functions/{name}/runtime-management-config",
            "lambda:GetRuntimeManagementConfig",
        ),
        (
            "PUT",
            "/2021-07-20/functions/{name}/runtime-management-config",
            "lambda:PutRuntimeManagementConfig",
        ),
        (
            "GET",
            "/2020-06-30/functions/{name}/code-signing-config",
            "lambda:GetFunctionCodeSigningConfig",
        ),
    ),
    *_rows(
        Kind.TAGGED,
        "/2017-03-31/tags/{arn}",
        ("POST", "", "lambda:TagResource"),
        ("DELETE", "", "lambda:UntagResource"),
        ("GET", "", "lambda:ListTags"),
    ),
    *_rows(
        _N,
        "/2020-04-22/code-signing-configs",
        ("GET", "", "lambda:ListCodeSigningConfigs"),
        ("GET", "/{arn}", "lambda:GetCodeSigningConfig"),
    ),
    *_rows(
        _N,
        "/2015-03-31/event-source-mappings",
        ("POST", "", "lambda:CreateEventSourceMapping"),
        ("POST", "/", "lambda:CreateEventSourceMapping"),
        ("GET", "", "lambda:ListEventSourceMappings"),
        ("GET", "/", "lambda:ListEventSourceMappings"),
    ),
    *_rows(
        Kind.MAPPING,
        "/2015-03-31/event-source-mappings/{uuid}",
        ("GET", "", "lambda:GetEventSourceMapping"),
        ("PUT", "", "lambda:UpdateEventSourceMapping"),
        ("DELETE", "", "lambda:DeleteEventSourceMapping"),
    ),
    *_rows(
        Kind.LAYER,
        "/2018-10-31/layers/{name}/versions",
        ("POST", "", "lambda:PublishLayerVersion"),
        ("GET", "", "lambda:ListLayerVersions"),
    ),
    *_rows(
        Kind.LAYER_VERSION,
        "",
        ("GET", "/2018-10-31/layers/{name}/versions/{version}", "lambda:GetLayerVersion"),
        ("DELETE", "/2018-10-31/layers/{name}/versions/{version}", "lambda:DeleteLayerVersion"),
        ("GET", "/_ember/layers/{name}/versions/{version}/content", "ember:GetLayerVersionContent"),
    ),
    *_rows(
        Kind.FUNCTION,
        _E,
        ("GET", "/sandbox", "ember:GetSandboxConfig"),
        ("PUT", "/sandbox", "ember:PutSandboxConfig"),
        ("GET", "/logs", "ember:GetLogs"),
        ("GET", "/code", "ember:GetFunctionCode"),
        ("GET", "/limits", "ember:GetLimits"),
        ("PUT", "/limits", "ember:PutLimit"),
        ("DELETE", "/limits", "ember:DeleteLimit"),
        ("GET", "/dead-letters", "ember:ListDeadLetters"),
        ("DELETE", "/dead-letters", "ember:PurgeDeadLetters"),
        ("POST", "/dead-letters/redrive", "ember:RedriveDeadLetters"),
        ("GET", "/dead-letters/{id}", "ember:GetDeadLetter"),
        ("PUT", "/tool", "ember:PutTool"),
        ("GET", "/tool", "ember:GetTool"),
        ("DELETE", "/tool", "ember:DeleteTool"),
        ("GET", "/invocations", "ember:ListInvocations"),
        ("GET", "/series", "ember:GetInvocationSeries"),
    ),
    *_rows(
        _N,
        "/_ember",
        ("GET", "/sandboxes", "ember:ListSandboxes"),
        ("GET", "/limits", "ember:ListLimits"),
        ("GET", "/queue", "ember:GetQueueStatistics"),
        ("GET", "/tools", "ember:ListTools"),
        ("GET", "/apis/ember.dev/v1/functions", "ember:ListManifests"),
        ("GET", "/apis/ember.dev/v1/namespaces/{ns}/functions", "ember:ListManifests"),
        ("POST", "/apis/ember.dev/v1/namespaces/{ns}/functions", "ember:CreateManifest"),
        ("POST", "/accounts", _CREATE_ACCOUNT),
        ("GET", "/accounts", "ember:ListAccounts"),
        ("DELETE", "/keys/{id}", "ember:DeleteAccessKey"),
        ("POST", "/tokens", "ember:CreateToken"),
        ("GET", "/tokens", "ember:ListTokens"),
        ("DELETE", "/tokens/{id}", "ember:DeleteToken"),
        ("GET", "/audit", "ember:ListAuditEvents"),
        ("GET", "/workers", "ember:ListWorkers"),
        ("POST", "/workers/{id}/drain", "ember:DrainWorker"),
        # Read by request id: only records of the caller's account's functions answer.
        ("GET", "/invocations/{id}", "ember:GetInvocation"),
        ("GET", "/top", "ember:GetInvocationStatistics"),
        ("GET", "/runtimes", "ember:ListRuntimes"),
        ("PUT", "/runtimes/{runtime}", "ember:InstallRuntime"),
        ("DELETE", "/runtimes/{runtime}", "ember:RemoveRuntime"),
    ),
    # A scraper that is neither on loopback nor holds the metrics token signs.
    RouteAccess("GET", "/metrics", "ember:GetMetrics", _N),
    *_rows(
        Kind.ACCOUNT,
        "/_ember/keys",
        ("POST", "", "ember:CreateAccessKey"),
        ("GET", "", "ember:ListAccessKeys"),
    ),
    *_rows(
        Kind.FUNCTION,
        _M + "/namespaces/{ns}/functions/{name}",
        ("GET", "", "ember:GetManifest"),
        ("PUT", "", "ember:ReplaceManifest"),
        ("PATCH", "", "ember:ApplyManifest"),
        ("DELETE", "", "ember:DeleteManifest"),
        ("GET", "/status", "ember:GetManifestStatus"),
    ),
)
# Routes outside authorization: the guard lets them through unauthenticated (liveness,
# and the API's description: botocore's public model and ember's route list).
PUBLIC = frozenset({("GET", "/health"), ("GET", "/openapi.json")})


def _query(query: str, name: str) -> str | None:
    if name not in query:  # the common case costs one substring test
        return None
    for key, value in parse_qsl(query):
        if key == name:
            return value
    return None


class Authorizer:
    """The ``ember.auth.base.Authorizer`` of this deployment's ``region``.

    ``policies_of`` gives a user's identity policies; ``resource_policy_of`` the
    resource policy of a function ARN (``ember.control.policies``).
    """

    def __init__(
        self,
        *,
        region: str,
        default_account: str,
        policies_of: PoliciesOf,
        resource_policy_of: ResourcePolicyOf,
    ) -> None:
        self._region = region
        self._default = default_account
        self._policies_of = policies_of
        self._resource_policy_of = resource_policy_of
        self._table: dict[str, list[tuple[re.Pattern[str], RouteAccess]]] = {}
        for route in ROUTES:
            self._table.setdefault(route.method, []).append((route.pattern(), route))

    # --- the route table -----------------------------------------------------

    def route_of(self, method: str, path: str) -> tuple[RouteAccess, dict[str, str]] | None:
        """The row describing ``method path`` and the path's parameters, or None."""
        for pattern, route in self._table.get(method, ()):
            match = pattern.match(path)
            if match is not None:
                return route, match.groupdict()
        return None

    def access_of(
        self, principal: Principal, method: str, path: str, query: str = "", body: bytes = b""
    ) -> Access:
        found = self.route_of(method, path)
        caller = principal.account_id
        if found is None:
            return Access(UNKNOWN_ACTION, "*", caller, change=method not in ("GET", "HEAD"))
        route, params = found
        if route.kind is Kind.LAYERS and _query(query, "find") == "LayerVersion":
            return self._layer_by_arn(_query(query, "Arn") or "", caller)
        action = route.action
        if action in _LISTED_BY_QUERY and _query(query, "List") == "ALL":
            action = _LISTED_BY_QUERY[action]
        if route.kind is Kind.CREATED:
            resource, account = self._created(body, caller)
        else:
            resource, account = self._resource(route.kind, params, query, caller)
        return Access(action, resource, account, route.change)

    def _created(self, body: bytes, caller: str) -> tuple[str, str]:
        """CreateFunction acts on the function it creates, as in IAM (policies such as
        ``function:team-*`` limit what a user may create). Parsed as the handler will
        parse it, never guessed from the bytes: a body that is not JSON naming a
        function is refused by the handler, and acts on ``*`` here."""
        try:
            # packagejson: the handler's parse, without the package made text (67 MB).
            name = packagejson.loads(body).get("FunctionName") if body else None
        except (orjson.JSONDecodeError, AttributeError):
            name = None
        if not isinstance(name, str):
            return "*", caller
        return self._function(name, None, caller)

    def _layer_by_arn(self, arn: str, caller: str) -> Access:
        """GetLayerVersionByArn: the version's ARN, in the account it names."""
        _, account = self._layer(arn.rpartition(":")[0], None, caller)
        return Access("lambda:GetLayerVersion", arn or "*", account, change=False)

    def _resource(
        self, kind: Kind, params: dict[str, str], query: str, caller: str
    ) -> tuple[str, str]:
        if kind in (Kind.NONE, Kind.LAYERS):
            return "*", caller
        if kind is Kind.ACCOUNT:
            return "*", _query(query, "AccountId") or caller
        if kind is Kind.TAGGED:
            return self._tagged(params["arn"], caller)
        if kind in (Kind.LAYER, Kind.LAYER_VERSION):
            return self._layer(params["name"], params.get("version"), caller)
        if kind is Kind.MAPPING:
            arn = f"arn:aws:lambda:{self._region}:{caller}:event-source-mapping:{params['uuid']}"
            return arn, caller
        qualifier = params["alias"] if kind is Kind.ALIAS else _query(query, "Qualifier")
        return self._function(params["name"], qualifier, caller)

    def _tagged(self, arn: str, caller: str) -> tuple[str, str]:
        """A tagged resource acts on itself, in the account its ARN names (a malformed
        ARN is refused by the handler; the caller's account decides meanwhile)."""
        match = _TAGGABLE.match(arn)
        return (arn, match["account"]) if match else (arn or "*", caller)

    def _function(self, identifier: str, qualifier: str | None, caller: str) -> tuple[str, str]:
        match = _FUNCTION.match(identifier)
        if match is None:  # the handler refuses the name; the caller's account decides
            return self.function_arn(caller, identifier, qualifier), caller
        account = match["account"] or caller
        arn = self.function_arn(account, match["name"], match["qualifier"] or qualifier)
        return arn, account

    def _layer(self, identifier: str, version: str | None, caller: str) -> tuple[str, str]:
        match = _LAYER.match(identifier)
        account, name = (match["account"], match["name"]) if match else (caller, identifier)
        arn = f"arn:aws:lambda:{self._region}:{account}:layer:{name}"
        return (f"{arn}:{version}" if version else arn), account

    def function_arn(self, account: str, name: str, qualifier: str | None = None) -> str:
        arn = f"arn:aws:lambda:{self._region}:{account}:function:{name}"
        return f"{arn}:{qualifier}" if qualifier else arn

    # --- the decision --------------------------------------------------------

    async def authorize(
        self, principal: Principal, access: Access, context: Mapping[str, str] | None = None
    ) -> None:
        self.decide(principal, access, context)

    def decide(
        self, caller: Caller, access: Access, context: Mapping[str, str] | None = None
    ) -> None:
        """``authorize`` for any caller (a service principal too); raises ``AccessDenied``."""
        request = Request(caller, access.action, access.resource, access.account, context or {})
        if self._operator(caller, access.action):
            return
        if access.action == _CREATE_ACCOUNT:
            raise AccessDenied(
                f"User: {caller.arn} is not authorized to perform: {access.action} on "
                f"resource: {access.resource}: only the root of account {self._default} "
                "creates accounts"
            )
        if access.action in _HOST_ACTIONS and not _in_account(caller, self._default):
            raise AccessDenied(
                f"User: {caller.arn} is not authorized to perform: {access.action} on "
                f"resource: {access.resource}: worker hosts belong to account {self._default}"
            )
        # A root's identity is implicit (policy.evaluate); a service has none.
        identity: Sequence[Policy] = ()
        if isinstance(caller, Principal) and not caller.is_root:
            identity = self._policies_of(caller)
        authorize(request, identity, self._resource_policy(access))

    def _operator(self, caller: Caller, action: str) -> bool:
        return (
            isinstance(caller, Principal)
            and caller.is_root
            and caller.account_id == self._default
            and action in _OPERATOR_ACTIONS
        )

    def _resource_policy(self, access: Access) -> Policy | None:
        if ":function:" not in access.resource:
            return None
        return self._resource_policy_of(access.resource)


def _in_account(caller: Caller, account: str) -> bool:
    return isinstance(caller, Principal) and caller.account_id == account
