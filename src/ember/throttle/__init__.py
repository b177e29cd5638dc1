"""Throttle (Lambda's Counting service): rate limits and concurrency leases.

``gate.Throttle`` is what the invocation service calls; ``limits`` holds the
per-function settings; ``memory`` and ``redis`` are the two backends of the
contracts in ``base``; ``algorithms`` the five pure rate limiters.
"""

from __future__ import annotations

from ember.throttle.gate import Admission, Throttle
from ember.throttle.limits import FunctionLimits, ThrottleLimits

__all__ = ["Admission", "FunctionLimits", "Throttle", "ThrottleLimits"]
