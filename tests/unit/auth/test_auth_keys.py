"""The access-key store over every embedded MetadataStore, and the master key's sources."""

from __future__ import annotations

import asyncio
import base64
import re
import stat
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from ember.auth.keys import (
    MASTER_KEY_ENV,
    KeyStore,
    load_master_key,
    new_access_key_id,
    new_secret,
)
from ember.auth.principals import Principal
from ember.auth.sigv4 import HttpRequest, Verifier
from ember.errors import ResourceNotFound, StartupRefused
from ember.storage.base import MetadataStore
from ember.storage.memory import MemoryMetadataStore
from ember.storage.sqlite import SqliteMetadataStore

MASTER = bytes(range(32))
OTHER_MASTER = bytes(range(1, 33))
ALICE = Principal("123456789012", "alice")
ROOT = Principal("123456789012")
BOB = Principal("210987654321", "bob")

StoreFactory = Callable[[], MetadataStore]


@pytest.fixture(params=["sqlite", "memory"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A factory of stores over the same documents: each call is the store a restarted
    node opens. Every store it made is closed at the end."""
    made: list[MetadataStore] = []
    memory = MemoryMetadataStore()

    def factory() -> MetadataStore:
        store: MetadataStore = (
            SqliteMetadataStore(tmp_path / "keys.sqlite3") if request.param == "sqlite" else memory
        )
        made.append(store)
        return store

    yield factory
    for store in made:
        asyncio.run(store.close())


async def _opened(store: MetadataStore, master: bytes = MASTER) -> KeyStore:
    keys = KeyStore(store, master)
    await keys.open()
    return keys


def test_new_keys_have_aws_shapes() -> None:
    ids = {new_access_key_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"AKIA[A-Z2-7]{16}", i) for i in ids)
    assert all(re.fullmatch(r"[A-Za-z0-9+/]{40}", new_secret()) for _ in range(200))


def test_secrets_round_trip_through_a_restart(new_store: StoreFactory) -> None:
    async def scenario() -> None:
        keys = await _opened(new_store())
        alice, alice_secret = await keys.create(ALICE)
        root, root_secret = await keys.create(ROOT)
        await keys.create(BOB)
        again = await _opened(new_store())
        assert again.lookup(alice.access_key_id) == (alice_secret, ALICE)
        assert again.lookup(root.access_key_id) == (root_secret, ROOT)
        assert [k.principal for k in again.keys("123456789012")] == sorted(
            [ALICE, ROOT], key=lambda p: {ALICE: alice, ROOT: root}[p].access_key_id
        )
        assert len(again.keys()) == 3
        assert again.lookup("AKIAUNKNOWNUNKNOWN00") is None

    asyncio.run(scenario())


def test_secrets_are_stored_encrypted(new_store: StoreFactory, tmp_path: Path) -> None:
    async def scenario() -> tuple[str, dict[str, str]]:
        keys = await _opened(new_store())
        _, secret = await keys.create(ALICE)
        return secret, await new_store().load_all()

    secret, documents = asyncio.run(scenario())
    assert secret not in "".join(documents.values())
    assert base64.b64encode(secret.encode()).decode() not in "".join(documents.values())
    for path in tmp_path.glob("*"):
        assert secret.encode() not in path.read_bytes()


def test_a_wrong_master_key_is_refused_without_showing_secrets(new_store: StoreFactory) -> None:
    async def scenario() -> str:
        keys = await _opened(new_store())
        _, secret = await keys.create(ALICE)
        with pytest.raises(StartupRefused) as refused:
            await _opened(new_store(), OTHER_MASTER)
        assert secret not in refused.value.message
        return refused.value.message

    message = asyncio.run(scenario())
    assert "the master key cannot decrypt the stored access keys" in message


def test_a_wrong_master_key_is_refused_even_before_any_key_exists(
    new_store: StoreFactory,
) -> None:
    async def scenario() -> None:
        await _opened(new_store())  # the first start writes the check record
        with pytest.raises(StartupRefused):
            await _opened(new_store(), OTHER_MASTER)

    asyncio.run(scenario())


def test_a_ciphertext_moved_to_another_key_does_not_decrypt(new_store: StoreFactory) -> None:
    async def scenario() -> None:
        keys = await _opened(new_store())
        first, _ = await keys.create(ALICE)
        second, _ = await keys.create(BOB)
        store = new_store()
        documents = await store.load_all()
        swapped = orjson.loads(documents[first.access_key_id])
        swapped["Secret"] = orjson.loads(documents[second.access_key_id])["Secret"]
        await store.put(first.access_key_id, orjson.dumps(swapped).decode())
        with pytest.raises(StartupRefused):
            await _opened(new_store())

    asyncio.run(scenario())


def test_deleted_keys_are_gone_after_a_restart(new_store: StoreFactory) -> None:
    async def scenario() -> None:
        keys = await _opened(new_store())
        key, _ = await keys.create(ALICE)
        await keys.delete(key.access_key_id)
        assert keys.lookup(key.access_key_id) is None
        with pytest.raises(ResourceNotFound):
            await keys.delete(key.access_key_id)
        assert (await _opened(new_store())).keys() == []

    asyncio.run(scenario())


def test_the_public_half_never_shows_the_secret(new_store: StoreFactory) -> None:
    async def scenario() -> None:
        keys = await _opened(new_store())
        key, secret = await keys.create(ALICE)
        assert secret not in repr(key) and secret not in repr(keys.keys())

    asyncio.run(scenario())


def test_a_stored_key_signs_requests_the_verifier_accepts(new_store: StoreFactory) -> None:
    async def scenario() -> None:
        keys = await _opened(new_store())
        key, secret = await keys.create(ALICE)
        request = AWSRequest("GET", "http://127.0.0.1:9000/2015-03-31/functions")
        SigV4Auth(Credentials(key.access_key_id, secret), "lambda", "us-east-1").add_auth(request)
        headers = [(b"host", b"127.0.0.1:9000")] + [
            (k.lower().encode(), v.encode()) for k, v in request.headers.items()
        ]
        received = HttpRequest("GET", "/2015-03-31/functions", "", headers)
        restarted = await _opened(new_store())
        verifier = Verifier(restarted.lookup, region="us-east-1")
        assert verifier.verify(received) == ALICE

    asyncio.run(scenario())


# --- The master key ---------------------------------------------------------------------


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def test_the_environment_wins(tmp_path: Path) -> None:
    key_file = tmp_path / "given.key"
    key_file.write_text(_b64(OTHER_MASTER))
    key_file.chmod(0o600)
    loaded = load_master_key(tmp_path, key_file=key_file, environ={MASTER_KEY_ENV: _b64(MASTER)})
    assert loaded == MASTER
    assert not (tmp_path / "master.key").exists()


def test_a_key_file_comes_next(tmp_path: Path) -> None:
    key_file = tmp_path / "given.key"
    key_file.write_text(_b64(OTHER_MASTER) + "\n")
    key_file.chmod(0o600)
    assert load_master_key(tmp_path, key_file=key_file, environ={}) == OTHER_MASTER


def test_otherwise_a_private_file_is_created_once_in_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = load_master_key(data, environ={})
    path = data / "master.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 32
    assert load_master_key(data, environ={}) == first
    assert [p.name for p in data.iterdir()] == ["master.key"]


def test_nodes_starting_together_create_one_master_key(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        loaded = set(pool.map(lambda _: load_master_key(tmp_path, environ={}), range(16)))
    assert len(loaded) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]


@pytest.mark.parametrize(
    "value",
    ["", "not base64!", _b64(b"short"), _b64(bytes(33))],
    ids=["empty", "garbage", "short", "long"],
)
def test_a_bad_environment_key_is_refused_without_echoing_it(tmp_path: Path, value: str) -> None:
    with pytest.raises(StartupRefused) as refused:
        load_master_key(tmp_path, environ={MASTER_KEY_ENV: value})
    assert MASTER_KEY_ENV in refused.value.message
    assert not value or value not in refused.value.message


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "given.key"
    key_file.write_text(_b64(MASTER))
    key_file.chmod(0o644)
    with pytest.raises(StartupRefused) as refused:
        load_master_key(tmp_path, key_file=key_file, environ={})
    assert "chmod 600" in refused.value.message


def test_a_missing_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StartupRefused) as refused:
        load_master_key(tmp_path, key_file=tmp_path / "absent.key", environ={})
    assert "--master-key-file" in refused.value.message


def test_a_wrong_size_master_key_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        KeyStore(MemoryMetadataStore(), b"short")


def test_the_process_environment_is_read_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, _b64(OTHER_MASTER))
    assert load_master_key(tmp_path) == OTHER_MASTER


def test_derived_keys_are_per_master_key_and_purpose() -> None:
    one = KeyStore(MemoryMetadataStore(), MASTER)
    same = KeyStore(MemoryMetadataStore(), MASTER)
    other = KeyStore(MemoryMetadataStore(), bytes(32))
    assert one.derive("console") == same.derive("console")  # every node agrees
    assert one.derive("console") != one.derive("other purpose")
    assert one.derive("console") != other.derive("console")
    assert MASTER not in one.derive("console") and len(one.derive("console")) == 32
