"""Console sessions: signed, expiring, tied to a key that still exists; CSRF tokens."""

from __future__ import annotations

import pytest

from ember.auth.principals import Principal
from ember.console.session import Sessions
from ember.errors import AccessDenied, UnrecognizedClient

ROOT = Principal("000000000000")


class Keys:
    def __init__(self) -> None:
        self.known = {"AKIAEXAMPLE": ("s3cret", ROOT)}

    def lookup(self, key_id: str) -> tuple[str, Principal] | None:
        return self.known.get(key_id)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sessions(keys: Keys, clock: Clock) -> Sessions:
    return Sessions(b"k" * 32, keys.lookup, clock=clock, lifetime=60)


def test_a_session_names_its_keys_principal(sessions: Sessions) -> None:
    assert sessions.principal(sessions.sign_in("AKIAEXAMPLE", "s3cret")) == ROOT


@pytest.mark.parametrize(("key_id", "secret"), [("AKIAEXAMPLE", "wrong"), ("AKIANOPE", "s3cret")])
def test_a_wrong_secret_or_key_is_refused_alike(
    sessions: Sessions, key_id: str, secret: str
) -> None:
    with pytest.raises(UnrecognizedClient, match="access key id or secret is not valid"):
        sessions.sign_in(key_id, secret)


def test_a_session_expires(sessions: Sessions, clock: Clock) -> None:
    cookie = sessions.sign_in("AKIAEXAMPLE", "s3cret")
    clock.now += 61
    with pytest.raises(UnrecognizedClient, match="expired"):
        sessions.principal(cookie)


def test_a_forged_expiry_or_key_breaks_the_signature(sessions: Sessions) -> None:
    key_id, expires, signature = sessions.sign_in("AKIAEXAMPLE", "s3cret").split(".")
    for forged in (
        f"{key_id}.{int(expires) + 999}.{signature}",
        f"AKIAOTHER.{expires}.{signature}",
    ):
        with pytest.raises(UnrecognizedClient):
            sessions.principal(forged)
    with pytest.raises(UnrecognizedClient):
        sessions.principal(None)


def test_deleting_the_key_ends_its_sessions(sessions: Sessions, keys: Keys) -> None:
    cookie = sessions.sign_in("AKIAEXAMPLE", "s3cret")
    del keys.known["AKIAEXAMPLE"]
    with pytest.raises(UnrecognizedClient, match="no longer exists"):
        sessions.principal(cookie)


def test_a_csrf_token_belongs_to_one_session(sessions: Sessions, clock: Clock) -> None:
    first = sessions.sign_in("AKIAEXAMPLE", "s3cret")
    clock.now += 1
    second = sessions.sign_in("AKIAEXAMPLE", "s3cret")
    sessions.check_csrf(first, sessions.csrf_token(first))
    with pytest.raises(AccessDenied, match="CSRF"):
        sessions.check_csrf(first, sessions.csrf_token(second))
    with pytest.raises(AccessDenied):
        sessions.check_csrf(first, None)
