"""Where the CLI finds the access key it signs its requests with.

The first source that holds a key wins, in this order:

1. ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``);
2. ``--profile`` / ``AWS_PROFILE`` in ``AWS_SHARED_CREDENTIALS_FILE``
   (``~/.aws/credentials`` when unset): a profile asked for must exist;
3. ``EMBER_CREDENTIALS``, the path of a shared-credentials file (profile ``ember``);
4. ``<data dir>/credentials``, the file ``ember serve`` writes on first start;
5. ``~/.aws/credentials``, profile ``ember``.

The region is the one asked for (``--region``, ``AWS_REGION``), else the
``region`` of the profile the key came from, else us-east-1. Files are read
with botocore's own parser, so they mean what they mean to boto3 and the AWS CLI.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from botocore.configloader import raw_config_parse
from botocore.credentials import EnvProvider
from botocore.exceptions import ConfigParseError

EMBER_PROFILE = "ember"
DEFAULT_REGION = "us-east-1"
DEFAULT_DATA_DIR = Path(".ember-data")
AWS_CREDENTIALS = Path("~/.aws/credentials")


class CredentialsError(Exception):
    """No usable credentials; the message names every place that was looked at."""


@dataclass(frozen=True)
class Credentials:
    """An access key and where it came from (``source``, for messages)."""

    access_key: str
    secret_key: str
    token: str | None
    region: str
    source: str

    def __repr__(self) -> str:
        # The secret never reaches a log or a traceback.
        return f"Credentials({self.access_key!r}, region={self.region!r}, from {self.source})"


@dataclass(frozen=True)
class Lookup:
    """What the command line said; None falls back to the environment."""

    profile: str | None = None
    region: str | None = None
    data_dir: Path | None = None


def find(lookup: Lookup, environ: Mapping[str, str] | None = None) -> Credentials:
    """The credentials of the first source that has some (see the module docstring).

    Raises CredentialsError when none has, or when a source asked for
    explicitly (a profile, ``EMBER_CREDENTIALS``) cannot be used.
    """
    env = os.environ if environ is None else environ
    region = lookup.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    from_env = _from_environment(env, region)
    if from_env is not None:
        return from_env
    looked = ["AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"]
    profile = lookup.profile or env.get("AWS_PROFILE")
    if profile:
        path = Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or AWS_CREDENTIALS).expanduser()
        return _required(path, profile, region)
    explicit = env.get("EMBER_CREDENTIALS")
    if explicit:
        return _required(Path(explicit).expanduser(), EMBER_PROFILE, region)
    data_dir = lookup.data_dir or Path(env.get("EMBER_DATA_DIR") or DEFAULT_DATA_DIR)
    for path in (data_dir / "credentials", AWS_CREDENTIALS.expanduser()):
        found = from_file(path, EMBER_PROFILE, region)
        if found is not None:
            return found
        looked.append(f"{path} [{EMBER_PROFILE}]")
    raise CredentialsError(
        "no credentials found; looked in " + ", ".join(looked) + " (`ember serve` writes "
        "<data dir>/credentials on first start; pass --data-dir or set EMBER_CREDENTIALS)"
    )


def _from_environment(env: Mapping[str, str], region: str | None) -> Credentials | None:
    # EnvProvider reads only the mapping it is given, never os.environ behind our back.
    loaded = EnvProvider(environ=dict(env)).load()
    if loaded is None:
        return None
    frozen = loaded.get_frozen_credentials()
    return Credentials(
        access_key=frozen.access_key,
        secret_key=frozen.secret_key,
        token=frozen.token,
        region=region or DEFAULT_REGION,
        source="the environment",
    )


def _required(path: Path, profile: str, region: str | None) -> Credentials:
    """Profile ``profile`` of ``path``, which the user named: its absence is an error."""
    found = from_file(path, profile, region)
    if found is None:
        raise CredentialsError(f"no access key in profile [{profile}] of {path}")
    return found


def from_file(path: Path, profile: str, region: str | None) -> Credentials | None:
    """Profile ``profile`` of a shared-credentials file; None if the file or key is absent."""
    if not path.is_file():
        return None
    try:
        profiles = raw_config_parse(str(path), parse_subsections=False)
    except ConfigParseError as exc:
        raise CredentialsError(f"cannot parse {path}: {exc}") from exc
    values = profiles.get(profile) or {}
    key, secret = values.get("aws_access_key_id"), values.get("aws_secret_access_key")
    if not key or not secret:
        return None
    return Credentials(
        access_key=key,
        secret_key=secret,
        token=values.get("aws_session_token") or None,
        region=region or values.get("region") or DEFAULT_REGION,
        source=f"{path} [{profile}]",
    )
