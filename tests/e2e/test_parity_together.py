"""End-to-end: versions, layers and function URLs used together, as a Lambda user would."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from typing import Any

import httpx

from conftest import Server

READS_LAYER = """
def handler(event, context):
    try:
        import greeting
    except ImportError:
        return {"greeting": None, "version": context.function_version}
    return {"greeting": greeting.WORD, "version": context.function_version}
"""


def _layer(word: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("python/greeting.py", f"WORD = {word!r}\n")
    return buffer.getvalue()


def _invoke(aws: Any, name: str, qualifier: str | None = None) -> tuple[dict[str, Any], str]:
    extra = {"Qualifier": qualifier} if qualifier else {}
    response = aws.invoke(FunctionName=name, Payload=b"{}", **extra)
    executed = response["ResponseMetadata"]["HTTPHeaders"]["x-amz-executed-version"]
    return json.loads(response["Payload"].read()), executed


def test_a_version_keeps_the_layers_it_was_published_with(
    aws: Any, deploy: Callable[..., dict[str, Any]], unique_name: str
) -> None:
    layer = aws.publish_layer_version(LayerName=unique_name, Content={"ZipFile": _layer("hello")})
    name = deploy(READS_LAYER, Layers=[layer["LayerVersionArn"]])["FunctionName"]
    version = aws.publish_version(FunctionName=name)["Version"]

    aws.update_function_configuration(FunctionName=name, Layers=[])
    aws.delete_layer_version(LayerName=unique_name, VersionNumber=layer["Version"])

    assert _invoke(aws, name) == ({"greeting": None, "version": "$LATEST"}, "$LATEST")
    assert _invoke(aws, name, version) == ({"greeting": "hello", "version": version}, version)
    config = aws.get_function_configuration(FunctionName=name, Qualifier=version)
    assert [entry["Arn"] for entry in config["Layers"]] == [layer["LayerVersionArn"]]


def test_an_alias_url_runs_the_aliased_version(
    server: Server, aws: Any, deploy: Callable[..., dict[str, Any]], unique_name: str
) -> None:
    first = aws.publish_layer_version(LayerName=unique_name, Content={"ZipFile": _layer("one")})
    name = deploy(READS_LAYER, Layers=[first["LayerVersionArn"]])["FunctionName"]
    version = aws.publish_version(FunctionName=name)["Version"]
    aws.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    second = aws.publish_layer_version(LayerName=unique_name, Content={"ZipFile": _layer("two")})
    aws.update_function_configuration(FunctionName=name, Layers=[second["LayerVersionArn"]])

    url = aws.create_function_url_config(FunctionName=name, Qualifier="live", AuthType="NONE")[
        "FunctionUrl"
    ]
    response = httpx.get(url + "anything", timeout=30)  # AuthType NONE: unsigned

    assert response.status_code == 200, response.text
    assert response.json() == {"greeting": "one", "version": version}
    assert _invoke(aws, name)[0] == {"greeting": "two", "version": "$LATEST"}
