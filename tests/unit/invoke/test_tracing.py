"""Trace ids: the caller's kept, else carried from traceparent, else fresh per invocation."""

from __future__ import annotations

import re

from ember.invoke import tracing
from ember.runtime import frames

XRAY = re.compile(r"^Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=[01]$")


def test_fresh_ids_are_never_shared_within_a_second() -> None:
    ids = [tracing.trace_id(None, None, active=False) for _ in range(1000)]
    assert all(XRAY.match(trace) for trace in ids)
    assert len({trace.split(";")[0] for trace in ids}) == 1000
    assert tracing.trace_id(None, None, active=True).endswith("Sampled=1")


def test_the_callers_header_is_kept_and_completed() -> None:
    full = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    assert tracing.trace_id(full, "00-" + "1" * 32 + "-" + "2" * 16 + "-01", False) == full
    bare = "Root=1-5759e988-bd862e3fe1be46a994272793"
    completed = tracing.trace_id(bare, None, active=True)
    assert completed.startswith(bare + ";Parent=") and completed.endswith(";Sampled=1")
    assert XRAY.match(completed)


def test_traceparent_maps_to_the_xray_form_and_back() -> None:
    w3c = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    xray = tracing.trace_id(None, w3c, active=False)
    assert xray == "Root=1-0af76519-16cd43dd8448eb211c80319c;Parent=b7ad6b7169203331;Sampled=1"
    assert frames.trace_headers(xray) == (xray, w3c)


def test_malformed_headers_get_a_fresh_id() -> None:
    for amzn, parent in [
        ("Root=nonsense", None),
        (None, "00-" + "0" * 32 + "-" + "2" * 16 + "-01"),  # W3C's invalid all-zero id
        (None, "not a traceparent"),
        ("Root=1-5759e988-bd862e3fe1be46a994272793" + ";x" * 200, None),  # too long
    ]:
        assert XRAY.match(tracing.trace_id(amzn, parent, active=False)), (amzn, parent)


def test_headers_are_found_in_any_case() -> None:
    headers = [(b"X-Amzn-Trace-Id", b"Root=1-a"), (b"TraceParent", b"00-b")]
    assert tracing.headers_of(headers) == ("Root=1-a", "00-b")
