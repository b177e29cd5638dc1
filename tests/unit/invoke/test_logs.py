from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import orjson

from ember.invoke.logs import MAX_STREAMED, InvocationLog, LogFormat, LogStore, error_line


def _entry(output: bytes = b"hello\n", init_ms: float | None = 3.0) -> InvocationLog:
    return InvocationLog("fn", "rid", "$LATEST", output, b"", 1.234, 128, 20, init_ms)


def test_render_has_lambdas_lines() -> None:
    text = _entry().render().decode()
    lines = text.splitlines()
    assert lines[0] == "START RequestId: rid Version: $LATEST"
    assert lines[1] == "hello"
    assert lines[2] == "END RequestId: rid"
    assert lines[3].startswith("REPORT RequestId: rid\tDuration: 1.23 ms\tBilled Duration: 2 ms")
    assert "Memory Size: 128 MB\tMax Memory Used: 20 MB\tInit Duration: 3.00 ms" in lines[3]
    assert "Init Duration" not in _entry(init_ms=None).render().decode()


def test_a_restored_sandboxs_report_carries_the_restore_in_place_of_init() -> None:
    entry = _entry(init_ms=None)._replace(restore_ms=12.3401)
    report = entry.render().decode().splitlines()[3]
    assert report == (
        "REPORT RequestId: rid\tDuration: 1.23 ms\tBilled Duration: 2 ms\t"
        "Memory Size: 128 MB\tMax Memory Used: 20 MB\t"
        "Restore Duration: 12.34 ms\tBilled Restore Duration: 13 ms\t"
    )
    # Billed rounded up to the millisecond, as Lambda bills it.
    exact = _entry(init_ms=None)._replace(restore_ms=7.0).render().decode()
    assert "\tRestore Duration: 7.00 ms\tBilled Restore Duration: 7 ms\t" in exact


def test_a_restored_sandboxs_json_report_has_restore_duration_ms() -> None:
    restored = _entry(init_ms=None)._replace(restore_ms=12.3456, log_format=LogFormat(json=True))
    metrics = _report_metrics(restored)
    assert metrics["restoreDurationMs"] == 12.35
    assert metrics["billedRestoreDurationMs"] == 13
    assert "initDurationMs" not in metrics
    cold = _report_metrics(_entry()._replace(log_format=LogFormat(json=True)))
    assert cold["initDurationMs"] == 3.0
    assert "restoreDurationMs" not in cold


def _report_metrics(entry: InvocationLog) -> dict[str, object]:
    """The metrics of the one platform.report record ``entry`` renders."""
    records = [orjson.loads(line) for line in entry.render().splitlines() if line.startswith(b"{")]
    (report,) = [record for record in records if record["type"] == "platform.report"]
    return dict(report["record"]["metrics"])


def test_tail_is_the_last_4_kb() -> None:
    tail = base64.b64decode(_entry(output=b"x" * 10000).tail())
    assert len(tail) == 4096
    assert tail.endswith(b"\t\n")


def test_store_appends_and_reads_from_an_offset(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = LogStore(tmp_path, max_bytes=1 << 20)
        store.record(_entry(b"one\n"))
        first, offset = store.read("fn", None)
        assert "one" in first
        store.record(_entry(b"two\n"))
        second, _ = store.read("fn", offset)
        assert "two" in second and "one" not in second
        assert store.read("missing", None) == ("", 0)

    asyncio.run(scenario())


def test_error_lines() -> None:
    assert error_line("r", "ValueError", "boom") == b"[ERROR] ValueError: boom\n"
    line = error_line(
        "r", "Sandbox.Timedout", "RequestId: r Error: Task timed out after 1.00 seconds"
    )
    assert line.endswith(b"r Task timed out after 1.00 seconds\n")


def test_streamed_output_is_written_between_start_and_end(tmp_path: Path) -> None:
    store = LogStore(tmp_path, max_bytes=1 << 20)
    stream = store.stream("fn", "rid", "$LATEST", b"init line")
    stream(b"first\n")
    store.flush()  # a write while the call runs: the stream keeps appending after it
    stream(b"second, unfinished")
    store.record(_entry(b"init line\nfirst\nsecond, unfinished")._replace(streamed=stream.end()))
    text, _ = store.read("fn", None)
    assert text.splitlines()[:4] == [
        "START RequestId: rid Version: $LATEST",
        "init line",
        "first",
        "second, unfinished",
    ]
    assert text.splitlines()[4] == "END RequestId: rid"
    assert text.count("START RequestId") == 1


def test_a_call_that_printed_nothing_is_one_record(tmp_path: Path) -> None:
    store = LogStore(tmp_path, max_bytes=1 << 20)
    stream = store.stream("fn", "rid", "$LATEST", b"")
    assert stream.end() is None
    store.record(_entry(b"")._replace(streamed=stream.end()))
    text, _ = store.read("fn", None)
    assert text.startswith("START RequestId: rid") and "END RequestId: rid" in text


def test_streamed_output_is_cut_at_its_limit(tmp_path: Path) -> None:
    store = LogStore(tmp_path, max_bytes=64 << 20)
    stream = store.stream("fn", "rid", "$LATEST", b"")
    line = b"y" * 1023 + b"\n"
    for _ in range(MAX_STREAMED // len(line) + 100):
        stream(line)
    store.record(_entry(b"")._replace(streamed=stream.end()))
    text, _ = store.read("fn", 0)
    assert text.count("[ember: output truncated]") == 1
    assert len(text) < MAX_STREAMED + 4096
    assert text.splitlines()[-2] == "END RequestId: rid"
