from __future__ import annotations

import asyncio
import base64
from pathlib import Path

from ember.invoke.logs import InvocationLog, LogStore, error_line


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
