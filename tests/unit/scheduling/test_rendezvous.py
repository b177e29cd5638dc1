"""A frontend's Placement: warm affinity, rendezvous order, room, silence, drain,
refusals and broken channels, on a fake clock; hypothesis for the hashing's promises."""

from __future__ import annotations

import time
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from ember.scheduling.base import SILENCE_SECONDS, WorkerInfo, WorkerLoad
from ember.scheduling.rendezvous import RendezvousPlacement, ranking

REVISION = "f1:rev-a"


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def worker(worker_id: str, **changes: object) -> WorkerInfo:
    info = WorkerInfo(worker_id, f"{worker_id}:9901", 1024, 4, ("python3.11",), "full")
    return replace(info, **changes)  # type: ignore[arg-type]


def placement(*ids: str, clock: Clock | None = None) -> RendezvousPlacement:
    chosen = RendezvousPlacement(clock or Clock())
    chosen.members([worker(i) for i in ids])
    return chosen


WORKERS = ("w1", "w2", "w3", "w4")


# --- rendezvous order ----------------------------------------------------------------


def test_without_warm_sandboxes_the_order_is_the_revisions_ranking() -> None:
    assert placement(*WORKERS).candidates(REVISION, 128) == list(ranking(WORKERS, REVISION))


def test_every_frontend_ranks_a_revision_alike_whatever_order_it_read_members_in() -> None:
    one, other = placement(*WORKERS), placement(*reversed(WORKERS))
    for n in range(50):
        assert one.candidates(f"f{n}", 128) == other.candidates(f"f{n}", 128)


def test_revisions_spread_over_the_workers() -> None:
    chosen = placement(*WORKERS)
    homes = [chosen.candidates(f"fn-{n}:r", 128)[0] for n in range(400)]
    assert {homes.count(w) for w in WORKERS} <= set(range(60, 141))


# --- warm affinity -------------------------------------------------------------------


def test_workers_with_an_idle_warm_sandbox_come_first_most_idle_first() -> None:
    chosen = placement(*WORKERS)
    home, *rest = ranking(WORKERS, REVISION)
    chosen.warm(rest[2], {REVISION: 1})
    chosen.warm(rest[1], {REVISION: 3, "other": 5})
    assert chosen.candidates(REVISION, 128) == [rest[1], rest[2], home, rest[0]]


def test_a_dispatched_call_takes_an_idle_sandbox_and_a_warm_finish_gives_it_back() -> None:
    chosen = placement(*WORKERS)
    home, *rest = ranking(WORKERS, REVISION)
    chosen.warm(rest[0], {REVISION: 1})
    assert chosen.candidates(REVISION, 128)[0] == rest[0]
    chosen.dispatched(rest[0], REVISION, 128)
    assert chosen.candidates(REVISION, 128)[0] == home
    chosen.finished(rest[0], REVISION, 128, warm=True)
    assert chosen.candidates(REVISION, 128)[0] == rest[0]
    chosen.dispatched(rest[0], REVISION, 128)
    chosen.finished(rest[0], REVISION, 128, warm=False)  # its sandbox died
    assert chosen.candidates(REVISION, 128)[0] == home


def test_a_heartbeat_frame_replaces_what_was_known_of_that_worker() -> None:
    chosen = placement(*WORKERS)
    home, second, *_ = ranking(WORKERS, REVISION)
    chosen.warm(second, {REVISION: 2})
    chosen.warm(second, {"another": 1})
    assert chosen.candidates(REVISION, 128)[0] == home
    assert chosen.statistics().warm_revisions == 1


def test_a_frame_from_a_worker_not_in_the_membership_is_ignored() -> None:
    chosen = placement("w1", "w2")
    chosen.warm("stranger", {REVISION: 4})
    assert "stranger" not in chosen.candidates(REVISION, 128)


# --- liveness and drain --------------------------------------------------------------


def test_a_worker_silent_for_three_seconds_leaves_placement_between_reads() -> None:
    clock = Clock()
    chosen = RendezvousPlacement(clock)
    chosen.members([worker("w1"), worker("w2", silence=SILENCE_SECONDS - 0.5)])
    assert set(chosen.candidates(REVISION, 128)) == {"w1", "w2"}
    clock.now += 0.5  # no new read: its silence has reached SILENCE_SECONDS by now
    assert chosen.candidates(REVISION, 128) == ["w1"]
    chosen.members([worker("w1"), worker("w2", silence=0.2)])
    assert set(chosen.candidates(REVISION, 128)) == {"w1", "w2"}


def test_a_silent_worker_gets_no_call_even_with_warm_sandboxes() -> None:
    clock = Clock()
    chosen = placement("w1", "w2", clock=clock)
    chosen.warm("w2", {REVISION: 3})
    clock.now += SILENCE_SECONDS + 1  # neither a frame nor a heartbeat since
    chosen.members([worker("w1"), worker("w2", silence=SILENCE_SECONDS + 1)])
    assert chosen.candidates(REVISION, 128) == ["w1"]


def test_a_draining_worker_gets_no_new_call_even_with_warm_sandboxes() -> None:
    chosen = placement("w1", "w2")
    chosen.warm("w2", {REVISION: 3})
    chosen.members([worker("w1"), worker("w2", draining=True)])
    assert chosen.candidates(REVISION, 128) == ["w1"]


def test_a_worker_gone_from_the_membership_is_forgotten_with_its_warm_sandboxes() -> None:
    chosen = placement("w1", "w2")
    chosen.warm("w2", {REVISION: 3})
    chosen.members([worker("w1")])
    assert chosen.candidates(REVISION, 128) == ["w1"]
    chosen.members([worker("w1"), worker("w2")])
    assert chosen.candidates(REVISION, 128) == list(ranking(("w1", "w2"), REVISION))


# --- refusals and broken channels ----------------------------------------------------


def test_a_full_worker_is_skipped_until_it_is_heard_again() -> None:
    clock = Clock()
    chosen = placement(*WORKERS, clock=clock)
    home, *rest = ranking(WORKERS, REVISION)
    chosen.full(home)
    assert chosen.candidates(REVISION, 128) == rest
    clock.now += 0.4
    # A read whose heartbeat predates the refusal does not bring it back...
    chosen.members([worker(w, silence=0.6) for w in WORKERS])
    assert chosen.candidates(REVISION, 128) == rest
    # ...a heartbeat after it does.
    chosen.members([worker(w, silence=0.1) for w in WORKERS])
    assert chosen.candidates(REVISION, 128) == [home, *rest]


def test_a_full_worker_comes_back_when_a_call_there_ends() -> None:
    """A refusal is a moment's state (a wave of cold starts): when every worker has
    refused, the next call must not wait up to a heartbeat for one to come back."""
    clock = Clock()
    chosen = placement("w1", "w2", clock=clock)
    chosen.dispatched("w1", REVISION, 128)
    chosen.full("w1")
    chosen.full("w2")
    assert chosen.candidates(REVISION, 128) == []
    clock.now += 0.01  # no heartbeat since
    chosen.finished("w1", REVISION, 128, warm=True)
    assert chosen.candidates(REVISION, 128) == ["w1"]


def test_a_lost_worker_comes_back_with_its_next_heartbeat_frame() -> None:
    clock = Clock()
    chosen = placement("w1", "w2", clock=clock)
    chosen.warm("w2", {REVISION: 2})
    chosen.lost("w2")
    assert chosen.candidates(REVISION, 128) == ["w1"]
    clock.now += 0.1
    chosen.warm("w2", {})
    assert chosen.candidates(REVISION, 128) == list(ranking(("w1", "w2"), REVISION))


# --- room ----------------------------------------------------------------------------


def test_a_worker_with_every_sandbox_busy_is_stepped_over_in_hash_order() -> None:
    chosen = placement(*WORKERS)
    home, *rest = ranking(WORKERS, REVISION)
    for _ in range(4):  # max_sandboxes
        chosen.dispatched(home, "another", 128)
    assert chosen.candidates(REVISION, 128) == rest
    chosen.finished(home, "another", 128, warm=False)
    assert chosen.candidates(REVISION, 128) == [home, *rest]


def test_memory_is_room_too() -> None:
    chosen = placement(*WORKERS)
    home, *rest = ranking(WORKERS, REVISION)
    chosen.dispatched(home, "big", 768)
    assert chosen.candidates(REVISION, 512) == rest
    assert chosen.candidates(REVISION, 256) == [home, *rest]


def test_other_frontends_calls_count_from_the_reported_load() -> None:
    chosen = placement(*WORKERS)
    home, *rest = ranking(WORKERS, REVISION)
    busy = WorkerLoad(sandboxes=6, busy=4, memory_reserved_mb=768, busy_memory_mb=512)
    chosen.members([worker(w, load=busy if w == home else WorkerLoad()) for w in WORKERS])
    assert chosen.candidates(REVISION, 128) == rest


def test_this_frontends_own_calls_are_not_counted_twice() -> None:
    chosen = placement(*WORKERS)
    home = ranking(WORKERS, REVISION)[0]
    for _ in range(3):
        chosen.dispatched(home, "another", 128)
    # The worker's report includes those three calls, and no one else's.
    load = WorkerLoad(sandboxes=3, busy=3, memory_reserved_mb=384, busy_memory_mb=384)
    chosen.members([worker(w, load=load if w == home else WorkerLoad()) for w in WORKERS])
    assert chosen.candidates(REVISION, 128)[0] == home  # 3 busy of 4: room for one more


def test_a_warm_sandbox_is_used_on_a_worker_with_no_room_for_a_new_one() -> None:
    chosen = placement(*WORKERS)
    home, *rest = ranking(WORKERS, REVISION)
    chosen.warm(rest[0], {REVISION: 1})
    for _ in range(3):
        chosen.dispatched(rest[0], "another", 256)
    assert chosen.candidates(REVISION, 256) == [rest[0], home, *rest[1:]]


def test_full_workers_are_live_lost_silent_or_draining_ones_are_not() -> None:
    clock = Clock()
    chosen = placement("w1", "w2", clock=clock)
    chosen.full("w1")
    for _ in range(4):  # max_sandboxes: no room
        chosen.dispatched("w2", "another", 128)
    assert chosen.candidates(REVISION, 128) == []
    assert chosen.any_live()  # a throttle, not an outage
    chosen.lost("w2")
    assert chosen.any_live()
    chosen.lost("w1")
    assert not chosen.any_live()
    clock.now += 0.1
    chosen.members([worker("w1", silence=0.05), worker("w2", draining=True)])
    assert chosen.any_live()  # w1 heard since it broke; w2 draining
    clock.now += SILENCE_SECONDS
    assert not chosen.any_live()  # silent since


def test_no_candidate_when_no_worker_can_take_the_call() -> None:
    chosen = placement("w1", "w2")
    assert chosen.candidates(REVISION, 2048) == []
    assert RendezvousPlacement(Clock()).candidates(REVISION, 128) == []


# --- the hashing's promises (hypothesis) ---------------------------------------------

worker_ids = st.lists(
    st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12),
    min_size=2,
    max_size=16,
    unique=True,
)
REVISIONS = [f"fn-{n}:rev-{n * 7919 % 1000}" for n in range(2000)]


def homes(ids: list[str]) -> dict[str, str]:
    chosen = placement(*ids)
    return {r: chosen.candidates(r, 128)[0] for r in REVISIONS}


@settings(max_examples=40, deadline=None)
@given(worker_ids, st.data())
def test_removing_one_of_m_workers_remaps_only_its_revisions(
    ids: list[str], data: st.DataObject
) -> None:
    gone = data.draw(st.sampled_from(ids))
    before, after = homes(ids), homes([w for w in ids if w != gone])
    moved = [r for r in REVISIONS if before[r] != after[r]]
    assert all(before[r] == gone for r in moved)
    assert all(before[r] != gone for r in REVISIONS if r not in moved)
    assert abs(len(moved) / len(REVISIONS) - 1 / len(ids)) < 0.06


@settings(max_examples=40, deadline=None)
@given(worker_ids, st.text("xyz0123456789", min_size=1, max_size=10))
def test_adding_a_worker_takes_about_one_in_m_plus_one_revisions(ids: list[str], new: str) -> None:
    new = f"new-{new}"
    before, after = homes(ids), homes([*ids, new])
    moved = [r for r in REVISIONS if before[r] != after[r]]
    assert all(after[r] == new for r in moved)
    assert abs(len(moved) / len(REVISIONS) - 1 / (len(ids) + 1)) < 0.06


@settings(max_examples=100, deadline=None)
@given(worker_ids, st.text(min_size=1, max_size=30), st.integers(0, 3))
def test_full_workers_are_stepped_over_in_hash_order(
    ids: list[str], revision: str, full: int
) -> None:
    chosen = placement(*ids)
    order = list(ranking(ids, revision))
    refused = order[: min(full, len(order))]
    for worker_id in refused:
        chosen.full(worker_id)
    assert chosen.candidates(revision, 128) == order[len(refused) :]


def test_cost_of_a_placement_decision() -> None:
    """Prints µs per ``candidates`` (no assertion: timing belongs in bench/)."""
    ids = [f"worker-{n}" for n in range(8)]
    chosen = placement(*ids)
    revisions = [f"fn-{n}:r" for n in range(20)]
    for n, revision in enumerate(revisions):
        chosen.warm(ids[n % 8], {revision: 1})
    calls = 20_000
    started = time.perf_counter()
    for n in range(calls):
        revision = revisions[n % 20]
        worker_id = chosen.candidates(revision, 128)[0]
        chosen.dispatched(worker_id, revision, 128)
        chosen.finished(worker_id, revision, 128, warm=True)
    per_call = (time.perf_counter() - started) / calls * 1e6
    print(
        f"\nplacement: {per_call:.2f} µs per call (candidates + dispatched + finished, 8 workers)"
    )
