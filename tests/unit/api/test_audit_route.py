"""GET /_ember/audit in-process (ASGI): parameters parsed, scoped to the caller, paged."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from ember.api import audit as audit_api
from ember.api.services import Services
from ember.audit.log import AuditLog
from ember.audit.memory import MemoryAuditStore
from ember.auth.base import PRINCIPAL_SCOPE_KEY, AuditEntry
from ember.auth.principals import Principal
from ember.config import Settings
from ember.errors import InvalidParameterValue

DEFAULT = "000000000000"
OTHER = "111111111111"
NOW = 1_700_000_000.0


def entry(time: float, account: str, action: str = "lambda:CreateFunction") -> AuditEntry:
    principal = f"arn:aws:iam::{account}:root"
    return AuditEntry(time, f"req-{time}", principal, account, action, "*", True, 201)


def client_as(principal: Principal, entries: list[AuditEntry]) -> TestClient:
    """The route alone, behind a stand-in for the guard that puts ``principal`` in the scope."""
    store = MemoryAuditStore()
    asyncio.run(store.append(entries))
    log = AuditLog(store, retention=1000)
    services = cast(Services, SimpleNamespace(settings=Settings(), audit=log))
    app = Starlette(routes=audit_api.routes(services))

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope[PRINCIPAL_SCOPE_KEY] = principal
        await app(scope, receive, send)

    return TestClient(guarded)


ENTRIES = [entry(NOW - 60, DEFAULT), entry(NOW - 30, OTHER), entry(NOW - 10, OTHER)]


def test_the_default_root_reads_every_account_newest_first() -> None:
    body = client_as(Principal(DEFAULT), ENTRIES).get("/_ember/audit").json()
    assert [e["AccountId"] for e in body["Events"]] == [OTHER, OTHER, DEFAULT]
    assert body["NextMarker"] is None
    assert body["Events"][0] == {
        "Time": "2023-11-14T22:13:10.000Z",
        "RequestId": f"req-{NOW - 10}",
        "Principal": f"arn:aws:iam::{OTHER}:root",
        "AccountId": OTHER,
        "Action": "lambda:CreateFunction",
        "Resource": "*",
        "Allowed": True,
        "Status": 201,
        "Error": None,
    }


@pytest.mark.parametrize("caller", [Principal(OTHER), Principal(DEFAULT, "alice")])
def test_anyone_else_reads_only_their_own_account(caller: Principal) -> None:
    body = client_as(caller, ENTRIES).get("/_ember/audit").json()
    assert {e["AccountId"] for e in body["Events"]} == {caller.account_id}


def test_pages_follow_next_markers() -> None:
    client = client_as(Principal(DEFAULT), ENTRIES)
    first = client.get("/_ember/audit", params={"limit": "2"}).json()
    assert len(first["Events"]) == 2 and first["NextMarker"]
    rest = client.get("/_ember/audit", params={"limit": "2", "next": first["NextMarker"]}).json()
    assert [e["AccountId"] for e in rest["Events"]] == [DEFAULT]
    assert rest["NextMarker"] is None


def test_since_and_until_take_iso_and_epoch_seconds() -> None:
    client = client_as(Principal(DEFAULT), ENTRIES)
    iso = client.get("/_ember/audit", params={"since": "2023-11-14T22:12:51Z"}).json()
    epoch = client.get("/_ember/audit", params={"until": str(NOW - 20)}).json()
    assert [e["Time"] for e in iso["Events"]] == ["2023-11-14T22:13:10.000Z"]
    assert len(epoch["Events"]) == 2


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("since", "yesterday"),
        ("until", "10x"),
        ("limit", "0"),
        ("limit", "1001"),
        ("limit", "ten"),
        ("next", "not-a-marker"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(param: str, value: str) -> None:
    response = client_as(Principal(DEFAULT), ENTRIES).get("/_ember/audit", params={param: value})
    assert response.status_code == 400
    assert response.headers["x-amzn-ErrorType"].startswith("InvalidParameterValueException")
    assert f"Invalid {param}" in response.json()["message"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10m", NOW - 600),
        ("2h", NOW - 7200),
        ("1d", NOW - 86400),
        ("90s", NOW - 90),
        ("1700000000", 1_700_000_000.0),
        ("1700000000.5", 1_700_000_000.5),
        ("2023-11-14T22:13:20Z", NOW),
        ("2023-11-14T22:13:20", NOW),
        ("2023-11-14T23:13:20+01:00", NOW),
    ],
)
def test_instants_are_ages_epoch_seconds_or_iso(text: str, seconds: float) -> None:
    assert audit_api.parse_instant("since", text, NOW) == seconds


def test_an_unparseable_instant_names_the_parameter() -> None:
    with pytest.raises(InvalidParameterValue, match="Invalid until 'soon'"):
        audit_api.parse_instant("until", "soon", NOW)
