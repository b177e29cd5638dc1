"""Code packages and layer zips in any S3-compatible object store.

Named by a spec, ``s3://BUCKET?endpoint=URL[&region=R][&prefix=P]``; objects
are ``<prefix>packages/<digest>.zip``. Credentials come from boto3's own
chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``~/.aws``, instance
roles), never from the spec, so that no secret ends up in a command line.
boto3 blocks; every call runs in a thread.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from ember.errors import StartupRefused, StorageUnavailable
from ember.storage.base import PackageData
from ember.storage.digests import checked

T = TypeVar("T")

SPEC_FORM = "s3://BUCKET?endpoint=URL[&region=REGION][&prefix=PREFIX]"
_PARAMETERS = ("endpoint", "region", "prefix")
# S3's bucket naming rules, the ones every compatible store enforces too.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# Codes S3 answers for a missing key: GetObject's NoSuchKey, HEAD's bare 404.
_MISSING = {"NoSuchKey", "404", "NotFound"}
_NO_BUCKET = {"NoSuchBucket", "404", "NotFound"}


@dataclass(frozen=True)
class S3Spec:
    """Where the blobs live; ``prefix`` is empty or ends with ``/``."""

    bucket: str
    endpoint: str
    region: str | None = None
    prefix: str = ""

    def __str__(self) -> str:
        return f"s3://{self.bucket} at {self.endpoint}"


def parse_spec(text: str) -> S3Spec:
    """The spec ``text`` names; ValueError naming the part that is wrong."""
    parts = urlsplit(text)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"blob store {text!r} is not of the form {SPEC_FORM}")
    if not _BUCKET.fullmatch(parts.netloc) or ".." in parts.netloc:
        raise ValueError(
            f"blob store {text!r}: {parts.netloc!r} is not a valid bucket name "
            "(3-63 lowercase letters, digits, dots and hyphens)"
        )
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError(
            f"blob store {text!r}: unexpected {parts.path or '#' + parts.fragment!r} "
            "after the bucket (use &prefix= for a key prefix)"
        )
    params = _parameters(text, parts.query)
    endpoint = params.get("endpoint", "")
    if not endpoint:
        raise ValueError(f"blob store {text!r}: no endpoint; the form is {SPEC_FORM}")
    target = urlsplit(endpoint)
    if target.scheme not in ("http", "https") or not target.hostname:
        raise ValueError(
            f"blob store {text!r}: endpoint {endpoint!r} is not an http(s)://HOST[:PORT] URL"
        )
    prefix = params.get("prefix", "").lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return S3Spec(parts.netloc, endpoint.rstrip("/"), params.get("region") or None, prefix)


def _parameters(text: str, query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in _PARAMETERS:
            raise ValueError(
                f"blob store {text!r}: unknown parameter {name!r} (known: {', '.join(_PARAMETERS)})"
            )
        if name in params:
            raise ValueError(f"blob store {text!r}: parameter {name!r} given twice")
        params[name] = value
    return params


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _describe(exc: ClientError | BotoCoreError) -> str:
    """What went wrong, in words an operator can act on."""
    if isinstance(exc, NoCredentialsError):
        return (
            "no credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or AWS_PROFILE with ~/.aws/credentials)"
        )
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', '?')} {error.get('Message', '')}".rstrip()
    return str(exc)


def client(endpoint: str, region: str | None) -> Any:
    """A boto3 S3 client of ``endpoint`` as every compatible store needs it. Path-style
    addressing: stores on an IP or a plain host name have no per-bucket DNS names.
    Checksums only where S3 requires them: not every compatible store understands
    botocore's default CRC32 headers. A session of its own: boto3's default session
    is not safe across threads."""
    config = Config(
        s3={"addressing_style": "path"},
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=5,
        read_timeout=60,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=region, config=config
    )


class S3PackageStore:
    """See ``ember.storage.base.PackageStore``. ``open`` before use, ``close`` after."""

    def __init__(self, spec: S3Spec) -> None:
        self.spec = spec
        self._client = client(spec.endpoint, spec.region)

    def _key(self, digest: str) -> str:
        return f"{self.spec.prefix}packages/{checked(digest)}.zip"

    async def open(self) -> None:
        """Check the bucket answers, creating it if missing; StartupRefused saying why not."""
        try:
            await asyncio.to_thread(self._ensure_bucket)
        except (ClientError, BotoCoreError) as exc:
            raise StartupRefused(
                f"cannot use the blob store {self.spec}: {_describe(exc)}"
            ) from None

    def _ensure_bucket(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.spec.bucket)
            return
        except ClientError as exc:
            if _code(exc) not in _NO_BUCKET:
                raise
        options: dict[str, Any] = {}
        if self.spec.region and self.spec.region != "us-east-1":
            options["CreateBucketConfiguration"] = {"LocationConstraint": self.spec.region}
        self._client.create_bucket(Bucket=self.spec.bucket, **options)

    async def close(self) -> None:
        """Release the client's connections. Idempotent."""
        self._client.close()

    async def put(self, digest: str, data: PackageData) -> None:
        key = self._key(digest)
        # One PUT is atomic: readers see the whole object or none. Skip the
        # upload (up to 50 MB) when the package is stored already. A file is
        # given to botocore as it is: it reads (and hashes) it in chunks.
        if not await self._call(self._exists, key):
            if not isinstance(data, bytes):
                data.seek(0)
            await self._call(self._client.put_object, Bucket=self.spec.bucket, Key=key, Body=data)

    def _exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.spec.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise
        return True

    async def get(self, digest: str) -> bytes:
        data = await self._call(self._read, self._key(digest))
        if data is None:
            raise KeyError(digest)
        return data

    def _read(self, key: str) -> bytes | None:
        try:
            answer = self._client.get_object(Bucket=self.spec.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        body: bytes = answer["Body"].read()
        return body

    async def delete(self, digest: str) -> None:
        try:
            key = self._key(digest)
        except KeyError:
            return
        # S3 answers a delete of a missing key with success.
        await self._call(self._client.delete_object, Bucket=self.spec.bucket, Key=key)

    async def _call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._translated():
            return await asyncio.to_thread(function, *args, **kwargs)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """botocore's errors as StorageUnavailable naming the store; KeyError passes."""
        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            raise StorageUnavailable(
                f"The blob store {self.spec} failed: {_describe(exc)}"
            ) from exc
