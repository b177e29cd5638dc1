"""Lambda's retry rules, as a pure function of a fake clock."""

from __future__ import annotations

from ember.queue.base import Message
from ember.queue.retry import Action, Attempt, Outcome, RetryPolicy, decide

T0 = 1_000_000.0
FAILED = Attempt(Outcome.FUNCTION_ERROR, 200, b"{}", "Unhandled")
THROTTLED = Attempt(Outcome.THROTTLED, 429)


def message(invocations: int = 0, throttles: int = 0) -> Message:
    return Message("1", "1.1", "f", "req", b"{}", T0, invocations, throttles)


def test_function_errors_wait_one_then_two_base_delays_then_fail() -> None:
    policy = RetryPolicy()  # Lambda's: 2 retries, 60 s base
    first = decide(policy, message(), FAILED, T0)
    assert (first.action, first.delay, first.message.invocations) == (Action.RETRY, 60, 1)
    second = decide(policy, first.message, FAILED, T0 + 60)
    assert (second.action, second.delay, second.message.invocations) == (Action.RETRY, 120, 2)
    third = decide(policy, second.message, FAILED, T0 + 180)
    assert (third.action, third.condition, third.message.invocations) == (
        Action.FAIL,
        "RetriesExhausted",
        3,
    )


def test_zero_retries_fails_after_one_attempt() -> None:
    verdict = decide(RetryPolicy(max_retry_attempts=0), message(), FAILED, T0)
    assert (verdict.action, verdict.condition) == (Action.FAIL, "RetriesExhausted")


def test_base_delay_scales_retries_and_backoff() -> None:
    policy = RetryPolicy(base_delay=0.6)
    assert decide(policy, message(), FAILED, T0).delay == 0.6
    assert policy.backoff(1) == 0.01


def test_throttles_back_off_exponentially_without_spending_attempts() -> None:
    policy = RetryPolicy(max_retry_attempts=0)
    delays = []
    current = message()
    for _ in range(12):
        verdict = decide(policy, current, THROTTLED, T0)
        assert verdict.action is Action.RETRY
        delays.append(verdict.delay)
        current = verdict.message
    assert delays[:5] == [1, 2, 4, 8, 16]
    assert max(delays) == 300
    assert current.invocations == 0 and current.throttles == 12


def test_platform_errors_are_treated_like_throttles() -> None:
    verdict = decide(RetryPolicy(), message(), Attempt(Outcome.PLATFORM_ERROR, 500), T0)
    assert (verdict.action, verdict.delay, verdict.message.throttles) == (Action.RETRY, 1, 1)


def test_an_event_that_would_outlive_its_maximum_age_fails_ahead_of_time() -> None:
    policy = RetryPolicy(max_event_age=100)
    verdict = decide(policy, message(), FAILED, T0 + 50)  # 50 + 60 s > 100
    assert (verdict.action, verdict.condition) == (Action.FAIL, "EventAgeExceeded")
    throttled = decide(policy, message(throttles=8), THROTTLED, T0 + 90)  # +256 s
    assert throttled.condition == "EventAgeExceeded"
    assert policy.expired(message(), T0 + 101)
    assert not policy.expired(message(), T0 + 99)


def test_success_acks_and_missing_function_drops_at_once() -> None:
    assert decide(RetryPolicy(), message(), Attempt(Outcome.SUCCESS), T0).action is Action.ACK
    gone = decide(RetryPolicy(), message(), Attempt(Outcome.NOT_FOUND, 404), T0)
    assert gone.action is Action.DROP
