"""The users' code bucket (``ember.storage.s3_code.S3CodeSource``) against a real S3 server."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import boto3
import pytest

from conftest import S3Endpoint
from ember.errors import InvalidParameterValue, StorageUnavailable
from ember.storage.s3_code import S3CodeSource


@pytest.fixture
def bucket(s3_endpoint: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_endpoint.key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_endpoint.secret)
    client = boto3.client("s3", endpoint_url=s3_endpoint.url, region_name="us-east-1")
    name = f"code-source-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=name)
    yield client, name
    client.close()


def fetch(endpoint: str, *args: Any) -> bytes:
    async def run() -> bytes:
        source = S3CodeSource(endpoint, "us-east-1")
        try:
            with await source.fetch(*args) as file:
                return file.read()
        finally:
            await source.close()

    return asyncio.run(run())


def test_an_object_is_read_whole_within_the_limit(s3_endpoint: S3Endpoint, bucket: Any) -> None:
    client, name = bucket
    client.put_object(Bucket=name, Key="k", Body=b"x" * 3_000_000)
    assert fetch(s3_endpoint.url, name, "k", None, 3_000_000) == b"x" * 3_000_000


def test_an_object_over_the_limit_is_refused(s3_endpoint: S3Endpoint, bucket: Any) -> None:
    client, name = bucket
    client.put_object(Bucket=name, Key="big", Body=b"x" * 101)
    with pytest.raises(InvalidParameterValue, match="larger than the 100 bytes"):
        fetch(s3_endpoint.url, name, "big", None, 100)


def test_s3_refusals_carry_s3s_code(s3_endpoint: S3Endpoint, bucket: Any) -> None:
    _, name = bucket
    with pytest.raises(InvalidParameterValue, match="S3 Error Code: NoSuchKey"):
        fetch(s3_endpoint.url, name, "absent", None, 100)


def test_a_store_that_does_not_answer_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(StorageUnavailable):
        fetch("http://127.0.0.1:9", "bucket", "key", None, 100)
