"""Spans over OTLP (``--otlp-endpoint``): one tree per call, built after it finished.

Imported only when the option is given (``observe.wiring``): without it no
OpenTelemetry module is loaded. The spans are made in the Recorder's drain,
off the call's path, from the times the invocation service took
(``records.Call``), with explicit start and end times:

    ember.invoke                  the service, from taking the call to the answer
      ember.throttle              rate limits and the concurrency lease
      ember.acquire               placement and a sandbox's lease
        ember.init                Init of a new sandbox (cold starts only)
      ember.sandbox.invoke        the handler's run, the result back

Their trace id is the invocation's: the Root of its ``X-Amzn-Trace-Id`` (or the
trace id of its ``traceparent``), whose Parent becomes the parent of
``ember.invoke``; a call that came without one gets the id the runtime derives
from its request id (``Root=1-<time>-<first 24 hex digits>``), so the
function's own ``_X_AMZN_TRACE_ID`` names the same trace. A caller's
``Sampled=0`` (or flags 00) is honoured: nothing is exported for that call.
"""

from __future__ import annotations

import random
import re

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode

from ember import __version__
from ember.observe.records import Call, derived_trace_header

_XRAY = re.compile(
    r"(?:Root=)?1-(?P<time>[0-9a-f]{8})-(?P<id>[0-9a-f]{24})(?:;Parent=(?P<parent>[0-9a-f]{16}))?"
    r"(?:;Sampled=(?P<sampled>[01]))?"
)
_TRACEPARENT = re.compile(
    r"00-(?P<id>[0-9a-f]{32})-(?P<parent>[0-9a-f]{16})-(?P<flags>[0-9a-f]{2})"
)
_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)


class _GivenTraceIds(IdGenerator):
    """Root spans get the trace id (and, for ember's own trace ids, the span id) set
    just before they start: the call's own."""

    def __init__(self) -> None:
        self.next_trace_id = 0
        self.next_span_id = 0
        self._random = random.Random()

    def generate_span_id(self) -> int:
        given, self.next_span_id = self.next_span_id, 0
        return given or self._random.getrandbits(64)

    def generate_trace_id(self) -> int:
        return self.next_trace_id or self._random.getrandbits(128)


def trace_of(call: Call, wall_start: float) -> tuple[int, int | None, bool]:
    """(trace id, the caller's parent span id or None, sampled) of ``call``."""
    if match := _TRACEPARENT.search(call.trace_id):
        sampled = int(match["flags"], 16) & 1 == 1
        return int(match["id"], 16), int(match["parent"], 16), sampled
    # A header that is neither (or none at all): the id the runtime derives.
    for header in (call.trace_id, derived_trace_header(call.request_id, wall_start)):
        if match := _XRAY.search(header):
            parent = int(match["parent"], 16) if match["parent"] else None
            return int(match["time"] + match["id"], 16), parent, match["sampled"] != "0"
    raise AssertionError("a derived X-Ray header always parses")


def _ns(perf: float, offset: float) -> int:
    return int((perf + offset) * 1e9)


class Tracer:
    """Turns drained calls into spans (``export``, the Recorder's hook) for ``processor``."""

    def __init__(self, processor: SpanProcessor, node: str) -> None:
        self._ids = _GivenTraceIds()
        resource = Resource.create(
            {"service.name": "ember", "service.version": __version__, "service.instance.id": node}
        )
        self._provider = TracerProvider(resource=resource, id_generator=self._ids)
        self._provider.add_span_processor(processor)
        self._tracer = self._provider.get_tracer("ember.observe", __version__)

    @classmethod
    def otlp(cls, endpoint: str, node: str) -> Tracer:
        """Batches exported over OTLP/HTTP (protobuf) to ``endpoint`` (``/v1/traces`` is
        added unless the URL ends with it)."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        url = endpoint.rstrip("/")
        if not url.endswith("/v1/traces"):
            url += "/v1/traces"
        exporter: SpanExporter = OTLPSpanExporter(endpoint=url)
        return cls(BatchSpanProcessor(exporter), node)

    def export(self, calls: list[Call], offset: float) -> None:
        """The span tree of each call (``offset``: wall clock minus perf_counter)."""
        for call in calls:
            trace_id, parent, sampled = trace_of(call, call.started + offset)
            # The operator asked for spans: ember's own trace ids are all exported (sample
            # in the collector); a caller's decision not to sample is kept.
            if sampled or not call.trace_given:
                self._spans(call, offset, trace_id, parent)

    def _spans(self, call: Call, offset: float, trace_id: int, parent: int | None) -> None:
        context = None
        if parent is not None and not call.trace_given:
            # ember made this trace id: its Parent, which the function sees, is the root span.
            self._ids.next_span_id, parent = parent, None
        if parent is not None:
            remote = SpanContext(trace_id, parent, is_remote=True, trace_flags=_SAMPLED)
            context = trace.set_span_in_context(NonRecordingSpan(remote))
        self._ids.next_trace_id = trace_id
        tracer = self._tracer
        root = tracer.start_span(
            "ember.invoke",
            context=context,
            kind=SpanKind.SERVER,
            start_time=_ns(call.started, offset),
            attributes={
                "faas.invocation_id": call.request_id,
                "faas.name": call.function,
                "faas.version": call.version,
                "faas.coldstart": call.init_ms is not None,
                "ember.origin": call.origin,
                "ember.qualifier": call.qualifier,
                "ember.sandbox_id": call.sandbox_id,
            },
        )
        self._ids.next_trace_id = 0
        inside = trace.set_span_in_context(root)
        for name, start, end in (
            ("ember.throttle", call.started, call.admitted),
            ("ember.acquire", call.admitted, call.acquired),
            ("ember.sandbox.invoke", call.acquired, call.finished),
        ):
            span = tracer.start_span(name, context=inside, start_time=_ns(start, offset))
            if name == "ember.acquire" and call.init_ms is not None:
                init = tracer.start_span(
                    "ember.init",
                    context=trace.set_span_in_context(span),
                    start_time=_ns(end - call.init_ms / 1000, offset),
                )
                init.end(end_time=_ns(end, offset))
            span.end(end_time=_ns(end, offset))
        if call.failure is not None:
            root.set_status(Status(StatusCode.ERROR))
        root.end(end_time=_ns(call.finished, offset))

    def shutdown(self) -> None:
        """Export what is batched, then stop."""
        self._provider.shutdown()
