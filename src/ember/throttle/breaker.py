"""A circuit breaker for the throttle's shared store: during an outage, answer at once.

Closed, every call goes to the store. The first failure opens it: for
``cooldown`` seconds no call tries the store (the gate answers at once from
the operator's ``--throttle-unavailable`` choice); then one caller is let
through as the probe. Any answer from the store closes the breaker; a
failure opens another cooldown. A probe that never reports (its request was
cancelled) costs one cooldown: the next caller after it probes again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

COOLDOWN_SECONDS = 1.0


class Breaker:
    def __init__(
        self, cooldown: float = COOLDOWN_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._cooldown = cooldown
        self._clock = clock
        # Invariant: None while closed; while open, when the next probe may go.
        self._probe_at: float | None = None

    @property
    def closed(self) -> bool:
        return self._probe_at is None

    def ready(self) -> bool:
        """Whether this caller may use the store now: always while closed; while
        open, one caller per cooldown (the probe)."""
        probe_at = self._probe_at
        if probe_at is None:
            return True
        now = self._clock()
        if now < probe_at:
            return False
        self._probe_at = now + self._cooldown
        return True

    def failed(self) -> bool:
        """The store did not answer; True when this opened the breaker (an outage begins)."""
        opened = self._probe_at is None
        self._probe_at = self._clock() + self._cooldown
        return opened

    def succeeded(self) -> bool:
        """The store answered; True when this closed the breaker (an outage ended)."""
        if self._probe_at is None:
            return False
        self._probe_at = None
        return True
