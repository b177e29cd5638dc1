"""End-to-end: Function manifests applied with the CLI to a real server, seen through boto3."""

from __future__ import annotations

import json
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import EMBER, Server, wait_until

API = "/_ember/apis/ember.dev/v1"

APP = """
import os

def handler(event, context):
    return {"init": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"],
            "greeting": os.environ.get("GREETING"), "event": event}
"""


def ember(server: Server, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = server.cli_env()
    result = subprocess.run([EMBER, *args], env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, f"ember {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result


def manifest(name: str, app: str, **spec: Any) -> str:
    """One Function document whose code is the directory ``src`` beside it."""
    body = {
        "apiVersion": "ember.dev/v1",
        "kind": "Function",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {
            "runtime": "python3.11",
            "handler": "app.handler",
            "code": {"path": "src"},
            **spec,
        },
    }
    return json.dumps(body)


@pytest.fixture
def app(tmp_path: Path, server: Server) -> Iterator[tuple[Path, str]]:
    """A manifest directory with its code, and a label value unique to the test."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text(textwrap.dedent(APP))
    label = f"t{uuid.uuid4().hex[:8]}"
    yield tmp_path, label
    for item in server.http.get(
        API + "/functions", params={"labelSelector": f"app={label}"}
    ).json()["items"]:
        server.http.delete(f"{API}/namespaces/default/functions/{item['metadata']['name']}")


def get_object(server: Server, name: str) -> dict[str, Any]:
    response = server.http.get(f"{API}/namespaces/default/functions/{name}", timeout=5)
    assert response.status_code == 200, response.text
    return dict(response.json())


def condition(body: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for found in (body.get("status") or {}).get("conditions", []):
        if found["type"] == kind:
            return dict(found)
    return None


def ready(server: Server, name: str) -> dict[str, Any] | None:
    """The object once Ready is True for its current generation."""
    body = get_object(server, name)
    found = condition(body, "Ready")
    current = found is not None and found["observedGeneration"] == body["metadata"]["generation"]
    return body if current and found is not None and found["status"] == "True" else None


def test_apply_creates_functions_that_boto3_sees_and_invokes(
    server: Server, aws: Any, app: tuple[Path, str]
) -> None:
    directory, label = app
    name = f"mf-{label}"
    (directory / "fn.yaml").write_text(
        manifest(
            name,
            label,
            memoryMB=256,
            timeoutSeconds=7,
            environment={"GREETING": "hi"},
            concurrency={"reserved": 5},
            rateLimit={"rate": 50, "period": "1s"},
            **{"async": {"maxRetryAttempts": 0, "maxEventAgeSeconds": 120}},
        )
    )
    result = ember(server, "apply", "-f", str(directory))
    assert result.stdout.strip() == f"function.ember.dev/{name} created"
    body = wait_until(lambda: ready(server, name))
    assert body["metadata"]["generation"] == 1
    config = aws.get_function(FunctionName=name)["Configuration"]
    assert (config["MemorySize"], config["Timeout"], config["Runtime"]) == (256, 7, "python3.11")
    assert config["Environment"]["Variables"] == {"GREETING": "hi"}
    assert aws.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 5
    invoke_config = aws.get_function_event_invoke_config(FunctionName=name)
    assert (invoke_config["MaximumRetryAttempts"], invoke_config["MaximumEventAgeInSeconds"]) == (
        0,
        120,
    )
    limits = server.http.get(f"/_ember/functions/{name}/limits").json()
    assert limits["RateLimits"][0]["limit"] == 50
    answer = json.loads(aws.invoke(FunctionName=name, Payload=b'{"x": 1}')["Payload"].read())
    assert answer == {"init": "on-demand", "greeting": "hi", "event": {"x": 1}}
    # Applying the same files again changes nothing.
    assert ember(server, "apply", "-f", str(directory)).stdout.strip().endswith("unchanged")
    assert get_object(server, name)["metadata"]["generation"] == 1


def test_a_spec_change_bumps_the_generation_and_a_label_change_does_not(
    server: Server, aws: Any, app: tuple[Path, str]
) -> None:
    directory, label = app
    name = f"gen-{label}"
    (directory / "fn.yaml").write_text(manifest(name, label))
    ember(server, "apply", "-f", str(directory))
    wait_until(lambda: ready(server, name))
    (directory / "fn.yaml").write_text(manifest(name, label, memoryMB=512))
    assert ember(server, "apply", "-f", str(directory)).stdout.strip().endswith("configured")
    body = wait_until(lambda: ready(server, name))
    assert body["metadata"]["generation"] == 2
    assert body["status"]["observedGeneration"] == 2
    assert aws.get_function(FunctionName=name)["Configuration"]["MemorySize"] == 512
    relabelled = json.loads(manifest(name, label, memoryMB=512))
    relabelled["metadata"]["labels"]["tier"] = "web"
    (directory / "fn.yaml").write_text(json.dumps(relabelled))
    assert ember(server, "apply", "-f", str(directory)).stdout.strip().endswith("configured")
    assert get_object(server, name)["metadata"]["generation"] == 2
    # New code is a spec change too: the digest of the package is part of the spec.
    (directory / "src" / "app.py").write_text(
        textwrap.dedent(APP).replace("hi", "x") + "\nNEW = 1\n"
    )
    ember(server, "apply", "-f", str(directory))
    assert wait_until(lambda: ready(server, name))["metadata"]["generation"] == 3


def test_snap_start_in_the_spec_is_the_functions_setting(
    server: Server, aws: Any, app: tuple[Path, str]
) -> None:
    directory, label = app
    name = f"snap-{label}"
    path = directory / "fn.yaml"
    path.write_text(manifest(name, label, snapStart={"applyOn": "PublishedVersions"}))
    ember(server, "apply", "-f", str(directory))
    wait_until(lambda: ready(server, name))
    config = aws.get_function(FunctionName=name)["Configuration"]
    assert config["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "Off"}
    version = aws.publish_version(FunctionName=name)
    assert version["State"] == "Pending"
    waiter = aws.get_waiter("published_version_active")
    waiter.wait(FunctionName=name, Qualifier=version["Version"], WaiterConfig={"Delay": 1})

    # ember's extension, then no SnapStart at all once the spec leaves it out.
    path.write_text(manifest(name, label, snapStart={"applyOn": "LatestAndPublished"}))
    assert ember(server, "apply", "-f", str(directory)).stdout.strip().endswith("configured")
    wait_until(lambda: ready(server, name))
    assert aws.get_function(FunctionName=name)["Configuration"]["SnapStart"]["ApplyOn"] == (
        "LatestAndPublished"
    )
    aws.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1})
    path.write_text(manifest(name, label))
    ember(server, "apply", "-f", str(directory))
    wait_until(
        lambda: (
            aws.get_function(FunctionName=name)["Configuration"]["SnapStart"]["ApplyOn"] == "None"
        )
    )
    # A value neither Lambda nor ember has is refused before anything is sent.
    path.write_text(manifest(name, label, snapStart={"applyOn": "Always"}))
    refused = ember(server, "apply", "-f", str(directory), check=False)
    assert refused.returncode == 1
    assert "spec.snapStart.applyOn: 'Always' is not allowed: use one of PublishedVersions, " in (
        refused.stderr
    )


def test_diff_shows_what_would_change_and_dry_run_changes_nothing(
    server: Server, aws: Any, app: tuple[Path, str]
) -> None:
    directory, label = app
    name = f"diff-{label}"
    path = directory / "fn.yaml"
    path.write_text(manifest(name, label, memoryMB=128))
    new = ember(server, "diff", "-f", str(path), check=False)
    assert new.returncode == 1 and "+  name: " + name in new.stdout
    ember(server, "apply", "-f", str(path))
    same = ember(server, "diff", "-f", str(path), check=False)
    assert (same.returncode, same.stdout) == (0, "")
    path.write_text(manifest(name, label, memoryMB=1024))
    changed = ember(server, "diff", "-f", str(path), check=False)
    assert changed.returncode == 1
    assert "-  memoryMB: 128\n" in changed.stdout and "+  memoryMB: 1024\n" in changed.stdout
    dry = ember(server, "apply", "-f", str(path), "--dry-run")
    assert dry.stdout.strip() == f"function.ember.dev/{name} configured (dry run)"
    assert get_object(server, name)["spec"]["memoryMB"] == 128
    assert get_object(server, name)["metadata"]["generation"] == 1
    wait_until(lambda: ready(server, name))
    assert aws.get_function(FunctionName=name)["Configuration"]["MemorySize"] == 128


def test_prune_deletes_only_what_the_selector_matches_and_the_files_lack(
    server: Server, aws: Any, app: tuple[Path, str], deploy: Any
) -> None:
    directory, label = app
    keep, drop, other = f"keep-{label}", f"drop-{label}", f"other-{label}"
    (directory / "a.yaml").write_text(manifest(keep, label) + "\n---\n" + manifest(drop, label))
    (directory / "b.yaml").write_text(manifest(other, label + "x"))
    ember(server, "apply", "-f", str(directory))
    for name in (keep, drop, other):
        wait_until(lambda name=name: ready(server, name))
    made_with_boto3 = deploy("def handler(e, c):\n    return 1\n")["FunctionName"]
    (directory / "a.yaml").write_text(manifest(keep, label))
    result = ember(
        server, "apply", "-f", str(directory / "a.yaml"), "--prune", "-l", f"app={label}"
    )
    assert f"function.ember.dev/{drop} pruned" in result.stdout
    assert f"function.ember.dev/{keep} unchanged" in result.stdout

    def gone() -> bool:
        try:
            aws.get_function(FunctionName=drop)
        except aws.exceptions.ResourceNotFoundException:
            return True
        return False

    wait_until(gone)
    assert server.http.get(f"{API}/namespaces/default/functions/{drop}").status_code == 404
    for name in (keep, other, made_with_boto3):
        aws.get_function(FunctionName=name)
    server.http.delete(f"{API}/namespaces/default/functions/{other}")


def test_a_replace_with_a_stale_resource_version_is_a_conflict(
    server: Server, app: tuple[Path, str]
) -> None:
    directory, label = app
    name = f"conflict-{label}"
    (directory / "fn.yaml").write_text(manifest(name, label))
    ember(server, "apply", "-f", str(directory))
    body = wait_until(lambda: ready(server, name))
    url = f"{API}/namespaces/default/functions/{name}"
    mine, theirs = json.loads(json.dumps(body)), json.loads(json.dumps(body))
    theirs["spec"]["memoryMB"] = 256
    assert server.http.put(url, json=theirs).status_code == 200
    mine["spec"]["memoryMB"] = 512
    conflict = server.http.put(url, json=mine)
    assert conflict.status_code == 409, conflict.text
    assert "modified" in conflict.json()["message"]
    assert get_object(server, name)["spec"]["memoryMB"] == 256
    # Status belongs to the controller: there is no way to write it, and a body's is ignored.
    assert server.http.put(url + "/status", json={"observedGeneration": 99}).status_code in (
        404,
        405,
    )

    def put_with_status() -> dict[str, Any] | None:
        latest = get_object(server, name)
        latest["status"] = {"observedGeneration": 99, "conditions": []}
        response = server.http.put(url, json=latest)
        # The controller may write the status between the read and the write: read again.
        return None if response.status_code == 409 else dict(response.json())

    assert wait_until(put_with_status)["status"].get("observedGeneration") != 99


def test_invalid_files_name_file_line_and_field_and_nothing_is_applied(
    server: Server, aws: Any, app: tuple[Path, str]
) -> None:
    directory, label = app
    good, bad = f"good-{label}", f"bad-{label}"
    (directory / "good.yaml").write_text(manifest(good, label))
    (directory / "bad.yaml").write_text(
        textwrap.dedent(
            f"""\
            apiVersion: ember.dev/v1
            kind: Function
            metadata:
              name: {bad}
            spec:
              runtime: python3.11
              handler: app.handler
              code: {{path: src}}
              memoryMB: 99999
              timeoutSeconds: 0
              triggers:
                - schedule: every tuesday
            """
        )
    )
    result = ember(server, "apply", "-f", str(directory), check=False)
    assert result.returncode == 1
    where = directory / "bad.yaml"
    assert f"error: spec.memoryMB: 99999 is above the maximum 10240 ({where}:9)" in result.stderr
    assert f"error: spec.timeoutSeconds: 0 is below the minimum 1 ({where}:10)" in result.stderr
    assert "nothing was applied" in result.stderr
    for name in (good, bad):
        assert server.http.get(f"{API}/namespaces/default/functions/{name}").status_code == 404
        with pytest.raises(aws.exceptions.ResourceNotFoundException):
            aws.get_function(FunctionName=name)


def test_get_functions_shows_functions_made_with_boto3_and_describe_shows_conditions(
    server: Server, app: tuple[Path, str], deploy: Any
) -> None:
    directory, label = app
    name = f"get-{label}"
    (directory / "fn.yaml").write_text(manifest(name, label))
    ember(server, "apply", "-f", str(directory))
    wait_until(lambda: ready(server, name))
    made_with_boto3 = deploy("def handler(e, c):\n    return 1\n")["FunctionName"]
    listed = json.loads(ember(server, "get", "functions", "-o", "json").stdout)["items"]
    names = {item["metadata"]["name"]: item for item in listed}
    assert names[made_with_boto3]["metadata"]["annotations"]["ember.dev/managed-by"] == "lambda-api"
    assert names[name]["metadata"]["labels"] == {"app": label}
    table = ember(server, "get", "functions", "-l", f"app={label}").stdout.splitlines()
    assert table[0].split() == ["NAME", "RUNTIME", "READY", "VERSION", "AGE"]
    assert table[1].split()[:4] == [name, "python3.11", "True", "$LATEST"]
    assert "GENERATION" in ember(server, "get", "functions", "-o", "wide").stdout
    assert f"name: {name}" in ember(server, "get", "functions", name, "-o", "yaml").stdout
    described = ember(server, "describe", "function", name).stdout
    assert "CodeReady" in described and "ToolPublished" in described
    # A tool the catalog refuses is reported in the condition, then published once fixed.
    exposed = json.loads(manifest(name, label))
    exposed["spec"]["mcp"] = {"expose": True, "toolName": f"{name}.tool"}
    (directory / "fn.yaml").write_text(json.dumps(exposed))
    ember(server, "apply", "-f", str(directory))

    def tool_condition(generation: int) -> dict[str, Any] | None:
        body = get_object(server, name)
        found = condition(body, "ToolPublished")
        return found if found and found["observedGeneration"] == generation else None

    refused = wait_until(lambda: tool_condition(2))
    assert refused["status"] == "False" and "inputSchema" in refused["message"]
    exposed["spec"]["mcp"]["inputSchema"] = {"type": "object"}
    (directory / "fn.yaml").write_text(json.dumps(exposed))
    ember(server, "apply", "-f", str(directory))
    assert wait_until(lambda: tool_condition(3))["reason"] == "Exposed"
    tools = server.http.get("/_ember/tools", timeout=10).json()["Tools"]
    assert {"FunctionName": name, "toolName": f"{name}.tool"}.items() <= next(
        tool for tool in tools if tool["FunctionName"] == name
    ).items()
    # `ember get NAME` keeps meaning GetFunction.
    assert json.loads(ember(server, "get", name).stdout)["Configuration"]["FunctionName"] == name


def test_delete_removes_the_function_and_its_settings(
    server: Server, aws: Any, app: tuple[Path, str]
) -> None:
    directory, label = app
    name = f"del-{label}"
    (directory / "fn.yaml").write_text(manifest(name, label, concurrency={"reserved": 3}))
    ember(server, "apply", "-f", str(directory))
    wait_until(lambda: ready(server, name))
    assert ember(server, "delete", "-f", str(directory)).stdout.strip() == (
        f"function.ember.dev/{name} deleted"
    )

    def gone() -> bool:
        url = f"{API}/namespaces/default/functions/{name}"
        return server.http.get(url).status_code == 404 and not any(
            f["FunctionName"] == name for f in aws.list_functions()["Functions"]
        )

    wait_until(gone)
    assert "reserved" not in json.dumps(server.http.get("/_ember/limits").json().get(name, {}))


def test_a_function_made_with_boto3_is_adopted_by_a_manifest(
    server: Server, aws: Any, app: tuple[Path, str], deploy: Any
) -> None:
    directory, label = app
    name = deploy("def handler(e, c):\n    return 'old'\n")["FunctionName"]
    (directory / "fn.yaml").write_text(manifest(name, label, memoryMB=384))
    ember(server, "apply", "-f", str(directory))
    wait_until(lambda: ready(server, name))
    assert aws.get_function(FunctionName=name)["Configuration"]["MemorySize"] == 384
    answer = json.loads(aws.invoke(FunctionName=name, Payload=b"{}")["Payload"].read())
    assert answer["init"] == "on-demand"


def test_a_set_the_server_refuses_in_part_is_not_applied_at_all(
    server: Server, app: tuple[Path, str]
) -> None:
    directory, label = app
    taken, fresh = f"taken-{label}", f"fresh-{label}"
    owned = json.loads(manifest(taken, label))
    owned["metadata"]["namespace"] = "team-a"
    (directory / "a.yaml").write_text(json.dumps(owned))
    ember(server, "apply", "-f", str(directory / "a.yaml"))
    (directory / "b.yaml").write_text(manifest(fresh, label) + "\n---\n" + manifest(taken, label))
    result = ember(server, "apply", "-f", str(directory / "b.yaml"), check=False)
    assert result.returncode == 1
    assert "already defined in namespace 'team-a'" in result.stderr
    assert server.http.get(f"{API}/namespaces/default/functions/{fresh}").status_code == 404
    server.http.delete(f"{API}/namespaces/team-a/functions/{taken}")


def test_the_example_application_applies_in_one_command(server: Server, aws: Any) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples" / "manifests"
    result = ember(server, "apply", "-f", str(examples))
    names = ["greet", "nightly-report", "report-failures"]
    assert sorted(line.split()[0] for line in result.stdout.splitlines()) == [
        f"function.ember.dev/{name}" for name in names
    ]
    try:
        for name in names:
            wait_until(lambda name=name: ready(server, name))

        def provisioned() -> bool:
            found = condition(get_object(server, "greet"), "ProvisionedReady")
            return found is not None and found["status"] == "True"

        wait_until(provisioned)
        answer = aws.invoke(FunctionName="greet", Payload=b'{"name": "ember"}')["Payload"].read()
        assert json.loads(answer) == {"greeting": "Hello, ember!"}
        tools = server.http.get("/_ember/tools", timeout=10).json()["Tools"]
        assert [tool["FunctionName"] for tool in tools if tool["toolName"] == "greet"] == ["greet"]
        url = aws.get_function_url_config(FunctionName="greet")["FunctionUrl"]
        # A function URL of AuthType NONE: called unsigned, as a browser would.
        reply = httpx.post(url, json={"name": "url"}, timeout=30)
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"greeting": "Hello, world!"}  # the URL event has no "name"
    finally:
        ember(server, "delete", "-f", str(examples))
