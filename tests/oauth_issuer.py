"""A tiny OAuth authorization server for the tests: metadata, a JWKS, and the tokens
it signs (keys made with ``cryptography``). No IdP is reachable from the test machines,
and ember only ever reads an issuer's metadata and keys, so this is all there is to serve.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

AUTHORIZATION_SERVER = "/.well-known/oauth-authorization-server"
OPENID_CONFIGURATION = "/.well-known/openid-configuration"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Issuer:
    """Serves ``metadata`` (at the paths in ``paths``) and the JWKS of ``keys``."""

    def __init__(self, paths: tuple[str, ...] = (AUTHORIZATION_SERVER,)) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {"k1": new_key()}
        self.paths = paths
        self.hits: Counter[str] = Counter()
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.hits[self.path] += 1
                body = issuer.document(self.path)
                self.send_response(404 if body is None else 200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(orjson.dumps(body or {}))

            def log_message(self, *args: Any) -> None:
                return None

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"

    def document(self, path: str) -> dict[str, Any] | None:
        if path in self.paths:
            return {"issuer": self.url, "jwks_uri": self.url + "/jwks"}
        if path == "/jwks":
            return {"keys": [self.jwk(kid, key) for kid, key in self.keys.items()]}
        return None

    @staticmethod
    def jwk(kid: str, key: rsa.RSAPrivateKey) -> dict[str, Any]:
        public: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        return {**public, "kid": kid, "use": "sig", "alg": "RS256"}

    def token(
        self,
        audience: str | list[str],
        *,
        kid: str = "k1",
        key: rsa.RSAPrivateKey | None = None,
        lifetime: float = 300,
        **claims: Any,
    ) -> str:
        """An access token for ``audience``; ``claims`` override or add to the usual ones."""
        now = int(time.time())
        body = {
            "iss": self.url,
            "sub": "user-1",
            "aud": audience,
            "iat": now,
            "exp": now + int(lifetime),
            **claims,
        }
        signing = key if key is not None else self.keys[kid]
        return jwt.encode(body, signing, algorithm="RS256", headers={"kid": kid})


@contextmanager
def running(issuer: Issuer | None = None) -> Iterator[Issuer]:
    issuer = issuer or Issuer()
    thread = threading.Thread(target=issuer._http.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        issuer._http.shutdown()
        issuer._http.server_close()
