"""Bounded input under attack: /health latency and server memory while 500 slow
connections and a stream of 1 GB uploads hit the server.

Targets (issue 20): /health p99 <= 10 ms under attack, server RSS growth <= 64 MB.
The same run first measures /health p99 on the idle server (the baseline).

The attackers run in a child process (their own interpreter: their work does not
share this process's GIL with the latency probe):
- 500 slow-loris connections, each sending a request head one byte per second and
  never ending it; when the server closes one (its read timeout) it reconnects;
- one upload after another of 1 GB CreateFunction bodies, declared
  (``Content-Length``) and chunked in turn, each sent until the server cuts it off.
The probe sends ``GET /health`` over one keep-alive connection, one request at a
time, and the server's VmRSS is sampled every 50 ms (the max growth over idle).

Run: ``cd bench && ../.venv/bin/python bench_hardening.py``. Writes
docs/benchmarks-hardening.md; exit status 0 when measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

import servers
from report import cpu_busy, machine, percentile

SLOW_CONNECTIONS = 500
UPLOAD_BYTES = 1024 * 1024 * 1024
PROBES = 3000
IDLE_PROBES = 3000
TARGET_P99_MS = 10.0
TARGET_GROWTH_MB = 64.0
MB = 1024 * 1024
DOC_PATH = servers.ROOT / "docs" / "benchmarks-hardening.md"
CREATE = "/2015-03-31/functions"


# The attackers (the child process: ``bench_hardening.py attack PORT``)


async def _slow_loris(port: int, stop: asyncio.Event) -> None:
    head = f"POST {CREATE} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode()
    while not stop.is_set():
        with contextlib.suppress(OSError):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(head)
                while not stop.is_set() and not reader.at_eof():
                    writer.write(b"x")
                    await writer.drain()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(reader.read(65536), 1.0)
            finally:
                writer.close()
        await asyncio.sleep(0.1)


async def _uploads(port: int, stop: asyncio.Event) -> None:
    chunk = b"A" * MB
    framed = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    chunked = False
    while not stop.is_set():
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {UPLOAD_BYTES}"
            writer.write(f"POST {CREATE} HTTP/1.1\r\nHost: 127.0.0.1\r\n{framing}\r\n\r\n".encode())
            try:
                for _ in range(UPLOAD_BYTES // MB):
                    writer.write(framed if chunked else chunk)
                    await writer.drain()
                    if stop.is_set():
                        break
            finally:
                writer.close()
        chunked = not chunked


async def _attack(port: int) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_reader(sys.stdin.fileno(), stop.set)  # parent says stop
    tasks = [asyncio.create_task(_slow_loris(port, stop)) for _ in range(SLOW_CONNECTIONS)]
    tasks.append(asyncio.create_task(_uploads(port, stop)))
    await asyncio.gather(*tasks)


# The measurement


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _probe(url: str, count: int) -> list[float]:
    """Latencies (ms) of ``count`` sequential GET /health over one connection."""
    samples = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(50):  # warm the connection
            client.get("/health")
        for _ in range(count):
            start = time.perf_counter()
            response = client.get("/health")
            samples.append((time.perf_counter() - start) * 1000)
            response.raise_for_status()
    return samples


def _watch_rss(pid: int, stop: threading.Event, peak: list[int]) -> None:
    while not stop.wait(0.05):
        peak[0] = max(peak[0], _rss(pid))


def _under_attack(url: str, port: int, pid: int) -> tuple[list[float], int]:
    attacker = subprocess.Popen(
        [sys.executable, __file__, "attack", str(port)], stdin=subprocess.PIPE
    )
    peak = [_rss(pid)]
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_rss, args=(pid, stop, peak))
    watcher.start()
    try:
        time.sleep(5)  # the slow connections open, the first uploads are under way
        samples = _probe(url, PROBES)
    finally:
        stop.set()
        watcher.join()
        assert attacker.stdin is not None
        attacker.stdin.close()
        try:
            attacker.wait(30)
        except subprocess.TimeoutExpired:
            attacker.kill()
            attacker.wait()
    return samples, peak[0]


def main() -> None:
    busy = cpu_busy()
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as scratch:
        command = [*servers.ember_command(port, Path(scratch) / "data"), "--read-timeout", "10"]
        with servers.running(command, Path(scratch) / "ember.log", url + "/health") as process:
            idle_samples = _probe(url, IDLE_PROBES)
            idle_rss = _rss(process.pid)
            samples, peak = _under_attack(url, port, process.pid)
    idle_p99 = percentile(idle_samples, 99)
    p99 = percentile(samples, 99)
    growth = (peak - idle_rss) / MB
    info = machine(busy)
    met = lambda ok: "met" if ok else "MISSED"  # noqa: E731
    lines = [
        "# Hardening benchmark: bounded input under attack",
        "",
        f"Written by `bench/bench_hardening.py` ({info['date']}, {info['nproc']} CPUs, "
        f"load {info['load']}, busy {info['busy']}). ember with `--read-timeout 10`; "
        f"{SLOW_CONNECTIONS} slow-loris connections (a head byte a second, reconnecting when "
        "closed) and one 1 GB CreateFunction upload after another (declared, chunked in turn) "
        "from another process, while one keep-alive client sends GET /health.",
        "",
        "| measure | idle | under attack | target |",
        "|---|---:|---:|---|",
        f"| /health p50 | {percentile(idle_samples, 50):.2f} ms | {percentile(samples, 50):.2f} ms"
        " | |",
        f"| /health p99 | {idle_p99:.2f} ms | {p99:.2f} ms | <= {TARGET_P99_MS:.0f} ms "
        f"{met(p99 <= TARGET_P99_MS)} |",
        f"| server RSS | {idle_rss / MB:.0f} MB | {peak / MB:.0f} MB (+{growth:.1f} MB) | growth "
        f"<= {TARGET_GROWTH_MB:.0f} MB {met(growth <= TARGET_GROWTH_MB)} |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    DOC_PATH.write_text(text)


if __name__ == "__main__":
    if sys.argv[1:2] == ["attack"]:
        asyncio.run(_attack(int(sys.argv[2])))
    else:
        main()
