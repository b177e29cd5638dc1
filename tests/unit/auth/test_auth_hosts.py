"""HostPolicy: the Host and Origin values that reach the API, and host-style URL ids."""

from __future__ import annotations

import pytest

from ember.auth.hosts import HostPolicy, host_and_origin
from ember.control.urls import url_id
from ember.errors import AccessDenied, MisdirectedRequest

SUFFIX = ".lambda-url.us-east-1.localhost"


def policy(listen: str = "127.0.0.1", *allowed: str) -> HostPolicy:
    return HostPolicy(listen, 9900, allowed, url_suffix=SUFFIX)


@pytest.mark.parametrize(
    "host",
    [b"127.0.0.1:9900", b"localhost", b"LOCALHOST:1234", b"[::1]:9900", b"[::1]", None],
)
def test_loopback_names_on_any_port_and_no_host_pass(host: bytes | None) -> None:
    policy().check(host, None)


@pytest.mark.parametrize(
    "host", [b"evil.example", b"evil.example:9900", b"127.0.0.1.nip.io", b"localhost.evil", b""]
)
def test_foreign_hosts_are_misdirected(host: bytes) -> None:
    with pytest.raises(MisdirectedRequest):
        policy().check(host, None)


def test_the_listening_address_and_allowed_names_pass() -> None:
    named = policy("10.1.2.3", "Ember.Example")
    for host in (b"10.1.2.3:9900", b"ember.example", b"ember.example:443"):
        named.check(host, None)
    with pytest.raises(MisdirectedRequest):
        named.check(b"10.1.2.4:9900", None)  # another address: not where it listens


def test_a_wildcard_bind_answers_any_ip_but_no_foreign_name() -> None:
    wildcard = policy("0.0.0.0")
    for host in (b"192.0.2.7:9900", b"[2001:db8::1]:9900"):
        wildcard.check(host, None)
    with pytest.raises(MisdirectedRequest):
        wildcard.check(b"rebind.example:9900", None)


@pytest.mark.parametrize(
    "origin",
    [b"http://evil.example", b"null", b"file://", b"http://localhost.evil.example", b"junk"],
)
def test_foreign_origins_are_denied(origin: bytes) -> None:
    with pytest.raises(AccessDenied):
        policy("127.0.0.1", "ember.example").check(b"localhost:9900", origin)


def test_allowed_origins_pass() -> None:
    allowed = policy("127.0.0.1", "ember.example")
    for origin in (b"http://localhost:9900", b"https://ember.example", b"http://[::1]:80"):
        allowed.check(b"127.0.0.1:9900", origin)


def test_host_style_url_ids() -> None:
    hosts = policy()
    key_id = url_id("111122223333.web:live")
    assert len(key_id) == 32 and key_id.isalnum() and key_id == key_id.lower()
    assert key_id == url_id("111122223333.web:live") != url_id("web:live")
    assert hosts.url_id(f"{key_id}{SUFFIX}:9900".encode()) == key_id
    assert hosts.url_id(f"{key_id.upper()}{SUFFIX.upper()}".encode()) == key_id
    for not_a_url in (b"127.0.0.1:9900", b"localhost", b"a.b" + SUFFIX.encode(), SUFFIX.encode()):
        assert hosts.url_id(not_a_url) is None
    assert hosts.url_id(None) is None


def test_host_and_origin_are_read_from_asgi_headers() -> None:
    headers = [(b"accept", b"*/*"), (b"host", b"h:1"), (b"origin", b"http://o")]
    assert host_and_origin(headers) == (b"h:1", b"http://o")
    assert host_and_origin([]) == (None, None)
