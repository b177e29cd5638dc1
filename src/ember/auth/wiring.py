"""Authentication, wired: master key, accounts, users, access keys, the SigV4 verifier.

``Auth.build`` reads the master key (a bad one refuses to start) and checks
that ``--auth none`` only listens on loopback. ``start`` is the first-start
bootstrap, once per database and under a lock (embedded: this process is
the only one; cluster: a PostgreSQL advisory lock): load every store, make
sure the default account exists with a root key; then write that key to
``<data-dir>/credentials`` (0600, AWS shared-credentials format, profile
``[ember]``) unless the file holds it already. Keys, accounts and users
other nodes create reach this one through the feed. ``--auth none`` reads
no master key and has no keys: accounts and users only.
"""

from __future__ import annotations

import configparser
import contextlib
import io
import ipaddress
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from ember.auth.accounts import AccountStore
from ember.auth.admin import Admin
from ember.auth.authorizer import Authorizer as PolicyAuthorizer
from ember.auth.authorizer import ResourcePolicyOf
from ember.auth.base import AuditSink, Authorizer
from ember.auth.keys import AccessKey, KeyStore, load_master_key
from ember.auth.principals import Principal
from ember.auth.sigv4 import HttpRequest, Verifier
from ember.auth.users import UserStore
from ember.config import Settings
from ember.errors import StartupRefused
from ember.lifecycle import Loop
from ember.storage.postgres import BOOTSTRAP_LOCK
from ember.storage.wiring import Storage

log = logging.getLogger("ember.auth")

AUTH_MODES = ("sigv4", "none")
CREDENTIALS_FILE = "credentials"
PROFILE = "ember"
DEFAULT_ACCOUNT_NAME = "default"


@dataclass
class Auth:
    settings: Settings
    storage: Storage
    accounts: AccountStore
    users: UserStore
    keys: KeyStore | None  # None with --auth none
    admin: Admin
    # None with --auth none: the guard then acts as the default account's root.
    verifier: Verifier | None
    authorizer: Authorizer
    audit: AuditSink

    @classmethod
    def build(
        cls,
        settings: Settings,
        storage: Storage,
        *,
        resource_policy_of: ResourcePolicyOf,
        audit: AuditSink,
    ) -> Auth:
        """Raises ``StartupRefused`` for an unusable master key or an exposed ``--auth none``.

        ``resource_policy_of`` finds a function's resource policy (AddPermission);
        ``audit`` receives every control-plane change, allowed or refused."""
        check_exposure(settings)
        accounts = AccountStore(storage.metadata("accounts"))
        users = UserStore(storage.metadata("users"))
        storage.feed.watch("accounts", accounts.apply_remote)
        storage.feed.watch("users", users.apply_remote)
        keys, verifier = None, None
        if settings.auth == "sigv4":
            master = load_master_key(storage.data_dir, key_file=settings.master_key_file)
            keys = KeyStore(storage.metadata("keys"), master)
            storage.feed.watch("keys", keys.apply_remote)
            verifier = Verifier(keys.lookup, region=settings.region, service="lambda")
        admin = Admin(accounts, keys, users, settings.account_id)
        authorizer = PolicyAuthorizer(
            region=settings.region,
            default_account=settings.account_id,
            policies_of=users.policies,
            resource_policy_of=resource_policy_of,
        )
        return cls(settings, storage, accounts, users, keys, admin, verifier, authorizer, audit)

    @property
    def default_root(self) -> Principal:
        return Principal(self.settings.account_id)

    def verify_url(self, request: HttpRequest) -> Principal:
        """The signer of an AWS_IAM function URL request; with ``--auth none``, as for
        every route, the default account's root."""
        return self.default_root if self.verifier is None else self.verifier.verify(request)

    @property
    def credentials_path(self) -> Path:
        return self.storage.data_dir / CREDENTIALS_FILE

    async def start(self) -> None:
        async with self._bootstrap_lock():
            await self.accounts.load()
            await self.users.load()
            await self.accounts.ensure(self.settings.account_id, DEFAULT_ACCOUNT_NAME)
            if self.keys is None:
                return
            root, secret = await self._root_key(self.keys)
        if write_credentials(self.credentials_path, root, secret, self.settings.region):
            log.info(
                "credentials of the default account's root written to %s (profile [%s])",
                self.credentials_path,
                PROFILE,
            )
        else:
            log.info(
                "credentials of the default account's root: %s (profile [%s])",
                self.credentials_path,
                PROFILE,
            )

    async def _root_key(self, keys: KeyStore) -> tuple[AccessKey, str]:
        """Load the keys; a root key of the default account, made if missing.
        Returns that root key and its secret."""
        await keys.open()  # refuses a master key that cannot read the stored secrets
        roots = [k for k in keys.keys(self.settings.account_id) if k.principal.is_root]
        if not roots:
            key, secret = await keys.create(self.default_root)
            log.info("created the default account's root access key %s", key.access_key_id)
            return key, secret
        # The file may already name one of several root keys: keep that one then.
        current = read_credentials(self.credentials_path)
        chosen = next((k for k in roots if k.access_key_id == current), min(roots, key=_age))
        found = keys.lookup(chosen.access_key_id)
        assert found is not None  # invariant: keys() and lookup() hold the same ids
        return chosen, found[0]

    @contextlib.asynccontextmanager
    async def _bootstrap_lock(self) -> AsyncIterator[None]:
        database = self.storage.database
        if database is None:  # embedded: this process is the only writer
            yield
            return
        async with database.locked(BOOTSTRAP_LOCK):
            yield

    def loops(self) -> list[Loop]:
        return []

    def stop(self) -> None:
        return None

    async def close(self) -> None:
        return None


def check_exposure(settings: Settings) -> None:
    """``--auth none`` serves anyone as the root: only on a loopback address."""
    if settings.auth not in AUTH_MODES:
        raise StartupRefused(
            f"--auth must be one of {', '.join(AUTH_MODES)}, not {settings.auth!r}"
        )
    if settings.auth == "none" and not is_loopback(settings.host):
        raise StartupRefused(
            f"--auth none lets anyone who reaches {settings.host} act as the root; it is "
            "allowed on a loopback --host only (use --host 127.0.0.1, or drop --auth none)"
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def read_credentials(path: Path) -> str | None:
    """The access key id of the file's ``[ember]`` profile, or None."""
    parser = configparser.ConfigParser()
    try:
        parser.read_string(path.read_text())
    except (OSError, configparser.Error):
        return None
    return parser.get(PROFILE, "aws_access_key_id", fallback=None)


def write_credentials(path: Path, key: AccessKey, secret: str, region: str) -> bool:
    """Write the ``[ember]`` profile unless the file holds exactly it already (mode 0600
    either way). Returns whether it wrote. Whole or not at all: a temporary file renamed."""
    content = _credentials_text(key.access_key_id, secret, region)
    with contextlib.suppress(OSError):
        if path.read_text() == content:
            os.chmod(path, 0o600)
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".credentials-")  # mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True


def _credentials_text(key_id: str, secret: str, region: str) -> str:
    parser = configparser.ConfigParser()
    parser[PROFILE] = {
        "aws_access_key_id": key_id,
        "aws_secret_access_key": secret,
        "region": region,
    }
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def _age(key: AccessKey) -> tuple[str, str]:
    return key.created, key.access_key_id
