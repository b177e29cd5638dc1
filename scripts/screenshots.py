"""`make screenshots`: PNGs of every console page, written to docs/console/.

Starts `ember serve` on a fresh data dir with the examples deployed, sends some
traffic (successes, errors, an async event that becomes a dead letter, a rate
limit), then signs in with headless Chromium (Debian's) and photographs each
page. So that the plots show a day rather than a minute, the day before start is
backfilled with synthetic minute rows, written through the history store's API
(the traffic of the last minutes is real).
"""

from __future__ import annotations

import asyncio
import configparser
import io
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import boto3
import httpx
from botocore.config import Config
from playwright.sync_api import sync_playwright

from ember.observe.records import BUCKETS, Minute, bucket_of
from ember.observe.sqlite import FILE_NAME, SqliteHistoryStore

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "console"
EMBER = ROOT / ".venv" / "bin" / "ember"
CHROMIUM = "/usr/bin/chromium"
ROLE = "arn:aws:iam::000000000000:role/examples"
EXAMPLES = ("hello", "transform", "context")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def backfill(data_dir: Path, functions: tuple[str, ...], now: float) -> None:
    """A day of plausible minute rows per function: a daily wave, a little noise."""
    rows: list[Minute] = []
    noise = random.Random(16)
    first = int(now) // 60 - 24 * 60
    for index, function in enumerate(functions):
        for minute in range(first, int(now) // 60):
            wave = 1 + math.sin((minute - first) / 1440 * 2 * math.pi + index)
            calls = int(wave * (20 + 10 * index) + noise.random() * 8)
            durations = [0] * BUCKETS
            for _ in range(calls):
                durations[bucket_of(noise.lognormvariate(1.2 + index * 0.5, 0.6))] += 1
            errors = int(calls * 0.03 * noise.random())
            busy = 1 + int(wave * 2 + noise.random())
            throttled = int(noise.random() < 0.02)
            row = Minute(function, minute, calls, errors, throttled, busy, durations)
            rows.append(row)

    async def write() -> None:
        store = SqliteHistoryStore(data_dir / FILE_NAME, "backfill")
        await store.open()
        await store.write([], rows)
        await store.close()

    asyncio.run(write())


def package(example: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.write(ROOT / "examples" / example / "app.py", "app.py")
    return buffer.getvalue()


def credentials(data_dir: Path) -> tuple[str, str]:
    parser = configparser.ConfigParser()
    parser.read(data_dir / "credentials")
    section = parser["ember"]
    return section["aws_access_key_id"], section["aws_secret_access_key"]


def traffic(url: str, key: tuple[str, str], env: dict[str, str]) -> None:
    lam = boto3.client(
        "lambda",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        config=Config(retries={"max_attempts": 0}),
    )
    for example in EXAMPLES:
        lam.create_function(
            FunctionName=example,
            Runtime="python3.11",
            Handler="app.handler",
            Role=ROLE,
            Code={"ZipFile": package(example)},
            Environment={"Variables": {"LOG_LEVEL": "info"}},
        )
    lam.publish_version(FunctionName="hello", Description="first release")
    lam.create_alias(FunctionName="hello", Name="live", FunctionVersion="1")
    for n in range(40):
        lam.invoke(FunctionName="hello", Payload=json.dumps({"name": f"visitor {n}"}))
        orders = [{"id": f"a{n}", "amount": n * 1.5}]
        if n % 9 == 0:
            orders = [{"id": "bad", "amount": "not a number"}]
        lam.invoke(FunctionName="transform", Payload=json.dumps({"orders": orders}))
    lam.invoke(FunctionName="context", Payload=b"{}")
    lam.put_function_event_invoke_config(FunctionName="transform", MaximumRetryAttempts=0)
    bad = json.dumps({"orders": [{"amount": "oops"}]})
    lam.invoke(FunctionName="transform", InvocationType="Event", Payload=bad)
    subprocess.run(
        [str(EMBER), "limit", "set", "hello", "--rate", "100/s", "--burst", "20"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    lam.put_function_concurrency(FunctionName="transform", ReservedConcurrentExecutions=5)
    time.sleep(3)  # the dead letter, and the history writer's next flush


def photograph(url: str, key: tuple[str, str]) -> list[Path]:
    written: list[Path] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.on("console", lambda message: print("browser:", message.text, file=sys.stderr))
        page.on("pageerror", lambda error: print("browser error:", error, file=sys.stderr))

        def shot(name: str, full: bool = True) -> None:
            path = OUT / f"{name}.png"
            page.screenshot(path=str(path), full_page=full)
            written.append(path)

        page.goto(url + "/console/")
        shot("signin", full=False)
        page.fill("input[name=access_key_id]", key[0])
        page.fill("input[name=secret]", key[1])
        page.click("button[type=submit]")
        page.wait_for_selector("table.functions")
        shot("functions")
        page.goto(url + "/console/functions/hello?range=24h")
        page.wait_for_function("window.emberPlots && window.emberPlots['plot-concurrency']")
        page.fill("textarea[name=payload]", json.dumps({"name": "console"}))
        page.click("#test button[type=submit]")
        page.wait_for_selector("#test-result pre.result")
        page.wait_for_timeout(500)
        shot("function")
        page.goto(url + "/console/functions/transform#queue")
        page.wait_for_function("window.emberPlots && window.emberPlots['plot-concurrency']")
        shot("function-errors")
        for name in ("queue", "sandboxes", "limits"):
            page.goto(f"{url}/console/{name}")
            shot(name)
        browser.close()
    return written


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ember-screenshots-") as scratch:
        data_dir = Path(scratch) / "data"
        data_dir.mkdir()
        backfill(data_dir, EXAMPLES, time.time())
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = [str(EMBER), "serve", "--port", str(port), "--data-dir", str(data_dir)]
        with open(Path(scratch) / "server.log", "wb") as log:
            server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            for _ in range(600):
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            key = credentials(data_dir)
            env = {
                **os.environ,
                "EMBER_ENDPOINT": url,
                "AWS_ACCESS_KEY_ID": key[0],
                "AWS_SECRET_ACCESS_KEY": key[1],
                "AWS_REGION": "us-east-1",
            }
            traffic(url, key, env)
            for path in photograph(url, key):
                print(f"wrote {path.relative_to(ROOT)}")
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
            if os.environ.get("EMBER_SCREENSHOTS_LOG"):
                print((Path(scratch) / "server.log").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
