"""Access keys, their secrets encrypted at rest under a master key, in the metadata store.

A key is an AKIA-style id (20 characters) and a 40-character secret that
belongs to one principal (an account's root or a named user). The secret is
shown once, when created; the store keeps it only as AES-GCM ciphertext
(``cryptography``) whose associated data is the key id, so a ciphertext moved
to another record does not decrypt. The documents live in any
``MetadataStore`` (SQLite embedded, PostgreSQL in a cluster), so every node
given the same master key reads the same keys; a node with another master
key refuses to start (``StartupRefused``) instead of refusing every caller.

The master key (32 bytes) comes from ``EMBER_MASTER_KEY`` (base64), else a
``--master-key-file`` (base64 text), else ``<data-dir>/master.key``, created
0600 on first use. No function here logs or returns a secret except
``KeyStore.create``, whose caller shows it once.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ember.auth.principals import Principal
from ember.errors import ResourceNotFound, StartupRefused
from ember.storage.base import MetadataStore

log = logging.getLogger("ember.auth")

MASTER_KEY_ENV = "EMBER_MASTER_KEY"
MASTER_KEY_FILE = "master.key"
MASTER_KEY_BYTES = 32
# AWS's shapes: ids are "AKIA" + 16 of A-Z/2-7, secrets 40 of base64's alphabet.
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_SECRET_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# The record that proves a master key is the one the store was written with; "!" sorts
# before every key id and no key id contains it.
_CHECK_ID = "!master-key-check"
_CHECK_PLAINTEXT = b"ember master key check v1"


@dataclass(frozen=True, slots=True)
class AccessKey:
    """An access key's public half: what ``ember keys ls`` shows. Never holds the secret."""

    access_key_id: str
    principal: Principal
    created: str  # ISO 8601, UTC


def new_access_key_id() -> str:
    return "AKIA" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))


def new_secret() -> str:
    return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))


# --- The master key ---------------------------------------------------------------------


def load_master_key(
    data_dir: Path,
    *,
    key_file: Path | None = None,
    environ: Mapping[str, str] = os.environ,
) -> bytes:
    """The 32-byte master key: ``EMBER_MASTER_KEY`` (base64), else ``key_file``
    (base64 text), else ``data_dir/master.key``, created 0600 if missing.
    Raises ``StartupRefused`` naming the source that is unusable, never its value."""
    if MASTER_KEY_ENV in environ:
        return _decode_master(environ[MASTER_KEY_ENV], MASTER_KEY_ENV)
    if key_file is not None:
        return _read_master(key_file, f"--master-key-file {key_file}")
    path = data_dir / MASTER_KEY_FILE
    if not path.exists():
        _create_master(path)
    return _read_master(path, str(path))


def _read_master(path: Path, source: str) -> bytes:
    try:
        info = path.stat()
        text = path.read_text()
    except OSError as exc:
        raise StartupRefused(f"cannot read the master key from {source}: {exc.strerror}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StartupRefused(
            f"the master key file {path} is readable by other users; run chmod 600 {path}"
        )
    return _decode_master(text, source)


def _decode_master(text: str, source: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != MASTER_KEY_BYTES:
        raise StartupRefused(
            f"the master key in {source} must be {MASTER_KEY_BYTES} bytes, base64-encoded "
            "(make one with: head -c 32 /dev/urandom | base64)"
        )
    return key


def _create_master(path: Path) -> None:
    """Write a new key so that it appears whole or not at all, even when two
    processes start together: a private temporary file, then a link that fails
    if the other process won."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".master-")  # mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(secrets.token_bytes(MASTER_KEY_BYTES)).decode() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)


# --- The store --------------------------------------------------------------------------


class KeyStore:
    """Access keys over a ``MetadataStore`` of their own (one document per key id).

    ``open`` before use: it reads every key, proves the master key can decrypt
    them and keeps the secrets in memory, so ``lookup`` (the SigV4 verifier's
    key lookup) costs one dict read. ``create`` and ``delete`` write through.
    """

    def __init__(self, store: MetadataStore, master_key: bytes) -> None:
        if len(master_key) != MASTER_KEY_BYTES:
            raise ValueError("the master key must be 32 bytes")
        self._store = store
        self._aead = AESGCM(master_key)
        # Only ever an HMAC key (``derive``): the master key itself is not kept here.
        self._derivation = hmac.new(master_key, b"ember derived keys", hashlib.sha256).digest()
        self._keys: dict[str, AccessKey] = {}
        # Invariant: the same key ids as _keys; the plaintext secrets, never written anywhere.
        self._secrets: dict[str, str] = {}

    async def open(self) -> None:
        """Load and decrypt every key; raises ``StartupRefused`` if this master key is
        not the one they were written with (without saying anything about the secrets)."""
        documents = await self._store.load_all()
        check = documents.pop(_CHECK_ID, None)
        if check is None:
            await self._store.put(_CHECK_ID, self._seal_document(_CHECK_ID, _CHECK_PLAINTEXT))
        else:
            self._open_sealed(_CHECK_ID, orjson.loads(check)["Secret"])
        for key_id, document in sorted(documents.items()):
            record = orjson.loads(document)
            secret = self._open_sealed(key_id, record["Secret"]).decode()
            self._remember(_access_key(record), secret)

    async def create(self, principal: Principal) -> tuple[AccessKey, str]:
        """A new key for ``principal``: (its public half, the secret to show once)."""
        key = AccessKey(new_access_key_id(), principal, datetime.now(UTC).isoformat())
        secret = new_secret()
        record = {
            "AccessKeyId": key.access_key_id,
            "AccountId": principal.account_id,
            "UserName": principal.user,
            "Created": key.created,
            "Secret": self._seal(key.access_key_id, secret.encode()),
        }
        await self._store.put(key.access_key_id, orjson.dumps(record).decode())
        self._remember(key, secret)
        return key, secret

    async def delete(self, access_key_id: str) -> None:
        """Remove a key; raises ``ResourceNotFound`` if there is none by that id."""
        if access_key_id not in self._keys:
            raise ResourceNotFound(f"The access key with id {access_key_id} cannot be found.")
        await self._store.delete(access_key_id)
        del self._keys[access_key_id], self._secrets[access_key_id]

    async def apply_remote(self, key_id: str, document: str | None) -> None:
        """The feed's callback (namespace ``keys``): another node created or deleted
        ``key_id``; memory follows, nothing is written. Idempotent."""
        if key_id == _CHECK_ID:
            return
        if document is None:
            self._keys.pop(key_id, None)
            self._secrets.pop(key_id, None)
            return
        record = orjson.loads(document)
        try:
            secret = self._open_sealed(key_id, record["Secret"]).decode()
        except StartupRefused:
            # open() proved this master key reads the store; a record it cannot read
            # was written by a misconfigured node: refuse that key, keep serving.
            log.error("access key %s was written under another master key; ignored", key_id)
            return
        self._remember(_access_key(record), secret)

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for ``purpose`` (e.g. the console's session cookies): every node
        holding this master key derives the same one, and it reveals nothing of it."""
        return hmac.new(self._derivation, purpose.encode(), hashlib.sha256).digest()

    def get(self, access_key_id: str) -> AccessKey | None:
        """The public half of a key, or None."""
        return self._keys.get(access_key_id)

    def keys(self, account_id: str | None = None) -> list[AccessKey]:
        """Every key (of ``account_id`` if given), ordered by id."""
        return sorted(
            (k for k in self._keys.values() if account_id in (None, k.principal.account_id)),
            key=lambda k: k.access_key_id,
        )

    def lookup(self, access_key_id: str) -> tuple[str, Principal] | None:
        """(secret, principal) of a key, or None: the ``KeyLookup`` of ``sigv4.Verifier``."""
        key = self._keys.get(access_key_id)
        if key is None:
            return None
        return self._secrets[access_key_id], key.principal

    def _remember(self, key: AccessKey, secret: str) -> None:
        self._keys[key.access_key_id] = key
        self._secrets[key.access_key_id] = secret

    def _seal(self, key_id: str, plaintext: bytes) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, plaintext, _associated(key_id))
        return base64.b64encode(nonce + sealed).decode()

    def _seal_document(self, key_id: str, plaintext: bytes) -> str:
        return orjson.dumps({"Secret": self._seal(key_id, plaintext)}).decode()

    def _open_sealed(self, key_id: str, sealed: str) -> bytes:
        raw = base64.b64decode(sealed)
        try:
            return self._aead.decrypt(raw[:12], raw[12:], _associated(key_id))
        except InvalidTag:
            raise StartupRefused(
                "the master key cannot decrypt the stored access keys: every node must be "
                f"given the key they were written with ({MASTER_KEY_ENV} or --master-key-file)"
            ) from None


def _associated(key_id: str) -> bytes:
    return f"ember access key {key_id}".encode()


def _access_key(record: dict[str, str]) -> AccessKey:
    principal = Principal(record["AccountId"], record.get("UserName"))
    return AccessKey(record["AccessKeyId"], principal, record["Created"])
