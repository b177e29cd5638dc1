"""Trace ids: the caller's kept, else a fresh one per invocation, in X-Ray's format.

Every invocation carries one ``X-Amzn-Trace-Id`` value
(``Root=1-{8 hex epoch seconds}-{24 hex random};Parent={16 hex};Sampled=0|1``),
which the function sees as ``_X_AMZN_TRACE_ID`` (Python) or the
``Lambda-Runtime-Trace-Id`` header (custom runtimes). The rule, for every
entry point and both tracing modes:

1. the caller's ``X-Amzn-Trace-Id``, when it has a well-formed Root, is kept
   (with a Parent and a Sampled decision added when it has none);
2. else the caller's W3C ``traceparent`` is carried over (its trace id split
   into the Root's epoch and random parts, its parent id as Parent, its
   sampled flag as Sampled), as X-Ray and OpenTelemetry map the two;
3. else a fresh id: never shared between invocations (96 random bits), and
   sampled only when the function's TracingConfig is ``Active``.

The random bits come from ``random.getrandbits`` (not ``uuid4``, not the
system's entropy): a trace id identifies, it protects nothing, and this runs
on every invocation's hot path.
"""

from __future__ import annotations

import random
import re
import time

_XRAY_ROOT = re.compile(r"(?:^|;)\s*Root=1-[0-9a-fA-F]{8}-[0-9a-fA-F]{24}(?:;|$)")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_MAX_HEADER = 256  # a longer value is not a trace id anyone sent on purpose

_bits = random.Random().getrandbits  # its own generator: nobody else reseeds it


def fresh(sampled: bool) -> str:
    """A new trace id: the current epoch second and 96 random bits."""
    bits = _bits(160)
    return (
        f"Root=1-{int(time.time()):08x}-{bits >> 64:024x};"
        f"Parent={bits & 0xFFFFFFFFFFFFFFFF:016x};Sampled={1 if sampled else 0}"
    )


def from_traceparent(value: str) -> str | None:
    """The X-Ray form of a W3C ``traceparent``, or None when it is malformed."""
    match = _TRACEPARENT.match(value.strip())
    if match is None or match[1] == "0" * 32 or match[2] == "0" * 16:
        return None
    trace, parent, flags = match.groups()
    return f"Root=1-{trace[:8]}-{trace[8:]};Parent={parent};Sampled={int(flags, 16) & 1}"


def trace_id(amzn: str | None, traceparent: str | None, active: bool) -> str:
    """The invocation's trace id from the caller's headers (either may be None)."""
    if amzn and len(amzn) <= _MAX_HEADER and _XRAY_ROOT.search(amzn):
        return _completed(amzn.strip(), active)
    if traceparent and len(traceparent) <= _MAX_HEADER:
        carried = from_traceparent(traceparent)
        if carried is not None:
            return carried
    return fresh(active)


def _completed(header: str, active: bool) -> str:
    """The caller's X-Ray header with the Parent and Sampled Lambda adds when absent."""
    if "Parent=" not in header:
        header += f";Parent={_bits(64):016x}"
    if "Sampled=" not in header:
        header += f";Sampled={1 if active else 0}"
    return header


def headers_of(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    """(X-Amzn-Trace-Id, traceparent) among raw HTTP headers, names in any case."""
    amzn = parent = None
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"x-amzn-trace-id":
            amzn = value.decode("latin-1")
        elif lowered == b"traceparent":
            parent = value.decode("latin-1")
    return amzn, parent


__all__ = ["fresh", "from_traceparent", "headers_of", "trace_id"]
