"""Spans of recorded calls, exported to the SDK's in-memory exporter: the tree and its ids."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ember.observe.recorder import Recorder
from ember.observe.records import Call
from ember.observe.sqlite import SqliteHistoryStore
from ember.observe.tracing import Tracer

REQUEST_ID = "3f1c2a9e-5b7d-4c1e-9a2b-0000000000a1"


def call(
    trace_id: str = "",
    init_ms: float | None = None,
    failure: bytes | None = None,
    given: bool = True,
) -> Call:
    return Call(
        "greet",
        "live",
        "3",
        REQUEST_ID,
        "sync",
        trace_id,
        100.0,  # started
        100.001,  # admitted
        100.050 if init_ms else 100.002,  # acquired
        100.010 + (0.050 if init_ms else 0.002),  # finished
        init_ms,
        failure,
        128,
        20,
        "sb-7",
        1,
        given and bool(trace_id),
    )


def spans_of(*calls: Call, tmp_path: Path) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    tracer = Tracer(SimpleSpanProcessor(exporter), node="n1")
    store = SqliteHistoryStore(tmp_path / "history.sqlite3", "n1")
    recorder = Recorder(store, node="n1", history_size=10, clock=lambda: 1_764_990_000.0)
    recorder._export = tracer.export  # the wiring's hook, given after the clock is fixed
    for one in calls:
        recorder.call(one)
    recorder.drain()
    tracer.shutdown()
    return list(exporter.get_finished_spans())


def by_name(spans: list[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


def test_a_cold_call_is_one_tree_under_the_callers_xray_parent(tmp_path: Path) -> None:
    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    spans = by_name(spans_of(call(header, init_ms=40.0), tmp_path=tmp_path))
    assert set(spans) == {
        "ember.invoke",
        "ember.throttle",
        "ember.acquire",
        "ember.init",
        "ember.sandbox.invoke",
    }
    root = spans["ember.invoke"]
    trace_id = 0x5759E988BD862E3FE1BE46A994272793
    assert {span.context.trace_id for span in spans.values()} == {trace_id}
    assert root.parent is not None and root.parent.span_id == 0x53995C3F42CD8AD8
    assert root.parent.is_remote
    for child in ("ember.throttle", "ember.acquire", "ember.sandbox.invoke"):
        assert spans[child].parent.span_id == root.context.span_id  # type: ignore[union-attr]
    assert spans["ember.init"].parent.span_id == spans["ember.acquire"].context.span_id  # type: ignore[union-attr]
    assert root.attributes is not None
    assert root.attributes["faas.invocation_id"] == REQUEST_ID
    assert root.attributes["faas.coldstart"] is True
    assert root.attributes["faas.name"] == "greet" and root.attributes["ember.qualifier"] == "live"
    # Times are the call's own: the init span ends where the lease did.
    init, acquire = spans["ember.init"], spans["ember.acquire"]
    assert init.end_time == acquire.end_time
    # Wall-clock nanoseconds from a float near 1.7e9 s: exact to a fraction of a microsecond.
    assert abs(init.end_time - init.start_time - 40_000_000) < 1_000  # type: ignore[operator]
    assert root.start_time <= spans["ember.throttle"].start_time  # type: ignore[operator]


def test_a_call_without_a_header_gets_the_runtimes_trace_id(tmp_path: Path) -> None:
    spans = by_name(spans_of(call(), tmp_path=tmp_path))
    assert "ember.init" not in spans
    root = spans["ember.invoke"]
    assert root.parent is None
    digits = REQUEST_ID.replace("-", "")[:24]
    assert f"{root.context.trace_id:032x}".endswith(digits)


def test_embers_own_trace_id_is_exported_with_its_parent_as_the_root_span(
    tmp_path: Path,
) -> None:
    """A fresh id (the caller sent none) is exported even unsampled, and the Parent the
    function saw in _X_AMZN_TRACE_ID is ember's root span, not a dangling one."""
    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
    spans = by_name(spans_of(call(header, given=False), tmp_path=tmp_path))
    root = spans["ember.invoke"]
    assert root.parent is None
    assert root.context.span_id == 0x53995C3F42CD8AD8
    assert root.context.trace_id == 0x5759E988BD862E3FE1BE46A994272793
    assert spans["ember.throttle"].parent.span_id == root.context.span_id  # type: ignore[union-attr]


def test_traceparent_ids_are_kept_and_failures_marked(tmp_path: Path) -> None:
    header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    spans = by_name(spans_of(call(header, failure=b'{"errorType":"X"}'), tmp_path=tmp_path))
    root = spans["ember.invoke"]
    assert root.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert root.parent is not None and root.parent.span_id == 0xB7AD6B7169203331
    assert not root.status.is_ok


def test_an_unsampled_caller_gets_no_spans(tmp_path: Path) -> None:
    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
    assert spans_of(call(header), tmp_path=tmp_path) == []


def test_without_an_endpoint_neither_the_sdk_nor_the_exporter_is_loaded(tmp_path: Path) -> None:
    # The MCP SDK loads OpenTelemetry's API (no-op without an SDK) whatever ember does.
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from ember.config import Settings\n"
        "from ember.server import application, build\n"
        f"application(build(Settings(data_dir=Path({str(tmp_path)!r}), sandbox='process')))\n"
        "ours = ('opentelemetry.sdk', 'opentelemetry.exporter', 'ember.observe.tracing')\n"
        "print(sorted(m for m in sys.modules if m.startswith(ours)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_an_endpoint_without_the_sdk_installed_is_refused_by_name(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "sys.modules['opentelemetry.sdk'] = None  # as if ember[otel] were not installed\n"
        "from pathlib import Path\n"
        "from ember.config import Settings\n"
        "from ember.errors import StartupRefused\n"
        "from ember.server import build\n"
        f"settings = Settings(data_dir=Path({str(tmp_path)!r}), sandbox='process',\n"
        "                    otlp_endpoint='http://127.0.0.1:4318')\n"
        "try:\n"
        "    build(settings)\n"
        "except StartupRefused as refused:\n"
        "    print(refused.message)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'ember[otel]'" in done.stdout
