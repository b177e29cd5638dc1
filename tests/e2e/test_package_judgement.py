"""A package is judged at upload (issue 20, point 3): unsafe zips get Lambda's 400, not a 500
on every invoke; symlinks that stay inside are kept, as Lambda keeps them."""

from __future__ import annotations

import contextlib
import io
import json
import stat
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import ROLE

UNZIP = "Could not unzip uploaded file. Please check your file, then try to upload again."
HANDLER = "import os\ndef handler(event, context):\n    return os.listdir('.')\n"


def build(files: dict[str, str], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


UNSAFE = {
    "parent": build({"app.py": HANDLER, "../escape.py": "x"}),
    "absolute": build({"app.py": HANDLER, "/tmp/escape.py": "x"}),
    "file and directory": build({"app.py": HANDLER, "lib": "x", "lib/mod.py": "x"}),
    "over-long name": build({"app.py": HANDLER, "n" * 300: "x"}),
    "symlink outside": build({"app.py": HANDLER}, {"passwd": "../../../etc/passwd"}),
}


@pytest.fixture
def function_name(aws: Any, unique_name: str) -> Iterator[str]:
    yield unique_name
    with contextlib.suppress(aws.exceptions.ResourceNotFoundException):
        aws.delete_function(FunctionName=unique_name)


def create(aws: Any, name: str, package: bytes) -> dict[str, Any]:
    return dict(
        aws.create_function(
            FunctionName=name,
            Runtime="python3.11",
            Handler="app.handler",
            Role=ROLE,
            Code={"ZipFile": package},
        )
    )


def assert_unzip_refused(error: ClientError) -> None:
    assert error.response["Error"]["Code"] == "InvalidParameterValueException"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error.response["Error"]["Message"] == UNZIP


@pytest.mark.parametrize("package", UNSAFE.values(), ids=UNSAFE.keys())
def test_create_refuses_an_unsafe_zip(aws: Any, function_name: str, package: bytes) -> None:
    with pytest.raises(ClientError) as refused:
        create(aws, function_name, package)
    assert_unzip_refused(refused.value)
    with pytest.raises(aws.exceptions.ResourceNotFoundException):
        aws.get_function(FunctionName=function_name)


@pytest.mark.parametrize("package", UNSAFE.values(), ids=UNSAFE.keys())
def test_update_code_refuses_an_unsafe_zip(aws: Any, function_name: str, package: bytes) -> None:
    created = create(aws, function_name, build({"app.py": HANDLER}))
    with pytest.raises(ClientError) as refused:
        aws.update_function_code(FunctionName=function_name, ZipFile=package)
    assert_unzip_refused(refused.value)
    after = aws.get_function_configuration(FunctionName=function_name)
    assert after["CodeSha256"] == created["CodeSha256"]


def test_publish_layer_refuses_a_symlink_outside_the_layer(aws: Any, unique_name: str) -> None:
    layer = build({"python/ok.py": "x"}, {"python/host": "../../var/task"})
    with pytest.raises(ClientError) as refused:
        aws.publish_layer_version(LayerName=unique_name, Content={"ZipFile": layer})
    assert_unzip_refused(refused.value)
    assert aws.list_layer_versions(LayerName=unique_name)["LayerVersions"] == []


def test_symlinks_inside_the_package_are_kept(aws: Any, function_name: str) -> None:
    source = (
        "import os\n"
        "def handler(event, context):\n"
        "    return [os.readlink('data/current'), open('data/current').read()]\n"
    )
    package = build({"app.py": source, "data/v1.txt": "one"}, {"data/current": "v1.txt"})
    create(aws, function_name, package)
    aws.get_waiter("function_active_v2").wait(FunctionName=function_name)
    response = aws.invoke(FunctionName=function_name)
    assert "FunctionError" not in response
    assert json.loads(response["Payload"].read()) == ["v1.txt", "one"]
