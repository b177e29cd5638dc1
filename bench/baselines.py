"""Baselines that need no server: the handler called in-process, and a process per call."""

import importlib.util
import json
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any

from ember_api import EVENT, EXPECTED, HANDLER_FILE


def load_handler() -> Callable[[Any, Any], Any]:
    # Load by path under a unique name so the generic module name "app" cannot clash.
    spec = importlib.util.spec_from_file_location("ember_bench_handler", HANDLER_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler: Callable[[Any, Any], Any] = module.handler
    return handler


def raw_call_ns(repeats: int = 5) -> float:
    """Median ns per in-process handler call: the cost of the function with no platform at all."""
    handler = load_handler()
    if handler(EVENT, None) != EXPECTED:
        raise RuntimeError("bench handler returned something unexpected")
    timer = timeit.Timer("handler(event, None)", globals={"handler": handler, "event": EVENT})
    number, _ = timer.autorange()
    return statistics.median(t / number * 1e9 for t in timer.repeat(repeats, number))


def fresh_python_ms(n: int = 30) -> list[float]:
    """Wall time of a new interpreter per call: what a platform without sandbox reuse costs."""
    code = (
        f"import sys; sys.path.insert(0, {str(HANDLER_FILE.parent)!r}); import app, json; "
        f"print(json.dumps(app.handler({EVENT!r}, None)))"
    )
    cmd = [sys.executable, "-c", code]
    _run_checked(cmd)  # untimed: warms the page cache, as ember's server has by its first call
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        _run_checked(cmd)
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def _run_checked(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30)
    if json.loads(proc.stdout) != EXPECTED:
        raise RuntimeError(f"fresh python printed {proc.stdout!r}")
