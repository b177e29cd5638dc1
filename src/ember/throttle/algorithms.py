"""The five rate-limit algorithms as small pure objects with an injected clock.

Each object is the state of one key. ``decide(cost)`` answers without
counting; ``commit(cost)`` counts a hit ``decide`` allowed; ``acquire`` is
both. ``idle()`` is True when the state is that of a fresh key, so a backend
may drop it without changing any future answer. Notation in the docstrings:
N = ``limit``, W = ``period`` (seconds), r = N / W, B = ``burst``.

The guarantees (proved by the property tests in ``tests/unit/throttle``):

| algorithm      | admitted in any interval of length T                       |
|----------------|------------------------------------------------------------|
| fixed-window   | <= N per aligned window; <= 2N when T = W (across a boundary) |
| sliding-log    | <= N when T = W, exactly                                    |
| sliding-window | <= 2N - 1 when T = W (estimate <= N; assumes an even spread) |
| token-bucket   | <= B + r*T                                                  |
| leaky-bucket   | <= B + r*T (GCRA: the meter form; same admits as the bucket) |
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Protocol

from ember.throttle.base import Decision, Policy

Clock = Callable[[], float]


class Limiter(Protocol):
    def decide(self, cost: int = 1) -> Decision: ...

    def commit(self, cost: int = 1) -> None: ...

    def acquire(self, cost: int = 1) -> Decision: ...

    def idle(self) -> bool: ...


class _Base:
    def decide(self, cost: int = 1) -> Decision:
        raise NotImplementedError

    def commit(self, cost: int = 1) -> None:
        raise NotImplementedError

    def acquire(self, cost: int = 1) -> Decision:
        decision = self.decide(cost)
        if decision.allowed:
            self.commit(cost)
        return decision


class FixedWindow(_Base):
    """Fixed window counter, windows aligned on the clock: [kW, (k+1)W).

    count_k + cost <= N admits. Reset and retry: (k+1)W - now. Up to 2N pass
    in W seconds around a boundary (N just before kW, N just after).
    """

    def __init__(self, limit: int, period: float, clock: Clock) -> None:
        self.limit, self.period, self.clock = limit, period, clock
        self.window = -1  # index k of the window ``count`` belongs to
        self.count = 0

    def _roll(self, now: float) -> None:
        window = math.floor(now / self.period)
        if window != self.window:
            self.window, self.count = window, 0

    def decide(self, cost: int = 1) -> Decision:
        now = self.clock()
        self._roll(now)
        reset = (self.window + 1) * self.period - now
        allowed = self.count + cost <= self.limit
        remaining = self.limit - self.count - (cost if allowed else 0)
        retry = 0.0 if allowed else (reset if cost <= self.limit else math.inf)
        return Decision(allowed, self.limit, max(0, remaining), reset, retry)

    def commit(self, cost: int = 1) -> None:
        self.count += cost

    def idle(self) -> bool:
        return math.floor(self.clock() / self.period) != self.window or self.count == 0


class SlidingLog(_Base):
    """Sliding window log: the times of the hits in (now - W, now].

    len(log) + cost <= N admits. Retry: the hit that must leave first, at
    log[len - N + cost - 1] + W. Reset: newest + W. Exact: never more than N
    in any interval of length W; memory O(N) per key.
    """

    def __init__(self, limit: int, period: float, clock: Clock) -> None:
        self.limit, self.period, self.clock = limit, period, clock
        self.log: deque[float] = deque()  # Invariant: sorted, every entry > now - W

    def _expire(self, now: float) -> None:
        horizon = now - self.period
        log = self.log
        while log and log[0] <= horizon:
            log.popleft()

    def decide(self, cost: int = 1) -> Decision:
        now = self.clock()
        self._expire(now)
        held = len(self.log)
        allowed = held + cost <= self.limit
        if allowed:
            retry = 0.0
            reset = self.period
        elif cost > self.limit:
            retry = reset = math.inf
        else:
            retry = self.log[held - self.limit + cost - 1] + self.period - now
            reset = self.log[-1] + self.period - now
        remaining = self.limit - held - (cost if allowed else 0)
        return Decision(allowed, self.limit, max(0, remaining), reset, retry)

    def commit(self, cost: int = 1) -> None:
        now = self.clock()
        self.log.extend([now] * cost)

    def idle(self) -> bool:
        self._expire(self.clock())
        return not self.log


class SlidingWindow(_Base):
    """Sliding window counter: two aligned windows, the previous one weighted.

    estimate = prev * (W - e) / W + curr, with e = now - kW the time into the
    current window; estimate + cost <= N admits. It assumes the previous
    window's hits were spread evenly, so it is not exact: any interval of
    length W admits at most N + prev * e / W <= 2N - 1 (never 2N).
    """

    def __init__(self, limit: int, period: float, clock: Clock) -> None:
        self.limit, self.period, self.clock = limit, period, clock
        self.window = -2
        self.prev = 0  # hits counted in window k - 1
        self.curr = 0  # hits counted in window k (= self.window)

    def _roll(self, now: float) -> float:
        window = math.floor(now / self.period)
        if window != self.window:
            self.prev = self.curr if window == self.window + 1 else 0
            self.curr = 0
            self.window = window
        return now - window * self.period

    def decide(self, cost: int = 1) -> Decision:
        now = self.clock()
        elapsed = self._roll(now)
        period, limit = self.period, self.limit
        estimate = self.prev * (period - elapsed) / period + self.curr
        allowed = estimate + cost <= limit
        remaining = max(0, math.floor(limit - estimate - (cost if allowed else 0)))
        reset = (period - elapsed) + (period if self.curr else 0.0)
        if allowed:
            retry = 0.0
        elif cost > limit:
            retry = math.inf
        elif self.curr + cost > limit:  # wait for the next window, then for prev to fade
            retry = (period - elapsed) + (1 - (limit - cost) / self.curr) * period
        else:  # prev must fade until prev * (W - e') / W <= N - curr - cost
            retry = (period - elapsed) - (limit - self.curr - cost) * period / self.prev
        return Decision(allowed, limit, remaining, reset, max(0.0, retry))

    def commit(self, cost: int = 1) -> None:
        self.curr += cost

    def idle(self) -> bool:
        window = math.floor(self.clock() / self.period)
        return window > self.window + 1 or (self.prev == 0 and self.curr == 0)


class TokenBucket(_Base):
    """Token bucket: B tokens at most, refilled at r per second; a hit takes cost.

    tokens(now) = min(B, tokens + (now - last) * r); tokens >= cost admits.
    Retry: (cost - tokens) / r. Reset: (B - tokens) / r. Any interval of
    length T admits at most B + r*T; after B / r idle seconds, exactly B.
    """

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = float(burst)
        self.last = clock()

    def _refill(self, now: float) -> None:
        if now > self.last:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now

    def decide(self, cost: int = 1) -> Decision:
        self._refill(self.clock())
        tokens, rate = self.tokens, self.rate
        # The same hair of slack as GCRA: refills summed in floats must not
        # leave a token at 0.9999999 and refuse a hit the rate has paid for.
        allowed = tokens >= cost - 1e-9
        left = tokens - cost if allowed else tokens
        retry = (cost - tokens) / rate if cost <= self.burst else math.inf
        retry = 0.0 if allowed else retry
        return Decision(allowed, self.burst, int(left), (self.burst - left) / rate, retry)

    def commit(self, cost: int = 1) -> None:
        self.tokens -= cost

    def idle(self) -> bool:
        self._refill(self.clock())
        return self.tokens >= self.burst


class Gcra(_Base):
    """Leaky bucket as a meter: the generic cell rate algorithm (GCRA).

    One number of state, the theoretical arrival time (TAT). With emission
    interval T = 1/r and tolerance tau = B*T: new = max(TAT, now) + cost*T;
    new - now <= tau admits (and TAT := new). Retry: new - tau - now.
    Reset: TAT - now. Admits exactly what a token bucket of B and r admits,
    so any interval of length T admits at most B + r*T.
    """

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        self.interval, self.burst, self.clock = 1.0 / rate, burst, clock
        self.tolerance = burst * self.interval
        self.tat = -math.inf  # Invariant: admitted work is paid off at ``tat``

    def decide(self, cost: int = 1) -> Decision:
        now = self.clock()
        interval, tolerance = self.interval, self.tolerance
        base = max(self.tat, now)
        new = base + cost * interval
        # A hair of slack: float sums of T must not refuse the B-th hit of a burst.
        allowed = new - now <= tolerance + 1e-9 * interval
        after = new if allowed else base
        remaining = max(0, math.floor((tolerance - (after - now)) / interval + 1e-9))
        retry = 0.0 if allowed else (new - tolerance - now if cost <= self.burst else math.inf)
        return Decision(allowed, self.burst, remaining, after - now, retry)

    def commit(self, cost: int = 1) -> None:
        self.tat = max(self.tat, self.clock()) + cost * self.interval

    def idle(self) -> bool:
        return self.tat <= self.clock()


def build(policy: Policy, clock: Clock) -> Limiter:
    """A fresh key's state for ``policy``."""
    algorithm = policy.algorithm
    if algorithm == "fixed-window":
        return FixedWindow(policy.limit, policy.period, clock)
    if algorithm == "sliding-log":
        return SlidingLog(policy.limit, policy.period, clock)
    if algorithm == "sliding-window":
        return SlidingWindow(policy.limit, policy.period, clock)
    rate = policy.limit / policy.period
    if algorithm == "token-bucket":
        return TokenBucket(rate, policy.capacity, clock)
    if algorithm == "leaky-bucket":
        return Gcra(rate, policy.capacity, clock)
    raise ValueError(f"unknown rate-limit algorithm {algorithm!r}")
