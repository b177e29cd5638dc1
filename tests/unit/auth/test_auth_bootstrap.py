"""First start: one root key per database, the credentials file, and who may skip auth."""

from __future__ import annotations

import asyncio
import configparser
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from ember.auth.base import AuditEntry
from ember.auth.keys import MASTER_KEY_ENV, load_master_key
from ember.auth.wiring import Auth, check_exposure, is_loopback
from ember.config import Settings
from ember.errors import StartupRefused
from ember.storage import wiring as storage_wiring
from ember.storage.wiring import Storage


async def _started(settings: Settings) -> Auth:
    storage = storage_wiring.build(settings)
    await storage.open()
    auth = build_auth(settings, storage)
    await auth.start()
    return auth


async def _stopped(auth: Auth) -> None:
    await auth.close()
    await auth.storage.close()


class _Dropped:
    """An audit sink that keeps nothing: bootstrap records no change."""

    def record(self, entry: AuditEntry) -> None:
        return None


def build_auth(settings: Settings, storage: Storage) -> Auth:
    return Auth.build(settings, storage, resource_policy_of=lambda arn: None, audit=_Dropped())


def _profile(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read_string(path.read_text())
    return dict(parser["ember"])


def _root_keys(auth: Auth) -> list[str]:
    keys = auth.admin.keys.keys("000000000000")
    return [k.access_key_id for k in keys if k.principal.is_root]


def test_the_first_start_makes_one_root_key_and_a_private_credentials_file(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path / "data", region="eu-west-1")

    async def scenario() -> None:
        first = await _started(settings)
        keys = _root_keys(first)
        await _stopped(first)
        again = await _started(settings)
        assert _root_keys(again) == keys
        assert len(keys) == 1
        assert again.accounts.get("000000000000").name == "default"
        profile = _profile(again.credentials_path)
        assert profile["aws_access_key_id"] == keys[0]
        found = again.admin.keys.lookup(keys[0])
        assert found is not None and profile["aws_secret_access_key"] == found[0]
        assert profile["region"] == "eu-west-1"
        await _stopped(again)

    asyncio.run(scenario())
    path = tmp_path / "data" / "credentials"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_stale_credentials_file_is_rewritten(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")

    async def scenario() -> None:
        await _stopped(await _started(settings))
        path = settings.data_dir / "credentials"
        path.write_text("[ember]\naws_access_key_id = AKIAOLDOLDOLDOLDOLD0\n")
        path.chmod(0o644)
        auth = await _started(settings)
        assert _profile(path)["aws_access_key_id"] == _root_keys(auth)[0]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        await _stopped(auth)

    asyncio.run(scenario())


def test_a_wrong_master_key_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path / "data")

    async def scenario() -> None:
        await _stopped(await _started(settings))
        monkeypatch.setenv(MASTER_KEY_ENV, "A" * 43 + "=")  # 32 zero bytes: not the one used
        storage = storage_wiring.build(settings)
        await storage.open()
        auth = build_auth(settings, storage)
        with pytest.raises(StartupRefused, match="cannot decrypt the stored access keys"):
            await auth.start()
        await storage.close()

    asyncio.run(scenario())


def test_nodes_starting_together_on_one_database_make_one_root_key(
    tmp_path: Path, postgres_url: str
) -> None:
    base = Settings(database_url=postgres_url)
    nodes = [replace(base, data_dir=tmp_path / f"node{i}") for i in range(4)]
    master = tmp_path / "master.key"

    async def scenario() -> None:
        load_master_key(tmp_path)  # made once, given to every node
        started = await asyncio.gather(
            *(_started(replace(n, master_key_file=master)) for n in nodes)
        )
        keys = {tuple(_root_keys(auth)) for auth in started}
        assert len(keys) == 1 and len(next(iter(keys))) == 1
        files = {_profile(auth.credentials_path)["aws_access_key_id"] for auth in started}
        assert files == {next(iter(keys))[0]}
        for auth in started:
            await _stopped(auth)

    asyncio.run(scenario())


def test_auth_none_reads_no_master_key_and_makes_no_credentials(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", auth="none")

    async def scenario() -> None:
        auth = await _started(settings)
        assert auth.keys is None and auth.verifier is None
        assert auth.accounts.get("000000000000").name == "default"
        await _stopped(auth)

    asyncio.run(scenario())
    assert not (tmp_path / "data" / "master.key").exists()
    assert not (tmp_path / "data" / "credentials").exists()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost"])
def test_auth_none_is_allowed_on_loopback(host: str) -> None:
    assert is_loopback(host)
    check_exposure(Settings(host=host, auth="none"))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "192.168.0.9", "ember.example"])
def test_auth_none_refuses_any_other_address(host: str) -> None:
    with pytest.raises(StartupRefused, match="--auth none") as refused:
        check_exposure(Settings(host=host, auth="none"))
    assert "\n" not in refused.value.message
    check_exposure(Settings(host=host, auth="sigv4"))
