"""Lambda's validation rules for function settings, with Lambda's messages.

boto3 checks only minimums client-side, so every maximum is enforced here
(ValidationException); semantic problems (runtime, handler, zip, environment)
are InvalidParameterValueException, as on AWS.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import re
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any

from ember.control import snapstart, zips
from ember.errors import InvalidParameterValue, RequestTooLarge, ValidationError
from ember.sandbox.runtimes import (
    NODE_RUNTIMES,
    PROVIDED_RUNTIMES,
    PYTHON_RUNTIMES,
    host_architecture,
)
from ember.storage.base import CodeSource

RUNTIMES = PYTHON_RUNTIMES + NODE_RUNTIMES + PROVIDED_RUNTIMES
MAX_ZIPPED = 52_428_800
MAX_UNZIPPED = 262_144_000
MAX_ENVIRONMENT = 4096
_ROLE = re.compile(r"^arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$")
_ROLE_PATTERN = r"arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+"
_HANDLER = re.compile(r"^[^\s.][^\s]*\.[A-Za-z_][A-Za-z0-9_]*$")
_CUSTOM_HANDLER = re.compile(r"^[^\s]+$")
# Node: a file (a path without its extension) and an export path after the first dot.
_NODE_HANDLER = re.compile(r"^[^\s.][^\s]*\.[A-Za-z_$][A-Za-z0-9_$.]*$")
_ENV_KEY = re.compile(r"^[a-zA-Z]([a-zA-Z0-9_])+$")
# Keys the platform sets for every sandbox; Lambda refuses them too.
RESERVED_ENV = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)


@dataclass(frozen=True)
class Package:
    """A validated deployment package: the zip in ``file`` (at its start), spooled to
    disk past ``SPOOL_IN_MEMORY`` bytes. A context manager: leaving it closes the file."""

    file: IO[bytes]
    size: int
    digest: str  # hex SHA-256
    sha256: str  # base64 SHA-256 (Lambda's CodeSha256)

    def __enter__(self) -> Package:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.file.close()


# Packages up to this size stay in memory; larger ones are decoded into a temporary
# file, so that the zip never sits in memory beside the request body that carried it.
SPOOL_IN_MEMORY = 1 << 20
# Bytes hashed at a time.
_HASH_CHUNK = 1 << 20


def integer(body: dict[str, Any], key: str, member: str, low: int, high: int) -> int | None:
    """``body[key]`` as an int within [low, high] (Lambda's messages), or None if absent."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationError.constraint(value, member, "Member must be an integer")
    if value < low:
        raise ValidationError.constraint(
            value, member, f"Member must have value greater than or equal to {low}"
        )
    if value > high:
        raise ValidationError.constraint(
            value, member, f"Member must have value less than or equal to {high}"
        )
    return value


def _structure(body: dict[str, Any], key: str, member: str) -> dict[str, Any] | None:
    """``body[key]``, which must be an object (Lambda's message), or None if absent."""
    raw = body.get(key)
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValidationError.constraint(raw, member, "Member must be an object")
    return raw


def _str(body: dict[str, Any], key: str, member: str, max_length: int) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError.constraint(value, member, "Member must be a string")
    if len(value) > max_length:
        raise ValidationError.constraint(
            value, member, f"Member must have length less than or equal to {max_length}"
        )
    return value


def timeout(body: dict[str, Any]) -> int | None:
    return integer(body, "Timeout", "timeout", 1, 900)


def memory_size(body: dict[str, Any]) -> int | None:
    return integer(body, "MemorySize", "memorySize", 128, 10240)


def ephemeral_storage(body: dict[str, Any]) -> int | None:
    raw = _structure(body, "EphemeralStorage", "ephemeralStorage")
    if raw is None:
        return None
    return integer(raw, "Size", "ephemeralStorage.size", 512, 10240)


def description(body: dict[str, Any]) -> str | None:
    return _str(body, "Description", "description", 256)


def role(body: dict[str, Any], required: bool) -> str | None:
    value = _str(body, "Role", "role", 2048)
    if value is None:
        if required:
            raise ValidationError.constraint(None, "role", "Member must not be null")
        return None
    if not _ROLE.match(value):
        raise ValidationError.constraint(
            value, "role", f"Member must satisfy regular expression pattern: {_ROLE_PATTERN}"
        )
    return value


def runtime(body: dict[str, Any], required: bool) -> str | None:
    value = body.get("Runtime")
    if value is None:
        if required:
            raise InvalidParameterValue(
                "Runtime is required for a function whose package type is Zip."
            )
        return None
    if value not in RUNTIMES:
        raise InvalidParameterValue(
            f"Value {value} at 'runtime' failed to satisfy constraint: Member must satisfy "
            f"enum value set: [{', '.join(RUNTIMES)}] or be a valid ARN"
        )
    return str(value)


def handler(body: dict[str, Any], required: bool, runtime: str | None = None) -> str | None:
    """The Handler: ``module.function`` for Python; optional and free-form for
    custom runtimes (their bootstrap reads it from ``_HANDLER``)."""
    value = _str(body, "Handler", "handler", 128)
    custom = runtime in PROVIDED_RUNTIMES
    if value is None:
        if required and not custom:
            raise InvalidParameterValue(
                "Handler is required for a function whose package type is Zip."
            )
        return None
    if custom:
        if not _CUSTOM_HANDLER.match(value):
            raise ValidationError.constraint(
                value, "handler", "Member must satisfy regular expression pattern: [^\\s]+"
            )
        return value
    if runtime in NODE_RUNTIMES:
        if not _NODE_HANDLER.match(value):
            raise InvalidParameterValue(
                f"Handler '{value}' is not valid: a Node.js handler is 'file.export' "
                "(for example 'index.handler' or 'src/app.handler'), with no spaces."
            )
        return value
    if not _HANDLER.match(value):
        raise InvalidParameterValue(
            f"Handler '{value}' is not valid: a Python handler is 'module.function' "
            "(for example 'app.handler'), with no spaces."
        )
    return value


def environment(body: dict[str, Any]) -> dict[str, str] | None:
    raw = body.get("Environment")
    if raw is None:
        return None
    variables = raw.get("Variables", {}) if isinstance(raw, dict) else None
    if not isinstance(variables, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in variables.items()
    ):
        raise InvalidParameterValue("Environment.Variables must be a map of strings to strings.")
    for key in variables:
        if not _ENV_KEY.match(key):
            raise ValidationError.constraint(
                key,
                "environment.variables",
                "Map keys must satisfy constraint: [Member must satisfy regular expression "
                "pattern: [a-zA-Z]([a-zA-Z0-9_])+]",
            )
    reserved = sorted(set(variables) & RESERVED_ENV)
    if reserved:
        raise InvalidParameterValue(
            "Lambda was unable to configure your environment variables because the environment "
            "variables you have provided contains reserved keys that are currently not "
            f"supported for modification. Reserved keys used in this request: {', '.join(reserved)}"
        )
    measured = ",".join(f"{k}={v}" for k, v in variables.items())
    if len(measured.encode()) > MAX_ENVIRONMENT:
        raise InvalidParameterValue(
            "Lambda was unable to configure your environment variables because the environment "
            f"variables you have provided exceeded the 4KB limit. String measured: {measured}"
        )
    return dict(variables)


def architectures(body: dict[str, Any]) -> tuple[str, ...] | None:
    """``Architectures``: only the host's own is accepted (its code runs natively)."""
    raw = body.get("Architectures")
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != 1:
        raise ValidationError.constraint(
            raw, "architectures", "Member must have length less than or equal to 1"
        )
    if raw[0] not in ("x86_64", "arm64"):
        raise ValidationError.constraint(
            raw, "architectures", "Member must satisfy enum value set: [x86_64, arm64]"
        )
    host = host_architecture()
    if raw[0] != host:
        raise InvalidParameterValue(
            f"Architectures {raw[0]} cannot run on this ember host: it runs functions on its "
            f"own architecture, {host}."
        )
    return (str(raw[0]),)


TRACING_MODES = ("Active", "PassThrough")


def tracing_mode(body: dict[str, Any]) -> str | None:
    """``TracingConfig.Mode``; None when absent."""
    raw = _structure(body, "TracingConfig", "tracingConfig")
    if raw is None:
        return None
    mode = raw.get("Mode")
    if mode is None:
        return None
    if mode not in TRACING_MODES:
        raise ValidationError.constraint(
            mode, "tracingConfig.mode", "Member must satisfy enum value set: [Active, PassThrough]"
        )
    return str(mode)


def snap_start(body: dict[str, Any]) -> str | None:
    """``SnapStart.ApplyOn``: Lambda's values or ember's extension, ``LatestAndPublished``;
    None when ``SnapStart`` is absent, ``"None"`` when it has no ApplyOn."""
    raw = _structure(body, "SnapStart", "snapStart")
    if raw is None:
        return None
    value = raw.get("ApplyOn")
    if value is None:
        return snapstart.NONE
    if value not in snapstart.APPLY_ON:
        raise ValidationError.constraint(
            value,
            "snapStart.applyOn",
            f"Member must satisfy enum value set: [{', '.join(snapstart.LAMBDA_APPLY_ON)}] "
            f"(ember also takes its extension {snapstart.LATEST_AND_PUBLISHED})",
        )
    return str(value)


LOG_FORMATS = ("JSON", "Text")
APPLICATION_LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
SYSTEM_LOG_LEVELS = ("DEBUG", "INFO", "WARN")
_LOG_GROUP = re.compile(r"[\.\-_/#A-Za-z0-9]+")


def _enum(raw: dict[str, Any], key: str, member: str, allowed: tuple[str, ...]) -> str | None:
    value = raw.get(key)
    if value is not None and value not in allowed:
        raise ValidationError.constraint(
            value, member, f"Member must satisfy enum value set: [{', '.join(allowed)}]"
        )
    return value


def logging_config(body: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """``LoggingConfig`` merged over ``current`` (the record's log_format,
    application_log_level, system_log_level, log_group): the four fields as
    they become. JSON without levels gets Lambda's INFO; Text clears them."""
    raw = _structure(body, "LoggingConfig", "loggingConfig")
    if raw is None:
        return dict(current)
    log_format = _enum(raw, "LogFormat", "loggingConfig.logFormat", LOG_FORMATS)
    log_format = log_format or current["log_format"]
    application = _enum(
        raw, "ApplicationLogLevel", "loggingConfig.applicationLogLevel", APPLICATION_LOG_LEVELS
    )
    system = _enum(raw, "SystemLogLevel", "loggingConfig.systemLogLevel", SYSTEM_LOG_LEVELS)
    group = _str(raw, "LogGroup", "loggingConfig.logGroup", 512)
    if group is not None and not _LOG_GROUP.fullmatch(group):
        raise ValidationError.constraint(
            group,
            "loggingConfig.logGroup",
            f"Member must satisfy regular expression pattern: {_LOG_GROUP.pattern}",
        )
    if log_format == "Text":
        if application is not None or system is not None:
            raise InvalidParameterValue(
                "LoggingConfig: ApplicationLogLevel and SystemLogLevel can be set only when "
                "LogFormat is JSON."
            )
        levels: tuple[str | None, str | None] = (None, None)
    else:
        levels = (
            application or current["application_log_level"] or "INFO",
            system or current["system_log_level"] or "INFO",
        )
    return {
        "log_format": log_format,
        "application_log_level": levels[0],
        "system_log_level": levels[1],
        "log_group": group if group is not None else current["log_group"],
    }


# Fields of CreateFunction and UpdateFunctionConfiguration that ember cannot honour,
# and why. Each is refused when it asks for something; its empty value (what means
# "none" on Lambda: null, "", [], {} or an object of those) is accepted. Tags belong
# to the tagging API.
UNSUPPORTED = {
    "VpcConfig": "ember functions run in no VPC; network access is the sandbox's Egress setting",
    "FileSystemConfigs": "ember mounts no file systems into sandboxes",
    "ImageConfig": "ember runs Zip packages only",
    "KMSKeyArn": "ember has no KMS to encrypt environment variables with",
    "CodeSigningConfigArn": "ember verifies no code signatures",
    "DeadLetterConfig": (
        "ember keeps failed asynchronous events in its own dead letters (ember dead-letters) "
        "and in OnFailure destinations; it has no SQS or SNS target"
    ),
    "TenancyConfig": "ember has no per-tenant execution environments",
    "CapacityProviderConfig": "ember runs functions on its own workers only",
    "DurableConfig": "ember has no durable executions",
    "RuntimeConfig": "ember has no customer-managed runtimes; use a provided runtime",
    "AcceleratorConfig": "ember sandboxes have no accelerators",
    "PublishTo": "ember publishes versions with Publish only",
}


def _empty(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_empty(item) for item in value.values())
    return value in (None, "", False) or value == []


def refuse_unsupported(body: dict[str, Any]) -> None:
    """Refuse, naming it, the first field ember would otherwise accept and ignore."""
    for field, reason in UNSUPPORTED.items():
        if field in body and not _empty(body[field]):
            raise InvalidParameterValue(f"{field} is not supported by ember: {reason}.")


UPDATE_RUNTIME_ON = ("Auto", "Manual", "FunctionUpdate")
_RUNTIME_VERSION_ARN = re.compile(
    r"^arn:(aws[a-zA-Z-]*):lambda:[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}::"
    r"runtime:.+$"
)


def runtime_management(body: dict[str, Any]) -> tuple[str, str | None]:
    """PutRuntimeManagementConfig's (UpdateRuntimeOn, RuntimeVersionArn or None)."""
    mode = body.get("UpdateRuntimeOn")
    if mode not in UPDATE_RUNTIME_ON:
        raise ValidationError.constraint(
            mode,
            "updateRuntimeOn",
            f"Member must satisfy enum value set: [{', '.join(UPDATE_RUNTIME_ON)}]",
        )
    arn = body.get("RuntimeVersionArn")
    if arn is not None and not (isinstance(arn, str) and _RUNTIME_VERSION_ARN.match(arn)):
        raise ValidationError.constraint(
            arn,
            "runtimeVersionArn",
            "Member must satisfy regular expression pattern: "
            "^arn:(aws[a-zA-Z-]*):lambda:[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}::"
            "runtime:.+$",
        )
    if mode == "Manual" and arn is None:
        raise InvalidParameterValue("RuntimeVersionArn is required when UpdateRuntimeOn is Manual.")
    if mode != "Manual" and arn is not None:
        raise InvalidParameterValue(
            f"RuntimeVersionArn can only be set when UpdateRuntimeOn is Manual, not {mode}."
        )
    return str(mode), arn


def package_type(body: dict[str, Any]) -> None:
    kind = body.get("PackageType", "Zip")
    if kind != "Zip":
        raise InvalidParameterValue(
            f"PackageType {kind} is not supported by ember: deploy a Zip package."
        )


@dataclass(frozen=True)
class S3Location:
    """Where a package waits in the users' bucket (``Code.S3Bucket`` and its kin)."""

    bucket: str
    key: str
    version: str | None


_S3_FIELDS = ("S3Bucket", "S3Key", "S3ObjectVersion")
# Lambda's S3Bucket pattern (botocore's model): 3-63 characters, no trailing dot.
_S3_BUCKET = re.compile(r"[0-9A-Za-z.\-_]{3,63}(?<!\.)")
# A package read from S3 may be as large as Lambda's unzipped limit (the 50 MB
# figure bounds only uploads in the request body).
MAX_S3_ZIPPED = MAX_UNZIPPED
NO_CODE_SOURCE = (
    "This server takes code from S3 only when started with --code-s3-endpoint URL "
    "(the S3-compatible store holding your packages); send the package as ZipFile, "
    "or ask the operator to enable it."
)


def s3_location(raw: dict[str, Any]) -> S3Location | None:
    """The S3 location ``raw`` (Code, or UpdateFunctionCode's body) names, or None."""
    if not any(raw.get(field) is not None for field in _S3_FIELDS):
        return None
    if raw.get("ZipFile"):
        raise InvalidParameterValue(
            "Please provide only one source for function code: ZipFile, or S3Bucket and S3Key."
        )
    bucket, key, version = (raw.get(field) for field in _S3_FIELDS)
    if not isinstance(bucket, str) or not isinstance(key, str) or not bucket or not key:
        raise InvalidParameterValue(
            "Please provide a source for function code: S3Bucket and S3Key."
        )
    if not _S3_BUCKET.fullmatch(bucket):
        raise ValidationError.constraint(
            bucket,
            "s3Bucket",
            "Member must satisfy regular expression pattern: [0-9A-Za-z\\.\\-_]*(?<!\\.)",
        )
    for member, value in (("s3Key", key), ("s3ObjectVersion", version)):
        if value is not None and not (isinstance(value, str) and 1 <= len(value) <= 1024):
            raise ValidationError.constraint(
                value, member, "Member must have length between 1 and 1024"
            )
    return S3Location(bucket, key, version)


async def package(raw: Any, source: CodeSource | None) -> Package:
    """``code(raw)``, or the package ``raw``'s S3 location names, fetched from ``source``
    (None: this server takes no code from S3) and judged as an upload is."""
    if not isinstance(raw, dict):
        raise ValidationError.constraint(raw, "code", "Member must not be null")
    location = s3_location(raw)
    if location is None:
        return code(raw)
    if raw.get("ImageUri"):
        raise InvalidParameterValue(
            "PackageType Image is not supported by ember: deploy a Zip package."
        )
    if source is None:
        raise InvalidParameterValue(NO_CODE_SOURCE)
    file = await source.fetch(location.bucket, location.key, location.version, MAX_S3_ZIPPED)
    try:
        # Up to 250 MB to hash and judge: off the event loop, as the fetch was.
        return await asyncio.to_thread(_checked_file, file)
    except BaseException:
        file.close()
        raise


def _checked_file(file: IO[bytes]) -> Package:
    """A package already in ``file`` (at its start), checked as an upload is."""
    size = file.seek(0, io.SEEK_END)
    file.seek(0)
    check_zip(file)
    digest = _sha256(file)
    return Package(file, size, digest.hexdigest(), base64.b64encode(digest.digest()).decode())


def code(raw: Any) -> Package:
    """Decode and check ``Code`` (create) or the body of UpdateFunctionCode (inline)."""
    if not isinstance(raw, dict):
        raise ValidationError.constraint(raw, "code", "Member must not be null")
    if raw.get("S3Bucket") or raw.get("S3Key") or raw.get("ImageUri"):
        raise InvalidParameterValue(
            "ember takes code inline only here: send the package as ZipFile "
            "(image code locations are not supported)."
        )
    # A str, or the body's own bytes of base64 (a memoryview: api.http read_json).
    encoded = raw.get("ZipFile")
    if not isinstance(encoded, (str, memoryview)) or not encoded:
        raise InvalidParameterValue("Please provide a source for function code (ZipFile).")
    if len(encoded) // 4 * 3 > MAX_ZIPPED + 2:  # refused before a byte is decoded
        raise RequestTooLarge(f"Zipped size must be smaller than {MAX_ZIPPED} bytes")
    # Not a `with`: on success the file is handed on, open, inside the Package.
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
    try:
        return _checked_package(encoded, spool)
    except BaseException:
        spool.close()
        raise


def _checked_package(encoded: str | memoryview, spool: IO[bytes]) -> Package:
    """``encoded`` decoded into ``spool`` and checked, as a Package holding ``spool``."""
    try:
        size = _unbase64(encoded, spool)
    except (binascii.Error, ValueError):
        raise InvalidParameterValue("ZipFile is not valid base64.") from None
    if size > MAX_ZIPPED:
        raise RequestTooLarge(f"Zipped size must be smaller than {MAX_ZIPPED} bytes")
    return _checked_file(spool)


def _sha256(file: IO[bytes]) -> hashlib._Hash:
    """The SHA-256 of ``file`` read in chunks from its start; leaves it at its start."""
    file.seek(0)
    digest = hashlib.sha256()
    while chunk := file.read(_HASH_CHUNK):
        digest.update(chunk)
    file.seek(0)
    return digest


# Characters of base64 decoded at a time (a multiple of 4). Small: a slice is held
# twice while decoded (its text as bytes, and the bytes it decodes to).
_DECODE_SLICE = 1024 * 1024


def _unbase64(encoded: str | memoryview, out: IO[bytes]) -> int:
    """``encoded`` (strict base64) decoded slice by slice into ``out``; the bytes
    written. ``b64decode`` would first copy the whole text to ASCII bytes, and
    return the whole zip: copies of a package beside the text."""
    written = 0
    size = len(encoded)
    for start in range(0, size, _DECODE_SLICE):
        part = encoded[start : start + _DECODE_SLICE]
        text = part.encode("ascii") if isinstance(part, str) else bytes(part)
        if start + _DECODE_SLICE < size and b"=" in text:
            raise binascii.Error("padding inside the data")  # a slice would accept it
        written += out.write(binascii.a2b_base64(text, strict_mode=True))
    return written


def check_zip(package: bytes | IO[bytes]) -> None:
    """A zip the worker can unpack safely (``zips.judge``), within Lambda's unpacked limit.
    A file is read from its start (``zipfile`` seeks in it), and left there."""
    unzip_error = InvalidParameterValue(
        "Could not unzip uploaded file. Please check your file, then try to upload again."
    )
    source = io.BytesIO(package) if isinstance(package, bytes) else package
    try:
        source.seek(0)
        with zipfile.ZipFile(source) as archive:
            members = archive.infolist()
            zips.judge(archive)
    except (zipfile.BadZipFile, zips.UnsafeZip, OSError, ValueError, RuntimeError, zlib.error):
        # Lambda's message names no member or reason; ember's is Lambda's, word for word.
        raise unzip_error from None
    finally:
        source.seek(0)
    if sum(member.file_size for member in members) > MAX_UNZIPPED:
        raise InvalidParameterValue(f"Unzipped size must be smaller than {MAX_UNZIPPED} bytes")


ISOLATION_LEVELS = ("standard", "strong")


def sandbox_settings(body: dict[str, Any]) -> dict[str, Any]:
    """ember's per-function sandbox settings: ``Egress`` (bool), ``Isolation``."""
    unknown = sorted(set(body) - {"Egress", "Isolation"})
    if unknown:
        raise InvalidParameterValue(
            f"Unknown sandbox setting(s): {', '.join(unknown)}; allowed: Egress, Isolation."
        )
    changes: dict[str, Any] = {}
    if "Egress" in body:
        if not isinstance(body["Egress"], bool):
            raise InvalidParameterValue("Egress must be true or false.")
        changes["egress"] = body["Egress"]
    if "Isolation" in body:
        if body["Isolation"] not in ISOLATION_LEVELS:
            raise InvalidParameterValue(
                f"Isolation must be one of {', '.join(ISOLATION_LEVELS)}: {body['Isolation']!r}"
            )
        changes["isolation"] = body["Isolation"]
    return changes
