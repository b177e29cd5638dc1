"""Console page times (issue 16): each page with 1,000 functions and 1,000,000 history
records in the store (target <= 200 ms).

The history is filled directly through the store's API (``SqliteHistoryStore.write``:
1,000 records and a day of minute rows per function), then ``ember serve`` starts on
that data dir (``--auth none``: sign-in costs one HMAC, measured elsewhere) and the
1,000 functions are created through the API. Each page is fetched ``--rounds`` times
over loopback; the figure is the median and the worst of the whole request, an upper
bound of the server's render time.

    cd bench && ../.venv/bin/python bench_console.py [--records 1000000] [--rounds 20]
"""

import argparse
import asyncio
import io
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx

import servers
from ember.observe.records import BUCKETS, InvocationRecord, Minute
from ember.observe.sqlite import FILE_NAME, SqliteHistoryStore
from report import cpu_busy, machine

TARGET_MS = 200.0
FUNCTIONS = 1000
BATCH = 50_000
ROLE = "arn:aws:iam::000000000000:role/bench"


def name(n: int) -> str:
    return f"function-{n:04d}"


async def fill(data_dir: Path, records: int, now: float) -> None:
    """``records`` records spread over the functions (the newest last hour), and a day of
    minute rows for each function."""
    store = SqliteHistoryStore(data_dir / FILE_NAME, "bench")
    await store.open()
    batch: list[InvocationRecord] = []
    for n in range(records):
        outcome = "error" if n % 17 == 0 else "success"
        start = now - 3600 + n * 3600 / records
        batch.append(InvocationRecord(name(n % FUNCTIONS), f"req-{n:08d}", "$LATEST", "sync",
                                      start, 1.5, 2, None, outcome,
                                      "ValueError" if outcome == "error" else None,
                                      128, 20, "sb", "", "bench"))  # fmt: skip
        if len(batch) == BATCH:
            await store.write(batch, [])
            batch = []
    await store.write(batch, [])
    first = int(now) // 60 - 24 * 60
    for n in range(FUNCTIONS):
        durations = [0] * BUCKETS
        durations[3] = 10
        minutes = [Minute(name(n), m, 10, 1, 0, 2, durations) for m in range(first, first + 1440)]
        await store.write([], minutes)
    await store.close()


def package() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


def create_functions(client: httpx.Client) -> None:
    import base64

    code = base64.b64encode(package()).decode()
    for n in range(FUNCTIONS):
        body = {"FunctionName": name(n), "Runtime": "python3.11", "Handler": "app.handler",
                "Role": ROLE, "Code": {"ZipFile": code}}  # fmt: skip
        response = client.post("/2015-03-31/functions", json=body)
        assert response.status_code == 201, response.text


def timed(client: httpx.Client, path: str, rounds: int) -> tuple[float, float]:
    client.get(path).raise_for_status()  # warm: templates compiled, caches filled
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return statistics.median(times), max(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    print(machine(cpu_busy()))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        data_dir = workdir / "data"
        data_dir.mkdir()
        started = time.perf_counter()
        asyncio.run(fill(data_dir, args.records, time.time()))
        print(f"filled {args.records} records and {FUNCTIONS} days of minutes "
              f"in {time.perf_counter() - started:.0f} s")  # fmt: skip
        port = servers.free_port()
        base = f"http://127.0.0.1:{port}"
        cmd = servers.ember_command(port, data_dir)
        with (
            servers.running(cmd, workdir / "ember.log", f"{base}/health"),
            httpx.Client(base_url=base, timeout=120) as client,
        ):
            started = time.perf_counter()
            create_functions(client)
            print(f"created {FUNCTIONS} functions in {time.perf_counter() - started:.0f} s")
            middle = name(FUNCTIONS // 2)
            pages = [
                "/console/",
                f"/console/?marker={client.get('/2015-03-31/functions?MaxItems=500').json()['NextMarker']}",
                f"/console/functions/{middle}",
                f"/console/functions/{middle}?outcome=error&since=30m",
                f"/console/functions/{middle}/series.json?range=24h",
                "/console/queue",
                "/console/sandboxes",
                "/console/limits",
            ]
            # The page shows the function's records (the store answered, not an empty page).
            assert "req-" in client.get(f"/console/functions/{middle}").text
            worst_page = 0.0
            for path in pages:
                median, worst = timed(client, path, args.rounds)
                worst_page = max(worst_page, median)
                print(f"{path}: median {median:.1f} ms, worst {worst:.1f} ms")
    verdict = "met" if worst_page <= TARGET_MS else "MISSED"
    print(f"slowest page's median {worst_page:.1f} ms (target <= {TARGET_MS:.0f} ms: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
