"""Where the CLI finds its credentials: each source, and which one wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from ember.cli.credentials import CredentialsError, Lookup, find


def write(path: Path, profile: str, key: str, region: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"[{profile}]", f"aws_access_key_id = {key}", f"aws_secret_access_key = {key}-secret"]
    if region:
        lines.append(f"region = {region}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty home directory, so that ~/.aws/credentials is this test's."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_each_source_in_turn(tmp_path: Path, home: Path) -> None:
    data = tmp_path / "data"
    env: dict[str, str] = {}
    write(home / ".aws" / "credentials", "ember", "HOME-KEY")
    assert find(Lookup(data_dir=data), env).access_key == "HOME-KEY"
    write(data / "credentials", "ember", "DATA-KEY", region="eu-west-1")
    found = find(Lookup(data_dir=data), env)
    assert (found.access_key, found.region) == ("DATA-KEY", "eu-west-1")
    assert find(Lookup(), {"EMBER_DATA_DIR": str(data)}).access_key == "DATA-KEY"
    env["EMBER_CREDENTIALS"] = str(write(tmp_path / "explicit", "ember", "EXPLICIT-KEY"))
    assert find(Lookup(data_dir=data), env).access_key == "EXPLICIT-KEY"
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(write(tmp_path / "shared", "dev", "PROFILE-KEY"))
    assert find(Lookup(data_dir=data, profile="dev"), env).access_key == "PROFILE-KEY"
    assert find(Lookup(data_dir=data), {**env, "AWS_PROFILE": "dev"}).access_key == "PROFILE-KEY"
    env.update(AWS_ACCESS_KEY_ID="ENV-KEY", AWS_SECRET_ACCESS_KEY="env-secret")
    found = find(Lookup(data_dir=data, profile="dev"), env)
    assert (found.access_key, found.secret_key, found.region) == (
        "ENV-KEY",
        "env-secret",
        "us-east-1",
    )


def test_the_region_asked_for_wins_over_the_files(tmp_path: Path, home: Path) -> None:
    write(tmp_path / "credentials", "ember", "KEY", region="eu-west-1")
    assert find(Lookup(data_dir=tmp_path, region="ap-south-1"), {}).region == "ap-south-1"
    assert find(Lookup(data_dir=tmp_path), {"AWS_REGION": "us-west-2"}).region == "us-west-2"


def test_a_profile_asked_for_must_exist(tmp_path: Path, home: Path) -> None:
    write(tmp_path / "data" / "credentials", "ember", "DATA-KEY")
    shared = write(tmp_path / "shared", "dev", "KEY")
    env = {"AWS_SHARED_CREDENTIALS_FILE": str(shared)}
    with pytest.raises(CredentialsError, match=r"profile \[prod\] of .*shared"):
        find(Lookup(data_dir=tmp_path / "data", profile="prod"), env)
    with pytest.raises(CredentialsError, match="nowhere"):
        find(Lookup(data_dir=tmp_path / "data"), {"EMBER_CREDENTIALS": str(tmp_path / "nowhere")})


def test_none_found_names_every_place(tmp_path: Path, home: Path) -> None:
    with pytest.raises(CredentialsError) as caught:
        find(Lookup(data_dir=tmp_path / "data"), {})
    message = str(caught.value)
    assert "AWS_ACCESS_KEY_ID" in message
    assert str(tmp_path / "data" / "credentials") in message
    assert str(home / ".aws" / "credentials") in message


def test_the_secret_stays_out_of_repr(tmp_path: Path, home: Path) -> None:
    write(tmp_path / "credentials", "ember", "KEY")
    assert "KEY-secret" not in repr(find(Lookup(data_dir=tmp_path), {}))
