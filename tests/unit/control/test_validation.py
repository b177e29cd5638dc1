from __future__ import annotations

import base64
import hashlib
import io
import os
import zipfile

import pytest

from ember.control import validation
from ember.errors import InvalidParameterValue, RequestTooLarge, ValidationError


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def test_code_digests_match_lambda() -> None:
    data = _zip({"app.py": "def handler(e, c): return e\n"})
    with validation.code({"ZipFile": base64.b64encode(data).decode()}) as package:
        assert package.digest == hashlib.sha256(data).hexdigest()
        assert package.sha256 == base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_not_a_zip() -> None:
    with pytest.raises(InvalidParameterValue, match="Could not unzip uploaded file"):
        validation.code({"ZipFile": base64.b64encode(b"not a zip").decode()})


def test_s3_code_is_refused_clearly() -> None:
    with pytest.raises(InvalidParameterValue, match="ZipFile"):
        validation.code({"S3Bucket": "b", "S3Key": "k"})


def test_zip_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validation, "MAX_ZIPPED", 10)
    with pytest.raises(RequestTooLarge):
        validation.code({"ZipFile": base64.b64encode(_zip({"a": "b"})).decode()})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"Timeout": 901}, "less than or equal to 900"),
        ({"Timeout": 0}, "greater than or equal to 1"),
        ({"MemorySize": 99999}, "less than or equal to 10240"),
    ],
)
def test_maxima_are_validation_errors(body: dict[str, int], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        validation.timeout(body)
        validation.memory_size(body)


def test_runtime_and_handler() -> None:
    assert validation.runtime({"Runtime": "python3.12"}, required=True) == "python3.12"
    with pytest.raises(InvalidParameterValue, match="enum value set"):
        validation.runtime({"Runtime": "PYTHON3.9"}, required=True)
    assert validation.handler({"Handler": "pkg/mod.fn"}, required=True) == "pkg/mod.fn"
    for bad in ("nodot", "app. handler", "app.", ".fn"):
        with pytest.raises(InvalidParameterValue):
            validation.handler({"Handler": bad}, required=True)


def test_custom_runtimes_take_any_handler_or_none() -> None:
    for runtime in ("provided", "provided.al2", "provided.al2023"):
        assert validation.runtime({"Runtime": runtime}, required=True) == runtime
        assert validation.handler({}, required=True, runtime=runtime) is None
        assert validation.handler({"Handler": "anything"}, True, runtime=runtime) == "anything"
        with pytest.raises(ValidationError, match="regular expression"):
            validation.handler({"Handler": "two words"}, required=True, runtime=runtime)
    with pytest.raises(InvalidParameterValue, match="Handler is required"):
        validation.handler({}, required=True, runtime="python3.12")


def test_environment_rules() -> None:
    assert validation.environment({"Environment": {"Variables": {"A1": "x"}}}) == {"A1": "x"}
    assert validation.environment({}) is None
    with pytest.raises(InvalidParameterValue, match="reserved keys"):
        validation.environment({"Environment": {"Variables": {"AWS_REGION": "x"}}})
    with pytest.raises(InvalidParameterValue, match="4KB"):
        validation.environment({"Environment": {"Variables": {"BIG": "x" * 5000}}})


def test_role_pattern() -> None:
    assert validation.role({"Role": "arn:aws:iam::000000000000:role/r"}, required=True)
    with pytest.raises(ValidationError, match="role"):
        validation.role({"Role": "r1"}, required=True)


@pytest.mark.parametrize(
    "bad",
    [
        "QUJD\nREVG",  # a newline: b64decode(validate=True) refused it too
        "QUJD*EVG",
        "QQ==QUJD",  # padding inside the data (a slice boundary would hide it)
        "QUJDR",  # not a whole number of quanta
        "QUJDé",
    ],
)
def test_zipfile_base64_is_decoded_strictly(bad: str) -> None:
    with pytest.raises(InvalidParameterValue, match="not valid base64"):
        validation.code({"ZipFile": bad})


def test_zipfile_decoded_in_slices_is_the_package_byte_for_byte(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(validation, "_DECODE_SLICE", 8)  # many slices for a small zip
    data = _zip({"app.py": "x = 1\n" * 100})
    with validation.code({"ZipFile": base64.b64encode(data).decode()}) as package:
        assert package.file.read() == data
        assert package.size == len(data)


def test_a_large_package_is_spooled_to_disk_and_read_back_whole() -> None:
    # Random (incompressible) content: the zip is over SPOOL_IN_MEMORY bytes.
    data = _zip({"blob.bin": base64.b64encode(os.urandom(validation.SPOOL_IN_MEMORY)).decode()})
    assert len(data) > validation.SPOOL_IN_MEMORY
    with validation.code({"ZipFile": base64.b64encode(data).decode()}) as package:
        assert package.file._rolled  # type: ignore[attr-defined]  # on disk, not in memory
        assert package.file.read() == data
        assert package.digest == hashlib.sha256(data).hexdigest()


def test_zipfile_as_the_body_bytes_is_decoded_alike() -> None:
    data = _zip({"app.py": "x = 1\n"})
    text = base64.b64encode(data)
    with (
        validation.code({"ZipFile": memoryview(text)}) as from_body,
        validation.code({"ZipFile": text.decode()}) as from_str,
    ):
        assert (from_body.digest, from_body.size) == (from_str.digest, from_str.size)
        assert from_body.file.read() == from_str.file.read() == data
    with pytest.raises(InvalidParameterValue, match="not valid base64"):
        validation.code({"ZipFile": memoryview(b"QQ==QUJD")})


def test_a_field_that_asks_for_nothing_is_accepted_one_that_asks_is_refused() -> None:
    for empty in (
        {"VpcConfig": {"SubnetIds": [], "SecurityGroupIds": []}},
        {"KMSKeyArn": ""},
        {"DeadLetterConfig": {}},
        {"FileSystemConfigs": []},
        {"VpcConfig": None},
    ):
        validation.refuse_unsupported(empty)
    with pytest.raises(InvalidParameterValue, match=r"^VpcConfig is not supported"):
        validation.refuse_unsupported({"VpcConfig": {"SubnetIds": ["subnet-1"]}})
    with pytest.raises(InvalidParameterValue, match=r"^PublishTo"):
        validation.refuse_unsupported({"PublishTo": "LATEST_PUBLISHED"})


def test_logging_config_merges_over_the_current_one() -> None:
    text = {
        "log_format": "Text",
        "application_log_level": None,
        "system_log_level": None,
        "log_group": None,
    }
    json_config = validation.logging_config({"LoggingConfig": {"LogFormat": "JSON"}}, text)
    assert json_config == {
        "log_format": "JSON",
        "application_log_level": "INFO",
        "system_log_level": "INFO",
        "log_group": None,
    }
    warn = validation.logging_config({"LoggingConfig": {"SystemLogLevel": "WARN"}}, json_config)
    assert (warn["application_log_level"], warn["system_log_level"]) == ("INFO", "WARN")
    back = validation.logging_config({"LoggingConfig": {"LogFormat": "Text"}}, warn)
    assert back == text
    with pytest.raises(ValidationError):
        validation.logging_config({"LoggingConfig": {"SystemLogLevel": "ERROR"}}, json_config)
