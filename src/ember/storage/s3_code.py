"""Code packages read from the users' own S3-compatible bucket (``--code-s3-endpoint``).

SAM, CDK, Terraform and the Serverless Framework upload a package to S3 and
hand Lambda ``S3Bucket``/``S3Key``; this reads it, as Lambda does, with the
server's credentials (boto3's chain: ``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``, ...).
The object's size is judged from GetObject's headers before its body is read,
and its body is counted while it streams into a spooled file, so a store that
lies about the length cannot make ember hold more than the limit. boto3
blocks; every call runs in a thread.
"""

from __future__ import annotations

import asyncio
import tempfile
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from ember.errors import InvalidParameterValue, StorageUnavailable
from ember.storage.s3 import client

# Packages up to this size stay in memory; larger ones go to a temporary file.
SPOOL_IN_MEMORY = 1 << 20
_CHUNK = 1 << 20
# S3's own messages for the errors a wrong location gives. Lambda quotes S3's message;
# compatible stores word theirs differently, so the answer is S3's whatever the store.
_S3_MESSAGES = {
    "NoSuchKey": "The specified key does not exist.",
    "NoSuchBucket": "The specified bucket does not exist",
    "NoSuchVersion": "The specified version does not exist.",
    "AccessDenied": "Access Denied",
}


def _refusal(exc: ClientError) -> InvalidParameterValue:
    """Lambda's answer to a GetObject S3 refused, with S3's code and message."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
    message = _S3_MESSAGES.get(code) or str(error.get("Message") or "")
    return InvalidParameterValue(
        f"Error occurred while GetObject. S3 Error Code: {code}. S3 Error Message: {message}"
    )


class S3CodeSource:
    """See ``ember.storage.base.CodeSource``: GetObject on ``endpoint``."""

    def __init__(self, endpoint: str, region: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._client: Any = client(self.endpoint, region)

    async def fetch(self, bucket: str, key: str, version: str | None, limit: int) -> IO[bytes]:
        try:
            return await asyncio.to_thread(self._download, bucket, key, version, limit)
        except ClientError as exc:
            raise _refusal(exc) from None
        except NoCredentialsError:
            raise StorageUnavailable(
                f"No credentials for the code store {self.endpoint}: start ember serve with "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) set."
            ) from None
        except BotoCoreError as exc:
            raise StorageUnavailable(f"The code store {self.endpoint} failed: {exc}") from None

    def _download(self, bucket: str, key: str, version: str | None, limit: int) -> IO[bytes]:
        options = {"VersionId": version} if version else {}
        answer = self._client.get_object(Bucket=bucket, Key=key, **options)
        body = answer["Body"]
        try:
            size = int(answer.get("ContentLength") or 0)
            if size > limit:
                raise _too_large(bucket, key, limit)
            return _spooled(body, bucket, key, limit)
        finally:
            body.close()

    async def close(self) -> None:
        self._client.close()


def _spooled(body: Any, bucket: str, key: str, limit: int) -> IO[bytes]:
    """``body`` read into a spooled file (at its start), never past ``limit`` bytes."""
    # Not a `with`: on success the file is handed on, open.
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
    try:
        written = 0
        while chunk := body.read(_CHUNK):
            written += len(chunk)
            if written > limit:
                raise _too_large(bucket, key, limit)
            spool.write(chunk)
        spool.seek(0)
        return spool
    except BaseException:
        spool.close()
        raise


def _too_large(bucket: str, key: str, limit: int) -> InvalidParameterValue:
    return InvalidParameterValue(
        f"The object s3://{bucket}/{key} is larger than the {limit} bytes a package may be."
    )
