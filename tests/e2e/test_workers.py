"""The operator's view of worker hosts: `GET /_ember/workers`, drain, `ember workers`.

A real `ember serve` on a fresh PostgreSQL; the worker rows are written
through the Membership itself, as `ember worker` writes them, and aged in
the table where a test needs a silent one.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from conftest import EMBER, Server, signed_http
from ember.cli.credentials import Credentials
from ember.scheduling.base import WorkerInfo, WorkerLoad
from ember.scheduling.membership_postgres import PostgresMembership
from ember.storage.postgres import Database

Spawn = Callable[..., Server]


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EMBER, *args],
        env=server.cli_env(COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=60,
    )


def register(url: str, *workers: WorkerInfo) -> None:
    async def main() -> None:
        database = Database(url, min_size=1, max_size=1)
        await database.open()
        try:
            for info in workers:
                await PostgresMembership(database).register(info)
        finally:
            await database.close()

    asyncio.run(main())


def heartbeat(url: str, worker_id: str) -> bool | None:
    async def main() -> bool | None:
        database = Database(url, min_size=1, max_size=1)
        await database.open()
        try:
            return await PostgresMembership(database).heartbeat(worker_id, WorkerLoad())
        finally:
            await database.close()

    return asyncio.run(main())


def silence(url: str, worker_id: str, seconds: float) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE workers SET heartbeat = now() - make_interval(secs => %s) WHERE worker_id = %s",
            (seconds, worker_id),
        )


def worker(worker_id: str, address: str, **load: int) -> WorkerInfo:
    return WorkerInfo(
        worker_id,
        address,
        memory_mb=4096,
        max_sandboxes=8,
        runtimes=("python3.11", "provided.al2023"),
        isolation="full",
        load=WorkerLoad(**load),
    )


@pytest.fixture
def cluster_node(spawn_server: Spawn, tmp_path: Path, postgres_url: str) -> Iterator[Server]:
    """A node on its own database, with three workers registered: one busy, one
    silent for a minute, one idle."""
    node = spawn_server(tmp_path / "node", "--database", postgres_url)
    register(
        postgres_url,
        worker("w-busy", "10.77.0.2:9901", sandboxes=3, busy=2, memory_reserved_mb=384),
        worker("w-gone", "10.77.0.3:9901"),
        worker("w-idle", "10.77.0.4:9901"),
    )
    silence(postgres_url, "w-gone", 60)
    yield node


def test_the_api_lists_each_worker_with_its_state_and_load(cluster_node: Server) -> None:
    response = cluster_node.http.get("/_ember/workers")
    assert response.status_code == 200
    body = response.json()
    assert "note" not in body
    listed = {w["id"]: w for w in body["workers"]}
    assert list(listed) == ["w-busy", "w-gone", "w-idle"]
    assert {w: listed[w]["state"] for w in listed} == {
        "w-busy": "live",
        "w-gone": "silent",
        "w-idle": "live",
    }
    busy = listed["w-busy"]
    assert busy["address"] == "10.77.0.2:9901"
    assert (busy["sandboxes"], busy["busy"], busy["maxSandboxes"]) == (3, 2, 8)
    assert (busy["memoryReservedMB"], busy["memoryMB"]) == (384, 4096)
    assert busy["runtimes"] == ["python3.11", "provided.al2023"]
    assert busy["isolation"] == "full"
    assert busy["lastHeartbeatSecondsAgo"] < 60 <= listed["w-gone"]["lastHeartbeatSecondsAgo"]
    assert busy["started"].startswith("20")


def test_a_drained_worker_is_listed_draining_and_told_so_by_its_heartbeat(
    cluster_node: Server, postgres_url: str
) -> None:
    response = cluster_node.http.post("/_ember/workers/w-idle/drain")
    assert response.status_code == 200
    assert (response.json()["id"], response.json()["state"]) == ("w-idle", "draining")
    assert heartbeat(postgres_url, "w-idle") is True
    assert heartbeat(postgres_url, "w-busy") is False
    states = {
        w["id"]: w["state"] for w in cluster_node.http.get("/_ember/workers").json()["workers"]
    }
    assert states["w-idle"] == "draining"


def test_draining_an_unknown_worker_is_a_404(cluster_node: Server) -> None:
    response = cluster_node.http.post("/_ember/workers/nobody/drain")
    assert response.status_code == 404
    assert response.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    assert response.json()["Message"] == "Worker not found: nobody"


def test_the_cli_shows_the_workers_as_a_table_and_as_json(cluster_node: Server) -> None:
    table = cli(cluster_node, "workers", "ls")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "ADDRESS", "STATE"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"w-busy", "w-gone", "w-idle"}
    assert "live" in rows["w-busy"] and "3/8" in rows["w-busy"] and "384/4096" in rows["w-busy"]
    assert "silent 6" in rows["w-gone"]  # silent 60 s or more
    raw = cli(cluster_node, "workers", "ls", "--json")
    assert [w["id"] for w in json.loads(raw.stdout)["workers"]] == ["w-busy", "w-gone", "w-idle"]


def test_the_cli_drains_a_worker_and_names_an_unknown_one(cluster_node: Server) -> None:
    drained = cli(cluster_node, "workers", "drain", "w-busy")
    assert drained.returncode == 0, drained.stderr
    assert "w-busy is draining" in drained.stdout
    assert "2 call(s) in flight" in drained.stdout
    assert "draining" in cli(cluster_node, "workers", "ls").stdout
    unknown = cli(cluster_node, "workers", "drain", "nobody")
    assert unknown.returncode != 0
    assert "Worker not found: nobody" in unknown.stderr


def test_an_embedded_node_lists_no_workers_and_says_why(
    spawn_server: Spawn, tmp_path: Path
) -> None:
    node = spawn_server(tmp_path / "embedded", "--database", "")
    body = node.http.get("/_ember/workers").json()
    assert body["workers"] == []
    assert "embedded" in body["note"]
    shown = cli(node, "workers", "ls")
    assert shown.returncode == 0
    assert "runs embedded" in shown.stdout


def test_another_accounts_root_may_not_see_or_drain_the_hosts(cluster_node: Server) -> None:
    made = cluster_node.http.post("/_ember/accounts", json={"Name": "tenant"})
    assert made.status_code == 201
    keys = made.json()
    tenant = Credentials(keys["AccessKeyId"], keys["SecretAccessKey"], None, "us-east-1", "test")
    with signed_http(cluster_node.url, tenant) as http:
        for method, path in (("GET", "/_ember/workers"), ("POST", "/_ember/workers/w-idle/drain")):
            refused = http.request(method, path)
            assert refused.status_code == 403
            assert refused.headers["x-amzn-ErrorType"] == "AccessDeniedException"
            assert "worker hosts belong to account 000000000000" in refused.text
    assert {w["state"] for w in cluster_node.http.get("/_ember/workers").json()["workers"]} == {
        "live",
        "silent",
    }
