"""End-to-end: Lambda layers with boto3 — publish, read, list, delete, and /opt in sandboxes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import httpx
import pytest
from e2e_helpers import ACCOUNT, LAST_MODIFIED, REGION, code_sha256, invoke_json

from conftest import ROLE, Server, lambda_client, make_zip

# Reports which file a module came from and the import path, as the function sees them.
WHICH = """
import importlib, os, sys

def handler(event, context):
    found = {}
    for name in event.get("modules", []):
        try:
            module = importlib.import_module(name)
            found[name] = [getattr(module, "WHO", None), module.__file__]
        except ImportError as exc:
            found[name] = ["missing", str(exc)]
    return {
        "found": found,
        "path": sys.path[:3],
        "pythonpath": os.environ.get("PYTHONPATH"),
        "bin": os.environ["PATH"].split(":")[-1],
        "lib": os.environ.get("LD_LIBRARY_PATH"),
    }
"""


def layer_zip(**modules: str) -> bytes:
    """A layer whose ``python/<name>.py`` modules say WHO they are."""
    return make_zip({f"python/{name}.py": f"WHO = {who!r}\n" for name, who in modules.items()})


@pytest.fixture
def publish(aws: Any) -> Iterator[Callable[..., dict[str, Any]]]:
    """Publish layer versions under a unique name; all deleted after the test."""
    published: list[tuple[str, int]] = []

    def run(content: bytes, name: str | None = None, **settings: Any) -> dict[str, Any]:
        layer = name or f"layer-{uuid.uuid4().hex[:8]}"
        response = aws.publish_layer_version(
            LayerName=layer, Content={"ZipFile": content}, **settings
        )
        published.append((layer, response["Version"]))
        return dict(response)

    yield run
    for layer, version in published:
        aws.delete_layer_version(LayerName=layer, VersionNumber=version)


def found(aws: Any, function: str, *modules: str) -> dict[str, Any]:
    return dict(invoke_json(aws, function, {"modules": list(modules)}))


def test_publish_get_list_and_delete_versions(
    server: Server, aws: Any, publish: Callable[..., Any]
) -> None:
    name = f"lifecycle-{uuid.uuid4().hex[:8]}"
    first_zip = layer_zip(greet="one")
    first = publish(
        first_zip,
        name,
        Description="first",
        CompatibleRuntimes=["python3.11", "python3.12"],
        LicenseInfo="MIT",
    )
    layer_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{name}"
    assert first["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert first["LayerArn"] == layer_arn
    assert first["LayerVersionArn"] == f"{layer_arn}:1"
    assert first["Version"] == 1
    assert first["Content"]["CodeSha256"] == code_sha256(first_zip)
    assert first["Content"]["CodeSize"] == len(first_zip)
    assert first["CompatibleRuntimes"] == ["python3.11", "python3.12"]
    assert first["LicenseInfo"] == "MIT" and first["Description"] == "first"
    assert LAST_MODIFIED.match(first["CreatedDate"])
    second = publish(layer_zip(greet="two"), name)
    assert second["Version"] == 2 and second["LayerVersionArn"] == f"{layer_arn}:2"

    got = aws.get_layer_version(LayerName=name, VersionNumber=1)
    assert got["LayerVersionArn"] == first["LayerVersionArn"]
    assert server.http.get(got["Content"]["Location"]).content == first_zip
    by_arn = aws.get_layer_version_by_arn(Arn=second["LayerVersionArn"])
    assert by_arn["Version"] == 2

    listed = {item["LayerName"]: item for item in aws.list_layers()["Layers"]}
    assert listed[name]["LatestMatchingVersion"]["Version"] == 2
    pages = aws.get_paginator("list_layer_versions").paginate(
        LayerName=name, PaginationConfig={"PageSize": 1}
    )
    assert [v["Version"] for page in pages for v in page["LayerVersions"]] == [2, 1]

    deleted = aws.delete_layer_version(LayerName=name, VersionNumber=1)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(aws.exceptions.ResourceNotFoundException):
        aws.get_layer_version(LayerName=name, VersionNumber=1)
    # Deleting again is not an error, and numbers are never reused.
    aws.delete_layer_version(LayerName=name, VersionNumber=1)
    assert publish(layer_zip(greet="three"), name)["Version"] == 3


def test_a_function_imports_a_module_from_its_layer(
    aws: Any, deploy: Callable[..., Any], publish: Callable[..., Any]
) -> None:
    content = layer_zip(greet="layer")
    layer = publish(content)
    config = deploy(WHICH, Layers=[layer["LayerVersionArn"]])
    assert config["Layers"] == [{"Arn": layer["LayerVersionArn"], "CodeSize": len(content)}]
    result = found(aws, config["FunctionName"], "greet")
    assert result["found"]["greet"] == ["layer", "/opt/python/greet.py"]
    # Lambda's order: the task root, then the layers' site-packages, then /opt/python.
    assert result["path"] == [
        "/var/task",
        "/opt/python/lib/python3.11/site-packages",
        "/opt/python",
    ]
    assert (result["bin"], result["lib"]) == ("/opt/bin", "/opt/lib")


def test_later_layers_override_earlier_ones_and_order_can_change(
    aws: Any, deploy: Callable[..., Any], publish: Callable[..., Any]
) -> None:
    first = publish(layer_zip(greet="first", only_first="first"))["LayerVersionArn"]
    second = publish(layer_zip(greet="second"))["LayerVersionArn"]
    name = deploy(WHICH, Layers=[first, second])["FunctionName"]
    result = found(aws, name, "greet", "only_first")["found"]
    assert result["greet"][0] == "second" and result["only_first"][0] == "first"

    aws.update_function_configuration(FunctionName=name, Layers=[second, first])
    assert found(aws, name, "greet")["found"]["greet"][0] == "first"

    aws.update_function_configuration(FunctionName=name, Layers=[])
    config = aws.get_function_configuration(FunctionName=name)
    assert "Layers" not in config
    assert found(aws, name, "greet")["found"]["greet"][0] == "missing"


def test_unknown_or_too_many_layers_are_refused(
    aws: Any, deploy: Callable[..., Any], publish: Callable[..., Any]
) -> None:
    missing = f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:no-such-layer-{uuid.uuid4().hex[:6]}:1"
    with pytest.raises(aws.exceptions.InvalidParameterValueException) as refused:
        deploy(WHICH, Layers=[missing])
    assert refused.value.response["Error"]["Message"] == f"Layer version {missing} does not exist."

    name = deploy(WHICH)["FunctionName"]
    arns = [publish(layer_zip(m=str(i)))["LayerVersionArn"] for i in range(6)]
    with pytest.raises(aws.exceptions.InvalidParameterValueException, match="more than 5"):
        aws.update_function_configuration(FunctionName=name, Layers=arns)
    with pytest.raises(aws.exceptions.ResourceNotFoundException):
        aws.get_layer_version(LayerName="no-such-layer", VersionNumber=1)


def test_a_deleted_layer_version_keeps_working_for_its_functions(
    aws: Any, deploy: Callable[..., Any]
) -> None:
    name = f"kept-{uuid.uuid4().hex[:8]}"
    arn = aws.publish_layer_version(LayerName=name, Content={"ZipFile": layer_zip(greet="kept")})[
        "LayerVersionArn"
    ]
    function = deploy(WHICH, Layers=[arn])["FunctionName"]
    aws.delete_layer_version(LayerName=name, VersionNumber=1)
    # A new sandbox (new configuration) still gets the deleted version's content.
    aws.update_function_configuration(FunctionName=function, Environment={"Variables": {"AB": "1"}})
    assert found(aws, function, "greet")["found"]["greet"][0] == "kept"
    assert aws.get_function_configuration(FunctionName=function)["Layers"][0]["Arn"] == arn
    with pytest.raises(aws.exceptions.InvalidParameterValueException, match="does not exist"):
        deploy(WHICH, Layers=[arn])


def test_layers_and_urls_survive_a_restart_and_work_without_isolation(
    spawn_server: Callable[..., Server], tmp_path: Path
) -> None:
    """--sandbox process: the host directory on sys.path and PYTHONPATH."""
    server = spawn_server(tmp_path / "data", "--sandbox", "process")
    aws = lambda_client(server)
    arn = aws.publish_layer_version(LayerName="kept", Content={"ZipFile": layer_zip(greet="p")})[
        "LayerVersionArn"
    ]
    aws.create_function(
        FunctionName="uses-layer",
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": WHICH})},
        Layers=[arn],
    )
    aws.create_function_url_config(FunctionName="uses-layer", AuthType="NONE")
    server.stop()
    restarted = spawn_server(tmp_path / "data", "--sandbox", "process")
    again = lambda_client(restarted)
    assert again.get_layer_version(LayerName="kept", VersionNumber=1)["LayerVersionArn"] == arn
    url = again.get_function_url_config(FunctionName="uses-layer")["FunctionUrl"]
    assert url == f"{restarted.url}/url/uses-layer/"
    assert httpx.get(url + "x").json()["found"] == {}  # AuthType NONE: unsigned
    result = found(again, "uses-layer", "greet")
    who, path = result["found"]["greet"]
    assert who == "p" and path.endswith("/python/greet.py") and not path.startswith("/opt")
    assert result["pythonpath"].endswith("/python")
    with pytest.raises(botocore.exceptions.ClientError):
        again.publish_layer_version(LayerName="bad", Content={"ZipFile": b"not a zip"})
