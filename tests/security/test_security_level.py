"""The declared security level: no full isolation, no server, unless asked for.

A host where full isolation is impossible is made here with a user namespace:
`unshare --user --map-root-user` runs `ember serve` as a root that owns no
mount namespace, so the start-up probe sandbox cannot attach its code. The
server must refuse in one line that names the way out (`--sandbox process`),
and with that flag run unisolated while saying so at start and in /health.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import EMBER, Server, free_port, lambda_client, make_zip

USERNS = ["unshare", "--user", "--map-root-user"]


@pytest.fixture(scope="module", autouse=True)
def userns_available() -> None:
    if shutil.which("unshare") is None:
        pytest.skip("util-linux `unshare` is not installed: no way to fake a weaker host")
    probe = subprocess.run([*USERNS, "true"], capture_output=True, timeout=30)
    if probe.returncode:
        pytest.skip(f"user namespaces are not available here: {probe.stderr.decode().strip()}")


def test_a_host_without_full_isolation_refuses_to_start(tmp_path: Path) -> None:
    command = [*USERNS, EMBER, "serve", "--port", str(free_port())]
    command += ["--data-dir", str(tmp_path / "data")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    said = result.stdout + result.stderr
    assert result.returncode != 0, said
    assert "full isolation is not possible on this host" in said
    assert "--sandbox process" in said
    assert "Traceback" not in said, said


def test_sandbox_process_runs_unisolated_and_warns_at_start_and_in_health(
    tmp_path: Path,
) -> None:
    server = Server(tmp_path / "data", extra_args=["--sandbox", "process"], wrapper=USERNS)
    try:
        server.start()
        isolation = server.health()["isolation"]
        assert isolation["isolated"] is False
        assert "UNISOLATED" in isolation["warning"]
        assert "UNISOLATED" in server.output()
        aws = lambda_client(server)
        code = make_zip({"app.py": "def handler(event, context):\n    return event\n"})
        aws.create_function(
            FunctionName="dev",
            Runtime="python3.11",
            Role="arn:aws:iam::000000000000:role/dev",
            Handler="app.handler",
            Code={"ZipFile": code},
        )
        answer = aws.invoke(FunctionName="dev", Payload=b'{"ok": 1}')
        assert answer["Payload"].read() == b'{"ok": 1}'
    finally:
        if server.process is not None:
            assert server.stop(signal.SIGTERM) == 0, server.output()
