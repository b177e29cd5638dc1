"""Each rate-limit algorithm's real guarantee, on a fake clock, with hypothesis.

Every property is also run against a deliberately broken variant, and
hypothesis must find a trace that breaks it: a property that cannot catch a
broken limiter proves nothing.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from ember.throttle.algorithms import (
    FixedWindow,
    Gcra,
    Limiter,
    SlidingLog,
    SlidingWindow,
    TokenBucket,
)
from ember.throttle.base import Policy


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


Factory = Callable[[FakeClock], Limiter]
# Gaps between hits in milliseconds (integers keep window edges exact); many zeros = bursts.
gaps = st.lists(st.one_of(st.just(0), st.integers(0, 40), st.integers(0, 1500)), max_size=120)
RUN = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def admitted_times(factory: Factory, trace: list[int]) -> list[float]:
    clock = FakeClock()
    limiter = factory(clock)
    admitted = []
    for gap in trace:
        clock.now += gap / 1000
        if limiter.acquire().allowed:
            admitted.append(clock.now)
    return admitted


def most_in_window(times: list[float], width: float) -> int:
    """The most admissions in any closed interval [t, t + width] (t an admission time)."""
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] > width + 1e-9:
            start += 1
        best = max(best, end - start + 1)
    return best


def most_in_half_open(times: list[float], width: float) -> int:
    """The most admissions in any interval [t, t + width) of exactly the window's length."""
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= width - 1e-9:
            start += 1
        best = max(best, end - start + 1)
    return best


def exceeds_rate(times: list[float], rate: float, burst: int) -> bool:
    """Some interval [a, b] admitted more than burst + rate * (b - a)."""
    return any(
        j - i + 1 > burst + rate * (times[j] - times[i]) + 1e-6
        for i in range(len(times))
        for j in range(i, len(times))
    )


N, W = 5, 1.0


# --- sliding log: never more than N in any window of length W ------------------


class LeakyLog(SlidingLog):
    """Broken: forgets hits half a window early."""

    def _expire(self, now: float) -> None:
        while self.log and self.log[0] <= now - self.period / 2:
            self.log.popleft()


def sliding_log(clock: FakeClock) -> Limiter:
    return SlidingLog(N, W, clock)


@RUN
@given(gaps)
def test_sliding_log_never_admits_more_than_n_in_any_window(trace: list[int]) -> None:
    assert most_in_half_open(admitted_times(sliding_log, trace), W) <= N


def test_the_sliding_log_property_catches_a_leaky_log() -> None:
    find(gaps, lambda t: most_in_half_open(admitted_times(lambda c: LeakyLog(N, W, c), t), W) > N)


# --- fixed window: <= N per aligned window, <= 2N in any window, 2N at a boundary --


class SloppyWindow(FixedWindow):
    """Broken: an off-by-one admits N + 1 per window."""

    def decide(self, cost: int = 1) -> object:  # type: ignore[override]
        self.limit = N + 1
        return super().decide(cost)


def fixed(clock: FakeClock) -> Limiter:
    return FixedWindow(N, W, clock)


def most_per_aligned_window(times: list[float]) -> int:
    counts: dict[int, int] = {}
    for moment in times:
        counts[math.floor(moment / W)] = counts.get(math.floor(moment / W), 0) + 1
    return max(counts.values(), default=0)


@RUN
@given(gaps)
def test_fixed_window_bounds(trace: list[int]) -> None:
    times = admitted_times(fixed, trace)
    assert most_per_aligned_window(times) <= N
    assert most_in_half_open(times, W) <= 2 * N


def test_fixed_window_admits_2n_across_a_boundary() -> None:
    clock = FakeClock(10.0 - 0.01)
    limiter = FixedWindow(N, W, clock)
    before = [limiter.acquire().allowed for _ in range(N + 1)]
    clock.now = 10.0 + 0.01
    after = [limiter.acquire().allowed for _ in range(N + 1)]
    assert before == [True] * N + [False]
    assert after == [True] * N + [False]  # 2N within 20 ms: the documented weakness


def test_the_fixed_window_property_catches_an_off_by_one() -> None:
    find(
        gaps,
        lambda t: most_per_aligned_window(admitted_times(lambda c: SloppyWindow(N, W, c), t)) > N,
    )


# --- sliding window counter: estimate <= N, any window <= 2N - 1 -----------------


class NoMemoryWindow(SlidingWindow):
    """Broken: ignores the previous window (degenerates to a fixed window)."""

    def _roll(self, now: float) -> float:
        elapsed = super()._roll(now)
        self.prev = 0
        return elapsed


def sliding(clock: FakeClock) -> Limiter:
    return SlidingWindow(N, W, clock)


@RUN
@given(gaps)
def test_sliding_window_counter_stays_within_its_documented_bound(trace: list[int]) -> None:
    clock = FakeClock()
    limiter = SlidingWindow(N, W, clock)
    for gap in trace:
        clock.now += gap / 1000
        limiter.acquire()
        elapsed = clock.now - limiter.window * W
        assert limiter.prev * (W - elapsed) / W + limiter.curr <= N + 1e-9
    assert most_in_half_open(admitted_times(sliding, trace), W) <= 2 * N - 1


def test_the_sliding_window_bound_catches_a_counter_that_forgets() -> None:
    find(
        gaps,
        lambda t: (
            most_in_half_open(admitted_times(lambda c: NoMemoryWindow(N, W, c), t), W) > 2 * N - 1
        ),
    )


def test_sliding_window_counter_can_exceed_n_in_a_window() -> None:
    """Not exact: N at the very end of a window, then a trickle, passes more than N."""
    clock = FakeClock(9.999)
    limiter = SlidingWindow(N, W, clock)
    times = []
    for _ in range(N):
        assert limiter.acquire().allowed
        times.append(clock.now)
    for step in range(1, 100):
        clock.now = 9.999 + step * 0.01
        if limiter.acquire().allowed:
            times.append(clock.now)
    assert most_in_half_open(times, W) > N


# --- token bucket and GCRA: never more than B + r*T; B after B/r idle --------------

RATE, BURST = 4.0, 3


class UncappedBucket(TokenBucket):
    """Broken: refills past the bucket's size."""

    def _refill(self, now: float) -> None:
        self.tokens += (now - self.last) * self.rate
        self.last = now


class LooseGcra(Gcra):
    """Broken: one interval too much tolerance (a burst of B + 1)."""

    def decide(self, cost: int = 1) -> object:  # type: ignore[override]
        self.tolerance = (self.burst + 1) * self.interval
        return super().decide(cost)


BUCKETS: list[tuple[str, Factory, Factory]] = [
    (
        "token-bucket",
        lambda c: TokenBucket(RATE, BURST, c),
        lambda c: UncappedBucket(RATE, BURST, c),
    ),
    ("gcra", lambda c: Gcra(RATE, BURST, c), lambda c: LooseGcra(RATE, BURST, c)),
]


@pytest.mark.parametrize(("name", "good", "broken"), BUCKETS, ids=[b[0] for b in BUCKETS])
def test_bucket_never_admits_more_than_burst_plus_rate_times_t(
    name: str, good: Factory, broken: Factory
) -> None:
    @RUN
    @given(gaps)
    def holds(trace: list[int]) -> None:
        assert not exceeds_rate(admitted_times(good, trace), RATE, BURST)

    holds()
    find(gaps, lambda t: exceeds_rate(admitted_times(broken, t), RATE, BURST))


@pytest.mark.parametrize(("name", "good", "broken"), BUCKETS, ids=[b[0] for b in BUCKETS])
def test_bucket_admits_exactly_burst_after_idling(
    name: str, good: Factory, broken: Factory
) -> None:
    clock = FakeClock()
    limiter = good(clock)
    for _ in range(20):
        limiter.acquire()
    clock.now += BURST / RATE
    answers = [limiter.acquire() for _ in range(BURST + 1)]
    assert [a.allowed for a in answers] == [True] * BURST + [False]
    assert [a.remaining for a in answers[:BURST]] == list(range(BURST - 1, -1, -1))
    assert answers[-1].retry_after == pytest.approx(1 / RATE)
    clock.now += answers[-1].retry_after
    assert limiter.acquire().allowed


@RUN
@given(gaps)
def test_token_bucket_and_gcra_admit_the_same_hits(trace: list[int]) -> None:
    bucket = admitted_times(lambda c: TokenBucket(RATE, BURST, c), trace)
    gcra = admitted_times(lambda c: Gcra(RATE, BURST, c), trace)
    assert bucket == gcra


# --- every algorithm: refusals consume nothing, retry_after is honest ---------------

EVERY: list[tuple[str, Factory]] = [
    ("fixed-window", fixed),
    ("sliding-log", sliding_log),
    ("sliding-window", sliding),
    ("token-bucket", lambda c: TokenBucket(N / W, N, c)),
    ("leaky-bucket", lambda c: Gcra(N / W, N, c)),
]


@pytest.mark.parametrize(("name", "factory"), EVERY, ids=[e[0] for e in EVERY])
def test_retry_after_is_when_the_next_hit_passes(name: str, factory: Factory) -> None:
    @RUN
    @given(gaps)
    def honest(trace: list[int]) -> None:
        clock = FakeClock()
        limiter = factory(clock)
        for gap in trace:
            clock.now += gap / 1000
            decision = limiter.acquire()
            if not decision.allowed:
                assert decision.retry_after > 0
                assert decision.remaining == 0
                probe = copy.deepcopy(limiter)  # a decision refreshes state: probe a copy
                probe.clock = FakeClock(clock.now + decision.retry_after + 1e-6)  # type: ignore[attr-defined]
                assert probe.decide().allowed

    honest()


@pytest.mark.parametrize(("name", "factory"), EVERY, ids=[e[0] for e in EVERY])
def test_a_fresh_key_admits_its_capacity_then_refuses(name: str, factory: Factory) -> None:
    clock = FakeClock(50.0)
    limiter = factory(clock)
    answers = [limiter.acquire() for _ in range(N + 1)]
    assert [a.allowed for a in answers] == [True] * N + [False]
    assert answers[0].limit == N and answers[0].remaining == N - 1
    assert not limiter.idle()
    clock.now += 10 * W
    assert limiter.idle()


def test_policy_capacity_and_fingerprint() -> None:
    assert Policy("token-bucket", 100, 1.0, 20).capacity == 20
    assert Policy("fixed-window", 100, 60.0).capacity == 100
    assert (
        Policy("fixed-window", 100, 60.0).fingerprint
        != Policy("sliding-log", 100, 60.0).fingerprint
    )
