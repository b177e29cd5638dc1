"""The stale-cgroup sweep: a server that is gone, or a zombie that was not reaped yet,
leaves its ``ember-<pid>`` cgroups to the next server (issue 20, point 9)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import wait_until
from ember.sandbox import cgroups


def state_of(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2]


@pytest.fixture
def zombie() -> Iterator[int]:
    """A child that has exited and is not yet reaped."""
    child = subprocess.Popen(["true"])
    wait_until(lambda: state_of(child.pid) == "Z")
    yield child.pid
    child.wait()


@pytest.fixture
def base() -> Iterator[str]:
    """A private cgroup directory of the real pids controller (root and cgroups needed)."""
    layout = cgroups.detect()
    if os.geteuid() != 0 or layout is None or "pids" not in layout.dirs:
        pytest.skip("needs root and a cgroup pids controller")
    path = os.path.join(layout.dirs["pids"], f"embertest-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    yield path
    for name in os.listdir(path):
        if os.path.isdir(os.path.join(path, name)):  # cgroup files go with their directory
            os.rmdir(os.path.join(path, name))
    os.rmdir(path)


def test_a_zombie_is_dead_and_a_running_process_alive(zombie: int) -> None:
    assert not cgroups.pid_alive(zombie)
    assert cgroups.pid_alive(os.getpid())


def test_the_sweep_removes_a_zombie_servers_cgroups_and_keeps_a_live_ones(
    base: str, zombie: int
) -> None:
    dead = os.path.join(base, f"{cgroups.PREFIX}{zombie}")
    live = os.path.join(base, f"{cgroups.PREFIX}{os.getpid()}")
    os.mkdir(dead)
    os.mkdir(live)
    removed = cgroups.remove_stale(cgroups.CgroupLayout(1, {"pids": base}))
    assert removed == [dead]
    assert not os.path.exists(dead)
    assert os.path.isdir(live)
