"""Console sessions: a signed, expiring cookie naming an access key, and CSRF tokens.

The cookie is ``<access key id>.<expiry>.<signature>``: the signature is an
HMAC-SHA256, under a key derived from the master key (``KeyStore.derive``), of
the key id and the expiry, so every node of a cluster accepts it and nothing
is stored server-side. Each request looks the key up again: a deleted key ends
its sessions at once. A form's CSRF token is an HMAC of the cookie itself, so
a page of one session cannot post for another.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from ember.auth.principals import Principal
from ember.errors import AccessDenied, UnrecognizedClient

COOKIE = "ember_console"
SESSION_SECONDS = 8 * 3600
# (secret, principal) of an access key id, or None: ``KeyStore.lookup``.
KeyLookup = Callable[[str], tuple[str, Principal] | None]
Clock = Callable[[], float]


class Sessions:
    """Signs in with an access key and reads sessions back; ``clock`` gives Unix seconds."""

    def __init__(
        self,
        key: bytes,
        lookup: KeyLookup,
        *,
        clock: Clock = time.time,
        lifetime: int = SESSION_SECONDS,
    ) -> None:
        self._key = key
        self._lookup = lookup
        self._clock = clock
        self.lifetime = lifetime

    def sign_in(self, access_key_id: str, secret: str) -> str:
        """A new session cookie's value, or UnrecognizedClient for a wrong id or secret
        (the same refusal for both: the form says nothing of which was wrong)."""
        found = self._lookup(access_key_id)
        if found is None or not hmac.compare_digest(found[0].encode(), secret.encode()):
            raise UnrecognizedClient("The access key id or secret is not valid.")
        expires = int(self._clock()) + self.lifetime
        body = f"{access_key_id}.{expires}"
        return f"{body}.{self._sign(body)}"

    def principal(self, cookie: str | None) -> Principal:
        """The principal of a session cookie; UnrecognizedClient when it is missing,
        forged, expired or its key was deleted."""
        if not cookie or cookie.count(".") != 2:
            raise UnrecognizedClient("Sign in to use the console.")
        key_id, expires, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self._sign(f"{key_id}.{expires}")):
            raise UnrecognizedClient("Sign in to use the console.")
        if not expires.isdigit() or int(expires) <= self._clock():
            raise UnrecognizedClient("The console session expired: sign in again.")
        found = self._lookup(key_id)
        if found is None:
            raise UnrecognizedClient("The access key of this session no longer exists.")
        return found[1]

    def csrf_token(self, cookie: str) -> str:
        return self._sign(f"csrf:{cookie}")

    def check_csrf(self, cookie: str, token: str | None) -> None:
        if not token or not hmac.compare_digest(token, self.csrf_token(cookie)):
            raise AccessDenied("The form's CSRF token is missing or wrong: reload the page.")

    def _sign(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()


__all__ = ["COOKIE", "SESSION_SECONDS", "Sessions"]
