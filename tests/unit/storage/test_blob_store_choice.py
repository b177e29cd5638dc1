"""Settings name the blob store; a wrong name or S3 spec is refused, naming what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from ember.config import Settings
from ember.storage.blobs import blob_store
from ember.storage.localfs import LocalPackageStore
from ember.storage.pg_blobs import PostgresPackageStore
from ember.storage.postgres import Database
from ember.storage.s3 import S3PackageStore, S3Spec, parse_spec


def test_the_default_follows_the_mode(tmp_path: Path) -> None:
    assert isinstance(blob_store(Settings(), None, tmp_path), LocalPackageStore)
    clustered = Settings(database_url="postgresql://u@h/db")
    store = blob_store(clustered, Database("postgresql://u@h/db"), tmp_path)
    assert isinstance(store, PostgresPackageStore)


def test_postgresql_blobs_need_a_database(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--blobs postgresql needs --database"):
        blob_store(Settings(blobs="postgresql"), None, tmp_path)


def test_s3_is_chosen_by_its_spec(tmp_path: Path) -> None:
    settings = Settings(blobs="s3://code?endpoint=http://127.0.0.1:9000")
    store = blob_store(settings, None, tmp_path)
    assert isinstance(store, S3PackageStore)
    assert store.spec == S3Spec("code", "http://127.0.0.1:9000")


def test_an_unknown_store_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown blob store 'ftp://x'"):
        blob_store(Settings(blobs="ftp://x"), None, tmp_path)


def test_a_full_spec() -> None:
    spec = parse_spec(
        "s3://code.blobs?endpoint=https://s3.example:8443/&region=eu-west-1&prefix=/a/b"
    )
    assert spec == S3Spec("code.blobs", "https://s3.example:8443", "eu-west-1", "a/b/")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("s3:/code", "is not of the form s3://BUCKET"),
        ("https://code?endpoint=http://h", "is not of the form s3://BUCKET"),
        ("s3://Code_Blobs?endpoint=http://h", "'Code_Blobs' is not a valid bucket name"),
        ("s3://code/dir?endpoint=http://h", "unexpected '/dir' after the bucket"),
        ("s3://code", "no endpoint"),
        ("s3://code?endpoint=localhost:9000", "endpoint 'localhost:9000' is not an http"),
        ("s3://code?endpoint=http://h&bucket=x", "unknown parameter 'bucket'"),
        ("s3://code?endpoint=http://h&region=a&region=b", "parameter 'region' given twice"),
    ],
)
def test_a_wrong_spec_names_its_bad_part(text: str, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        parse_spec(text)
