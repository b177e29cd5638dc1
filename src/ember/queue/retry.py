"""Lambda's retry rules for asynchronous events, as a pure function of the clock.

- A **function error** (exception, timeout, crash, out of memory) is retried
  ``max_retry_attempts`` times: ``base_delay`` seconds (Lambda: 60) before the
  second attempt, ``2 * base_delay`` before the third.
- A **throttle** or **platform error** requeues the event without spending a
  retry: ``min(2 ** (n - 1), 300) * base_delay / 60`` seconds after the n-th
  one, i.e. 1 s doubling to 5 minutes at Lambda's base delay.
- An event that would be older than ``max_event_age`` seconds when next tried
  fails with ``EventAgeExceeded`` (checked ahead of time, as LocalStack does).
- An event whose function was deleted is dropped, as Lambda discards a
  deleted function's pending events.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from ember.queue.base import Message

LAMBDA_BASE_DELAY = 60.0
MAX_BACKOFF = 300.0
DEFAULT_RETRIES = 2
DEFAULT_MAX_AGE = 21600


class Outcome(enum.Enum):
    SUCCESS = "success"  # the function returned a result
    FUNCTION_ERROR = "function_error"  # the function failed: spends a retry attempt
    THROTTLED = "throttled"  # no capacity now (429): requeued with backoff
    PLATFORM_ERROR = "platform_error"  # ember failed (5xx): requeued with backoff
    NOT_FOUND = "not_found"  # the function no longer exists: dropped at once


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one delivery attempt produced."""

    outcome: Outcome
    status_code: int = 200
    payload: bytes = b""  # the function's response or error document
    function_error: str | None = None
    executed_version: str = "$LATEST"
    error_type: str = ""  # for platform errors and throttles: the error code
    error_message: str = ""


class Action(enum.Enum):
    ACK = "ack"  # done: success
    RETRY = "retry"  # nack with ``delay``
    FAIL = "fail"  # done for good: OnFailure destination or dead letters
    DROP = "drop"  # discarded: its function was deleted (Lambda discards its events)


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    message: Message  # with updated counters
    delay: float = 0.0
    condition: str = ""  # FAIL: RetriesExhausted | EventAgeExceeded; DROP: FunctionNotFound


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retry_attempts: int = DEFAULT_RETRIES
    max_event_age: float = DEFAULT_MAX_AGE
    base_delay: float = LAMBDA_BASE_DELAY

    def function_error_delay(self, invocations: int) -> float:
        """Seconds before the next attempt after ``invocations`` failed ones."""
        return self.base_delay * invocations

    def backoff(self, throttles: int) -> float:
        """Seconds before retrying after the ``throttles``-th throttle or platform error."""
        scale = self.base_delay / LAMBDA_BASE_DELAY
        return min(2.0 ** max(0, throttles - 1), MAX_BACKOFF) * scale

    def expired(self, message: Message, now: float, delay: float = 0.0) -> bool:
        return now + delay - message.enqueued_at > self.max_event_age


def decide(policy: RetryPolicy, message: Message, attempt: Attempt, now: float) -> Verdict:
    """What to do with ``message`` after ``attempt``, at time ``now``."""
    outcome = attempt.outcome
    if outcome is Outcome.SUCCESS:
        return Verdict(Action.ACK, message)
    if outcome is Outcome.NOT_FOUND:
        # Not a dead letter: it would reappear under a new function of the same name.
        return Verdict(Action.DROP, message, condition="FunctionNotFound")
    if outcome is Outcome.FUNCTION_ERROR:
        invocations = message.invocations + 1
        updated = replace(message, invocations=invocations)
        if invocations > policy.max_retry_attempts:
            return Verdict(Action.FAIL, updated, condition="RetriesExhausted")
        delay = policy.function_error_delay(invocations)
    else:
        updated = replace(message, throttles=message.throttles + 1)
        delay = policy.backoff(updated.throttles)
    if policy.expired(updated, now, delay):
        return Verdict(Action.FAIL, updated, condition="EventAgeExceeded")
    return Verdict(Action.RETRY, updated, delay=delay)
