"""Which ``Host`` and browser ``Origin`` may reach the API: no call a web page can forge.

A page in a browser can POST ``text/plain`` to ``127.0.0.1:9900`` (a "simple"
request: no CORS preflight) and, by DNS rebinding (its own name re-pointed at
127.0.0.1), read the answers too. Both carry a tell the page cannot remove:

- a rebound request's ``Host`` is the attacker's name, never one of ours: it
  is refused (421, ``MisdirectedRequest``) unless it is a loopback name, the
  address ember listens on, a name the operator allowed (``--allow-host``),
  or, when ember listens on every address, any IP literal (an IP cannot be
  rebound: a page served from it is same-origin with ember already);
- a cross-site request carries the page's ``Origin``: one whose host is not
  allowed by the same rule is refused (403). Clients that are not browsers
  (SDKs, the CLI, curl) send no ``Origin`` and are unaffected.

Function URLs are public endpoints with their own CORS and are not judged
here; host-style ones (``<url-id>.lambda-url.<region>.<url domain>``) are
recognised by ``url_id`` so the Frontend can route them to their function.

The check costs one scan of the headers and, for the usual ``Host``, one set
lookup: it runs on the Invoke hot path.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from ember.errors import AccessDenied, MisdirectedRequest

Headers = Iterable[tuple[bytes, bytes]]
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_ADDRESSES = ("", "0.0.0.0", "::")
MAX_ECHO = 255  # a DNS name's length: as much of a refused value as an answer quotes


def _bare(host: str) -> str:
    """``host`` without its port and IPv6 brackets, lower-cased."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() and ":" not in name else host


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _origin_host(origin: str) -> str | None:
    """The host of an ``Origin`` (``scheme://host[:port]``); None for ``null`` or junk."""
    scheme, sep, rest = origin.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest or "/" in rest:
        return None
    return _bare(rest)


class HostPolicy:
    """The names this server answers to, and the suffix of its host-style URLs."""

    def __init__(
        self,
        listen_host: str,
        port: int,
        allowed: Iterable[str] = (),
        *,
        url_suffix: str = ".lambda-url.us-east-1.localhost",
    ) -> None:
        listening = _bare(listen_host) if listen_host not in WILDCARD_ADDRESSES else ""
        names = {*LOOPBACK_NAMES, *(_bare(name) for name in allowed)}
        if listening:
            names.add(listening)
        self._names = frozenset(names)
        # Behind a wildcard bind, every address of the host is "the listening address".
        self._any_ip = listen_host in WILDCARD_ADDRESSES
        # The Host values of nearly every request, raw, for the one-lookup fast path.
        self._usual = frozenset(
            f"{n}:{port}".encode() if ":" not in n else f"[{n}]:{port}".encode() for n in names
        ) | frozenset(n.encode() for n in names if ":" not in n)
        self.url_suffix = url_suffix.lower()

    def allows(self, name: str) -> bool:
        """Whether the bare host ``name`` is one of ours."""
        return name in self._names or (self._any_ip and _is_ip(name))

    def url_id(self, host: bytes | None) -> str | None:
        """The URL id of a host-style function URL's ``Host``, else None."""
        if host is None or host in self._usual:
            return None
        name = _bare(host.decode("latin-1"))
        if not name.endswith(self.url_suffix):
            return None
        url_id = name[: -len(self.url_suffix)]
        return url_id if url_id and "." not in url_id else None

    def check(self, host: bytes | None, origin: bytes | None) -> None:
        """Raise ``MisdirectedRequest`` for a foreign ``Host``, ``AccessDenied`` for a
        foreign ``Origin``; a request without a Host (HTTP/1.0) comes from no browser."""
        if host is not None and host not in self._usual:
            name = _bare(host.decode("latin-1"))
            if not self.allows(name):
                name = name[:MAX_ECHO]  # the answer quotes it: bounded
                raise MisdirectedRequest(
                    f"This server does not answer to the host {name!r} "
                    f"(its operator may allow it with --allow-host {name})"
                )
        if origin is not None:
            origin_host = _origin_host(origin.decode("latin-1"))
            if origin_host is None or not self.allows(origin_host):
                quoted = origin.decode("latin-1")[:MAX_ECHO]
                raise AccessDenied(f"Requests from the origin {quoted!r} are not allowed")


def host_and_origin(headers: Headers) -> tuple[bytes | None, bytes | None]:
    """The ``Host`` and ``Origin`` header values of an ASGI request (lower-case names)."""
    host = origin = None
    for name, value in headers:
        if name == b"host":
            host = value
        elif name == b"origin":
            origin = value
    return host, origin


__all__ = ["HostPolicy", "host_and_origin"]
