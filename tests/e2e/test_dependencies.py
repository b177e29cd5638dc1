"""End-to-end: `ember deploy` installs a directory's requirements from PyPI into a layer.

Needs PyPI (the issue's own test: a function importing a small pure-Python
package). ``inflection`` is one file, pure Python, unchanged since 2020.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import EMBER, Server

APP = """
import inflection

def handler(event, context):
    return {"camel": inflection.camelize("hello_world"), "file": inflection.__file__}
"""


def ember(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = server.cli_env()
    return subprocess.run([EMBER, *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def name(server: Server) -> Iterator[str]:
    function = f"deps-{uuid.uuid4().hex[:10]}"
    yield function
    ember(server, "rm", function)


def project(directory: Path, requirements: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "app.py").write_text(textwrap.dedent(APP))
    (directory / "requirements.txt").write_text(requirements)
    return directory


def deploy(server: Server, name: str, directory: Path) -> subprocess.CompletedProcess[str]:
    return ember(
        server, "deploy", name, str(directory), "--handler", "app.handler",
        "--runtime", "python3.11",
    )  # fmt: skip


def test_requirements_become_a_layer_reused_on_the_next_deploy(
    server: Server, aws: Any, name: str, tmp_path: Path
) -> None:
    directory = project(tmp_path / "app", "inflection==0.5.1  # tiny, pure Python\n")
    first = deploy(server, name, directory)
    assert first.returncode == 0, first.stderr
    assert "published layer ember-deps-" in first.stderr
    invoked = ember(server, "invoke", name)
    assert invoked.returncode == 0, invoked.stderr
    result = json.loads(invoked.stdout)
    assert result["camel"] == "HelloWorld"
    assert result["file"].startswith("/opt/python/inflection")

    second = deploy(server, name, directory)
    assert second.returncode == 0, second.stderr
    assert "reusing layer ember-deps-" in second.stderr
    layers = aws.get_function_configuration(FunctionName=name)["Layers"]
    assert len(layers) == 1 and ":layer:ember-deps-" in layers[0]["Arn"]
    layer_name = layers[0]["Arn"].split(":")[-2]
    versions = aws.list_layer_versions(LayerName=layer_name)["LayerVersions"]
    assert [v["Version"] for v in versions] == [1]  # reused, never published again


def test_a_failing_requirement_is_named_and_exits_1(
    server: Server, name: str, tmp_path: Path
) -> None:
    bad = f"ember-no-such-package-{uuid.uuid4().hex[:8]}"
    directory = project(tmp_path / "bad", f"inflection==0.5.1\n{bad}==1.0\n")
    failed = deploy(server, name, directory)
    assert failed.returncode == 1
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: DependencyInstallFailed: pip could not install")
    assert bad in last
    # pip's own lines come first, as pip wrote them.
    assert f"ERROR: No matching distribution found for {bad}==1.0" in failed.stderr
