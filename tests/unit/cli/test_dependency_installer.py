"""Unit tests of the dependency installer's pure parts: finding, naming, pip's errors."""

from __future__ import annotations

import json
import sys
import zipfile
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from ember import interpreters
from ember.cli.client import EmberClient
from ember.cli.dependencies import (
    failed_package,
    find_requirements,
    layer_name,
    normalize,
    pip_command,
    zip_layer,
)
from ember.cli.main import CliState, main


def test_requirements_txt_wins_and_is_normalized(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("# deps\nrequests==2.*   # http\n\n  six\nsix\n")
    (tmp_path / "pyproject.toml").write_text('[project]\ndependencies = ["ignored"]\n')
    assert find_requirements(tmp_path) == ["requests==2.*", "six"]


def test_pyproject_dependencies_are_used_without_requirements_txt(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = ["inflection>=0.5", "attrs"]\n'
    )
    assert find_requirements(tmp_path) == ["inflection>=0.5", "attrs"]
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert find_requirements(tmp_path) is None


def test_the_layer_name_depends_on_the_requirements_and_runtime_only() -> None:
    name = layer_name(["b", "a==1"], "python3.11")
    assert name.startswith("ember-deps-") and len(name) == len("ember-deps-") + 16
    assert layer_name(["a==1", "b  # comment"], "python3.11") == name
    assert layer_name(["a==1", "b"], "python3.12") != name
    assert layer_name(["a==2", "b"], "python3.11") != name
    assert normalize(["x  y", "x y"]) == ["x y"]


def test_pip_runs_the_local_interpreter_or_asks_for_wheels(tmp_path: Path) -> None:
    own = f"python{sys.version_info.major}.{sys.version_info.minor}"
    local = pip_command(own, tmp_path / "t", tmp_path / "r.txt")
    assert local[:3] == [sys.executable, "-m", "pip"] and "--only-binary=:all:" not in local
    cross = pip_command("python3.99", tmp_path / "t", tmp_path / "r.txt")
    assert "--only-binary=:all:" in cross
    assert cross[cross.index("--python-version") + 1] == "3.99"


def test_pips_errors_name_the_package() -> None:
    missing = (
        "Collecting nope-pkg==1.0\n"
        "ERROR: Could not find a version that satisfies the requirement nope-pkg==1.0 "
        "(from versions: none)\n"
        "ERROR: No matching distribution found for nope-pkg==1.0\n"
    )
    error = failed_package(missing)
    assert error.package == "nope-pkg==1.0"
    assert str(error).startswith("pip could not install nope-pkg==1.0: No matching distribution")
    build = "Collecting ok\nCollecting broken\n  error: subprocess-exited-with-error\n"
    build += "ERROR: Failed building wheel for broken\n"
    assert failed_package(build).package == "broken"
    assert failed_package("Collecting last-one\nKilled\n").package == "last-one"


def test_the_layer_zip_puts_everything_under_python(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("X = 1\n")
    data = zip_layer(tmp_path)
    assert zipfile.ZipFile(BytesIO(data)).namelist() == ["python/pkg/__init__.py"]
    assert zip_layer(tmp_path) == data


def test_deploy_takes_the_dependency_layer_off_when_requirements_go(tmp_path: Path) -> None:
    own = "arn:aws:lambda:us-east-1:000000000000:layer:mine:3"
    deps = "arn:aws:lambda:us-east-1:000000000000:layer:ember-deps-0123456789abcdef:1"
    config = {"FunctionName": "f", "Runtime": "python3.11", "Layers": [{"Arn": deps}, {"Arn": own}]}
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"Configuration": config})
        if request.url.path.endswith("/configuration"):
            sent.append(json.loads(request.content))
        return httpx.Response(200, json=config)

    (tmp_path / "app.py").write_text("def handler(e, c): return 1\n")
    state = CliState(
        client_factory=lambda e: EmberClient(e, transport=httpx.MockTransport(handler))
    )
    result = CliRunner().invoke(
        main, ["deploy", "f", str(tmp_path), "--handler", "app.handler"], obj=state
    )
    assert result.exit_code == 0, result.output
    assert sent[0]["Layers"] == [own]


def test_pips_own_error_lines_are_kept() -> None:
    output = (
        "Collecting broken\n"
        "  Downloading broken-1.0.tar.gz (1 kB)\n"
        "  error: subprocess-exited-with-error\n"
        "  \n"
        "  \u00d7 python setup.py egg_info did not run successfully.\n"
        "  │ exit code: 1\n"
        "  ╰─> ModuleNotFoundError: No module named 'numpy'\n"
        "ERROR: Failed building wheel for broken\n"
    )
    lines = failed_package(output).pip_lines
    assert lines[0] == "  error: subprocess-exited-with-error"
    assert "  ╰─> ModuleNotFoundError: No module named 'numpy'" in lines
    assert lines[-1] == "ERROR: Failed building wheel for broken"


def test_a_shim_that_fails_is_not_an_interpreter(tmp_path: Path) -> None:
    """A pyenv shim of a version that is not installed exists and exits 127: skipped."""
    shim = tmp_path / "python3.99"
    shim.write_text("#!/bin/sh\necho 'pyenv: python3.99: command not found' >&2\nexit 127\n")
    shim.chmod(0o755)
    assert interpreters.probe(str(shim), "3.99") is None
    liar = tmp_path / "python3.98"  # a wrapper starting another Python than its name says
    liar.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    liar.chmod(0o755)
    assert interpreters.probe(str(liar), "3.98") is None
    own = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert interpreters.probe(str(liar), own) == sys.executable
