"""A data dir written by the first release opens after the upgrade with everything in it.

The fixture (tests/fixtures/datadir-v1.tar.gz, made by make_datadir_v1.py
beside it with the code of commit 8236992) holds functions, versions, an
alias with routing, a layer, a URL config, event-invoke configs, reserved
concurrency, an MCP tool, a manifest object, three queued events and a dead
letter; datadir-v1.json says what to expect.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import EMBER, Server, lambda_client, wait_until

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXPECTED: dict[str, Any] = json.loads((FIXTURES / "datadir-v1.json").read_text())


def ember(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EMBER_ENDPOINT": ""}
    result = subprocess.run([EMBER, *args], env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, f"ember {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result


def db_status(data_dir: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        ember("db", "status", "--data-dir", str(data_dir), "--json").stdout
    )
    return document


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    target = tmp_path / "data"
    with tarfile.open(FIXTURES / "datadir-v1.tar.gz") as tar:
        tar.extractall(target, filter="data")
    # Its events were queued when the fixture was made; Lambda drops an event older
    # than 6 hours (EventAgeExceeded), so date them to now, as if queued just before
    # the upgrade: the test must not depend on when it runs.
    with sqlite3.connect(target / "queue.sqlite3") as db:
        db.execute("UPDATE events SET enqueued_at = ?, visible_at = ?", (time.time(),) * 2)
    db.close()
    return target


def dead_letters(server: Server, function: str) -> list[dict[str, Any]]:
    path = f"/_ember/functions/{function}/dead-letters?payload=true"
    response = server.http.get(path, timeout=5)
    response.raise_for_status()
    letters: list[dict[str, Any]] = response.json()["deadLetters"]
    return letters


def check_metadata(server: Server) -> None:
    aws = lambda_client(server)
    names = {f["FunctionName"] for f in aws.list_functions()["Functions"]}
    assert set(EXPECTED["functions"]) <= names
    versions = aws.list_versions_by_function(FunctionName="alpha")["Versions"]
    assert {v["Version"] for v in versions} == {"$LATEST", *EXPECTED["versions"]}
    for version, code in EXPECTED["versions"].items():
        answer = aws.invoke(FunctionName="alpha", Qualifier=version, Payload=b"{}")
        body = json.loads(answer["Payload"].read())
        assert (body["code"], body["layer"]) == (code, "layer-v1")
    alias = aws.get_alias(FunctionName="alpha", Name=EXPECTED["alias"]["name"])
    assert alias["FunctionVersion"] == EXPECTED["alias"]["version"]
    weights = alias["RoutingConfig"]["AdditionalVersionWeights"]
    assert weights == EXPECTED["alias"]["weights"]
    config = aws.get_function_configuration(FunctionName="alpha")
    assert [layer["Arn"] for layer in config["Layers"]] == [EXPECTED["layer"]["arn"]]
    layers = aws.list_layer_versions(LayerName=EXPECTED["layer"]["name"])["LayerVersions"]
    assert [layer["Version"] for layer in layers] == [EXPECTED["layer"]["version"]]
    url_config = aws.get_function_url_config(FunctionName="alpha")
    assert url_config["AuthType"] == EXPECTED["urlAuthType"]
    invoke_config = aws.get_function_event_invoke_config(FunctionName="alpha")
    assert invoke_config["DestinationConfig"]["OnSuccess"]["Destination"].endswith(":sink")
    assert aws.get_function_event_invoke_config(FunctionName="sink")["MaximumRetryAttempts"] == 0
    concurrency = aws.get_function_concurrency(FunctionName="alpha")
    assert concurrency["ReservedConcurrentExecutions"] == EXPECTED["reservedConcurrency"]
    tool = server.http.get("/_ember/functions/alpha/tool", timeout=5).json()
    assert tool["toolName"] == EXPECTED["tool"]
    listed = json.loads(
        subprocess.run(
            [EMBER, "get", "functions", "-o", "json"],
            env=server.cli_env(),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    )["items"]
    assert EXPECTED["manifestFunction"] in {item["metadata"]["name"] for item in listed}
    beta = aws.invoke(FunctionName=EXPECTED["manifestFunction"], Payload=b'{"x": 1}')
    assert json.loads(beta["Payload"].read())["fn"] == "beta"


def test_a_first_release_data_dir_opens_with_everything_in_it(
    data_dir: Path, spawn_server: Callable[..., Server]
) -> None:
    before = db_status(data_dir)
    assert before["upgradeNeeded"] is True
    stored = {s["name"]: (s["stored"], s["known"]) for s in before["schemas"]}
    stores = ("layers", "limits", "manifests", "metadata", "queue", "schedules", "tools", "urls")
    assert stored == {f"{store}.sqlite3": (0, 1) for store in stores}

    server = spawn_server(data_dir, "--pollers", "0")
    check_metadata(server)
    letter = dead_letters(server, "sink")
    assert [d["requestId"] for d in letter] == [EXPECTED["deadLetter"]["requestId"]]
    assert server.stop() == 0
    after = db_status(data_dir)
    assert after["upgradeNeeded"] is False
    assert all(s["stored"] == s["known"] for s in after["schemas"])

    # Pollers on: each queued event reaches alpha, whose OnSuccess record goes to
    # sink, which fails without retries, so the record ends as a dead letter.
    server = spawn_server(data_dir, "--pollers", "1", "--retry-base-delay", "0")
    queued = set(EXPECTED["queued"]["requestIds"])
    delivered = wait_until(
        lambda: (
            {d["payload"]["requestContext"]["requestId"] for d in dead_letters(server, "sink")[1:]}
            >= queued
            or None
        ),
        timeout=60,
    )
    assert delivered
    assert dead_letters(server, "sink")[0]["requestId"] == EXPECTED["deadLetter"]["requestId"]


def test_upgrade_by_hand_then_a_newer_schema_is_refused(
    data_dir: Path, spawn_server: Callable[..., Server]
) -> None:
    upgraded = ember("db", "upgrade", "--data-dir", str(data_dir)).stdout
    assert "metadata.sqlite3: migrated from version 0 to 1" in upgraded
    assert db_status(data_dir)["upgradeNeeded"] is False
    assert "already at version 1" in ember("db", "upgrade", "--data-dir", str(data_dir)).stdout

    with sqlite3.connect(data_dir / "urls.sqlite3") as db:
        db.execute("PRAGMA user_version = 7")
    refused = ember("db", "upgrade", "--data-dir", str(data_dir), check=False)
    assert refused.returncode != 0
    assert "urls.sqlite3 has schema version 7, newer than this ember knows (1)" in refused.stderr
    for name in ("urls.sqlite3", "queue.sqlite3"):  # opened in the lifespan; while building
        with sqlite3.connect(data_dir / name) as db:
            db.execute("PRAGMA user_version = 7")
        server = Server(data_dir, extra_args=["--pollers", "0"])
        with pytest.raises(AssertionError, match=rf"{name} has schema version 7") as refusal:
            server.start()
        assert "Traceback" not in str(refusal.value)
        with sqlite3.connect(data_dir / name) as db:
            db.execute("PRAGMA user_version = 1")


def test_db_status_and_upgrade_on_a_fresh_database(postgres_url: str) -> None:
    from ember import dbadmin

    components = [m.component for m in dbadmin.pg_migrations()]
    before = json.loads(ember("db", "status", "--database", postgres_url, "--json").stdout)
    assert [s["name"] for s in before["schemas"]] == components
    assert before["upgradeNeeded"] is bool(components)
    ember("db", "upgrade", "--database", postgres_url)
    after = json.loads(ember("db", "status", "--database", postgres_url, "--json").stdout)
    assert after["upgradeNeeded"] is False
    assert all(s["stored"] == s["known"] for s in after["schemas"])
    assert "up to date" in ember("db", "status", "--database", postgres_url).stdout
