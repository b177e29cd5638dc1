"""The simulated hosts harness (tests/netns.py) tested on itself: a trivial server in a
namespace is reachable, cut off by link down, back after link up; the machine's
PostgreSQL is reachable from inside through the relay; everything is torn down,
also after a failure, and what a killed run left is swept by the next."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import netns
from conftest import POSTGRES_ADMIN_URL, free_port, postgres_answers, wait_until

TESTS = Path(__file__).resolve().parents[1]

reason = netns.unavailable()
pytestmark = pytest.mark.skipif(reason is not None, reason=reason or "")


def namespaces() -> set[str]:
    return {line.split()[0] for line in netns.ip("netns", "list").splitlines() if line}


def links() -> set[str]:
    out = netns.ip("-o", "link", "show")
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def network() -> Iterator[netns.Network]:
    with netns.Network(2, forward=[5432]) as made:
        yield made


def serve_http(host: netns.Host) -> str:
    port = free_port()
    argv = [sys.executable, "-m", "http.server", "--bind", host.address, str(port)]
    host.popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://{host.address}:{port}/"
    wait_until(lambda: answers(url), timeout=20)
    return url


def test_each_host_has_its_own_address_on_the_bridge(network: netns.Network) -> None:
    first, second = network.hosts
    assert first.address != second.address
    assert first.address.rsplit(".", 1)[0] == network.gateway.rsplit(".", 1)[0]
    shown = first.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True)
    assert f"inet {first.address}/24" in shown.stdout
    assert second.address not in shown.stdout


def test_a_server_in_a_host_is_cut_off_by_link_down_and_back_after_link_up(
    network: netns.Network,
) -> None:
    host = network.hosts[0]
    url = serve_http(host)
    host.link_down()
    assert not answers(url)
    assert host.processes[0].poll() is None  # cut off, not killed
    assert answers(serve_http(network.hosts[1]))  # the other host is untouched
    host.link_up()
    wait_until(lambda: answers(url), timeout=20)


@pytest.mark.skipif(not postgres_answers(), reason="no PostgreSQL on 127.0.0.1:5432")
def test_the_machines_postgresql_is_reachable_from_a_host_through_the_relay(
    network: netns.Network,
) -> None:
    url = network.url(POSTGRES_ADMIN_URL)
    assert network.gateway in url
    probe = (
        "import sys, psycopg\n"
        "print(psycopg.connect(sys.argv[1]).execute('SELECT 41 + 1').fetchone()[0])"
    )
    done = network.hosts[1].run(
        [sys.executable, "-c", probe, url], capture_output=True, text=True, timeout=30
    )
    assert done.stdout.strip() == "42", done.stderr


def test_everything_is_torn_down_even_when_the_test_fails() -> None:
    made = netns.Network(2, forward=[5432])
    with (
        pytest.raises(RuntimeError, match="the body failed"),
        made,
    ):
        sleeper = made.hosts[0].popen(["sleep", "600"])
        relay = made.relay_pid
        raise RuntimeError("the body failed")
    assert sleeper.poll() == -signal.SIGKILL
    assert not {h.namespace for h in made.hosts} & namespaces()
    assert not ({made.bridge} | {h.veth for h in made.hosts}) & links()
    assert relay is not None and not Path(f"/proc/{relay}").exists()
    assert not (netns.STATE_DIR / f"{made.tag}.json").exists()


def test_what_a_killed_run_left_is_swept_by_the_next_one() -> None:
    script = (
        "import sys, time; sys.path.insert(0, sys.argv[1]); import netns\n"
        "n = netns.Network(1, forward=[5432]); n.open()\n"
        "n.hosts[0].popen(['sleep', '600'])\n"
        "print(n.tag, n.hosts[0].namespace, flush=True); time.sleep(600)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script, str(TESTS)], stdout=subprocess.PIPE, text=True
    )
    assert owner.stdout is not None
    tag, namespace = owner.stdout.readline().split()
    owner.stdout.close()
    state = netns.STATE_DIR / f"{tag}.json"
    relay = int(json.loads(state.read_text())["relay"])
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    assert namespace in namespaces()  # left behind
    with netns.Network(0):
        pass
    assert namespace not in namespaces()
    assert f"emb-{tag}" not in links()
    assert not state.exists()
    wait_until(lambda: not Path(f"/proc/{relay}").exists(), timeout=10)


def test_a_host_shares_the_machines_mounts_so_its_sandboxes_find_their_cgroups(
    network: netns.Network,
) -> None:
    inside = network.hosts[0].run(["ls", "/sys/fs/cgroup"], capture_output=True, text=True)
    assert inside.stdout.split() == sorted(p.name for p in Path("/sys/fs/cgroup").iterdir())
    assert inside.stdout.split()
