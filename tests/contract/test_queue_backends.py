"""One behavioural suite for every event-queue backend (SQLite, memory, PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from conftest import create_database, drop_database, postgres_answers
from ember.queue.base import Failure, NewEvent
from ember.queue.memory import MemoryEventQueue
from ember.queue.postgres import PostgresEventQueue
from ember.queue.sqlite import SqliteEventQueue
from ember.storage.postgres import Database

T = TypeVar("T")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def hidden(seconds: float) -> Callable[[str], float]:
    return lambda function: seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", "memory", "postgresql"])
def make_queue(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Callable[[], Any]]:
    """A factory: calling it again reopens the same store, as a restart does.

    SQLite reopens the file; PostgreSQL makes a new queue object with the same
    owner on the same (fresh per test) database.
    """
    loop = asyncio.new_event_loop()
    opened: list[Any] = []
    database = _open_database(loop) if request.param == "postgresql" else None

    def make() -> Any:
        async def build() -> Any:
            if database is not None:
                return PostgresEventQueue(database, clock, owner="node-a")
            if request.param == "sqlite":
                return SqliteEventQueue(tmp_path / "queue.sqlite3", clock)
            return MemoryEventQueue(clock)

        queue = loop.run_until_complete(build())
        opened.append(queue)
        return queue

    make.run = loop.run_until_complete  # type: ignore[attr-defined]
    make.backend = request.param  # type: ignore[attr-defined]
    yield make
    for queue in opened:
        loop.run_until_complete(queue.close())
    if database is not None:
        loop.run_until_complete(database.close())
        drop_database(database.url)
    loop.close()


def _open_database(loop: asyncio.AbstractEventLoop) -> Database:
    if not postgres_answers():
        loop.close()
        pytest.skip("no PostgreSQL answers (scripts/services.sh starts one)")
    database = Database(create_database(), min_size=1, max_size=4)
    loop.run_until_complete(database.open())
    return database


def run(make: Any, awaitable: Awaitable[T]) -> T:
    result: T = make.run(awaitable)
    return result


def events(function: str, count: int, prefix: str = "r") -> list[NewEvent]:
    return [NewEvent(function, f"{prefix}-{i}", b'{"n": %d}' % i) for i in range(count)]


def test_enqueue_receive_ack(make_queue: Any) -> None:
    queue = make_queue()
    run(make_queue, queue.enqueue(events("f", 3)))
    taken = run(make_queue, queue.receive(10, hidden(30)))
    assert [m.request_id for m in taken] == ["r-0", "r-1", "r-2"]
    assert taken[0].payload == b'{"n": 0}'
    assert all(run(make_queue, queue.ack(m)) for m in taken)
    assert run(make_queue, queue.receive(10, hidden(30))) == []


def test_received_message_is_hidden_until_its_visibility_timeout(
    make_queue: Any, clock: FakeClock
) -> None:
    queue = make_queue()
    run(make_queue, queue.enqueue(events("f", 1)))
    first = run(make_queue, queue.receive(1, hidden(30)))
    assert run(make_queue, queue.receive(1, hidden(30))) == []
    clock.now += 31  # the poller died: nobody acknowledged
    again = run(make_queue, queue.receive(1, hidden(30)))
    assert [m.request_id for m in again] == [first[0].request_id]
    assert again[0].id == first[0].id
    # The first poller's late ack must not remove the redelivered message.
    assert run(make_queue, queue.ack(first[0])) is False
    assert run(make_queue, queue.ack(again[0])) is True


def test_nack_delays_and_keeps_counters(make_queue: Any, clock: FakeClock) -> None:
    from dataclasses import replace

    queue = make_queue()
    run(make_queue, queue.enqueue(events("f", 1)))
    (message,) = run(make_queue, queue.receive(1, hidden(30)))
    assert run(make_queue, queue.nack(replace(message, invocations=1, throttles=2), 60))
    assert run(make_queue, queue.receive(1, hidden(30))) == []
    clock.now += 61
    (again,) = run(make_queue, queue.receive(1, hidden(30)))
    assert (again.invocations, again.throttles, again.request_id) == (1, 2, "r-0")
    assert run(make_queue, queue.nack(message, 0)) is False  # stale receipt


def test_receive_is_fair_across_functions(make_queue: Any) -> None:
    queue = make_queue()
    run(make_queue, queue.enqueue(events("busy", 200, "b")))
    run(make_queue, queue.enqueue(events("quiet", 2, "q")))
    taken = run(make_queue, queue.receive(4, hidden(30)))
    assert sorted(m.function for m in taken) == ["busy", "busy", "quiet", "quiet"]


def test_dead_letter_list_show_redrive_purge(make_queue: Any) -> None:
    queue = make_queue()
    run(make_queue, queue.enqueue(events("f", 3)))
    taken = run(make_queue, queue.receive(3, hidden(30)))
    for message in taken:
        failure = Failure("RetriesExhausted", "ValueError", "boom")
        assert run(make_queue, queue.dead_letter(message, failure))
    letters = run(make_queue, queue.dead_letters("f"))
    assert [d.request_id for d in letters] == ["r-0", "r-1", "r-2"]
    assert letters[0].condition == "RetriesExhausted"
    assert letters[0].error_message == "boom"
    page = run(make_queue, queue.dead_letters("f", after=letters[0].id, limit=1))
    assert [d.request_id for d in page] == ["r-1"]
    shown = run(make_queue, queue.get_dead_letter("f", letters[2].id))
    assert shown is not None and shown.payload == b'{"n": 2}'
    assert run(make_queue, queue.get_dead_letter("other", letters[2].id)) is None
    assert run(make_queue, queue.redrive("f", [letters[1].id])) == 1
    (back,) = run(make_queue, queue.receive(5, hidden(30)))
    assert (back.request_id, back.invocations) == ("r-1", 0)
    assert run(make_queue, queue.purge("f")) == 2
    assert run(make_queue, queue.dead_letters("f")) == []


def test_discard_drops_a_functions_pending_and_leased_events_only(
    make_queue: Any, clock: FakeClock
) -> None:
    """Deleting a function discards its events, its qualifiers' too, and no one else's:
    ready, delayed for a retry, or leased (whose late settles then do nothing)."""
    from dataclasses import replace

    queue = make_queue()
    run(make_queue, queue.enqueue(events("f", 1, "leased")))
    (leased,) = run(make_queue, queue.receive(1, hidden(30)))
    run(make_queue, queue.enqueue(events("f", 1, "retrying")))
    (retrying,) = run(make_queue, queue.receive(1, hidden(30)))
    assert run(make_queue, queue.nack(replace(retrying, invocations=1), 60))
    run(make_queue, queue.enqueue(events("f", 2) + events("f:live", 1, "alias")))
    others = events("f_1", 1, "like") + events("fx", 1, "x") + events("g:f", 1, "g")
    run(make_queue, queue.enqueue(others))
    assert run(make_queue, queue.discard("f")) == 5
    assert run(make_queue, queue.discard("f")) == 0
    failure = Failure("RetriesExhausted", "ValueError", "boom")
    assert run(make_queue, queue.dead_letter(leased, failure)) is False
    assert run(make_queue, queue.nack(leased, 0)) is False
    clock.now += 61
    left = run(make_queue, queue.receive(10, hidden(30)))
    assert sorted(m.request_id for m in left) == ["g-0", "like-0", "x-0"]
    assert run(make_queue, queue.dead_letters("f")) == []
    assert sorted(s.function for s in run(make_queue, queue.statistics())) == ["f_1", "fx", "g:f"]


def test_ack_with_follow_ups_enqueues_them(make_queue: Any) -> None:
    queue = make_queue()
    run(make_queue, queue.enqueue(events("f", 1)))
    (message,) = run(make_queue, queue.receive(1, hidden(30)))
    run(make_queue, queue.ack(message, [NewEvent("dest", "d-1", b"{}")]))
    (follow,) = run(make_queue, queue.receive(5, hidden(30)))
    assert (follow.function, follow.request_id) == ("dest", "d-1")


def test_statistics(make_queue: Any, clock: FakeClock) -> None:
    queue = make_queue()
    run(make_queue, queue.enqueue(events("f", 3)))
    clock.now += 5
    first, second = run(make_queue, queue.receive(2, hidden(30)))
    run(make_queue, queue.nack(second, 10))
    run(make_queue, queue.dead_letter(first, Failure("EventAgeExceeded")))
    (stats,) = run(make_queue, queue.statistics())
    assert stats.function == "f"
    assert (stats.depth, stats.in_flight, stats.dead_letters) == (2, 0, 1)
    assert stats.oldest_age_seconds == pytest.approx(5)
    run(make_queue, queue.receive(1, hidden(30)))
    (stats,) = run(make_queue, queue.statistics())
    assert (stats.depth, stats.in_flight) == (1, 1)


def test_configs_put_delete_discard(make_queue: Any) -> None:
    queue = make_queue()
    run(make_queue, queue.put_config("f", "$LATEST", '{"a": 1}'))
    run(make_queue, queue.put_config("g", "$LATEST", '{"b": 1}'))
    run(make_queue, queue.put_config("f", "$LATEST", '{"a": 2}'))
    assert run(make_queue, queue.load_configs()) == {
        ("f", "$LATEST"): '{"a": 2}',
        ("g", "$LATEST"): '{"b": 1}',
    }
    queue.discard_configs("f")
    run(make_queue, queue.delete_config("g", "$LATEST"))
    assert run(make_queue, queue.load_configs()) == {}


def test_closed_queue_refuses(make_queue: Any) -> None:
    from ember.queue.base import QueueClosed

    queue = make_queue()
    run(make_queue, queue.close())
    run(make_queue, queue.close())  # idempotent
    with pytest.raises(QueueClosed):
        run(make_queue, queue.enqueue(events("f", 1)))


@pytest.mark.parametrize("make_queue", ["sqlite", "postgresql"], indirect=True)  # durable ones
def test_durable_backend_survives_reopen_and_releases_leases(make_queue: Any) -> None:
    queue = make_queue()
    run(make_queue, queue.enqueue(events("f", 2)))
    run(make_queue, queue.receive(1, hidden(3600)))  # in flight when the process "dies"
    run(make_queue, queue.put_config("f", "$LATEST", "{}"))
    run(make_queue, queue.close())
    reopened = make_queue()
    taken = run(make_queue, reopened.receive(10, hidden(30)))
    assert sorted(m.request_id for m in taken) == ["r-0", "r-1"]
    assert run(make_queue, reopened.load_configs()) == {("f", "$LATEST"): "{}"}


def test_receive_waits_for_an_arrival(make_queue: Any) -> None:
    queue = make_queue()

    async def scenario() -> list[Any]:
        waiting = asyncio.ensure_future(queue.receive(1, hidden(30), wait=30))
        await asyncio.sleep(0)
        await queue.enqueue(events("f", 1))
        return list(await asyncio.wait_for(waiting, 10))

    assert [m.request_id for m in run(make_queue, scenario())] == ["r-0"]


def test_one_receive_never_hands_out_a_message_twice(make_queue: Any) -> None:
    queue = make_queue()
    run(make_queue, queue.enqueue(events("many", 20, "m")))
    run(make_queue, queue.enqueue(events("few", 1, "f")))
    taken = run(make_queue, queue.receive(8, hidden(30)))
    assert len(taken) == 8
    assert len({m.id for m in taken}) == 8
    assert all(run(make_queue, queue.ack(m)) for m in taken)  # every receipt is current
