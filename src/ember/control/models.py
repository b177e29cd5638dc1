"""The function record: what the registry stores and the API renders."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import orjson

from ember.control import snapstart
from ember.control.arns import LATEST, Arns, bare
from ember.control.snapstart import Outcome, Template


@dataclass(frozen=True)
class FunctionRecord:
    """One version of a function (``$LATEST`` or a published one): configuration and code."""

    name: str  # the storage key: the bare name in the default account (Arns.key)
    runtime: str
    handler: str
    role: str
    description: str
    timeout: int  # seconds, 1-900
    memory_size: int  # MB, 128-10240
    # None when the function never had an Environment (Lambda then omits it).
    environment: dict[str, str] | None
    code_sha256: str  # base64 of the zip's SHA-256, as Lambda reports it
    code_digest: str  # the same digest in hex: the package store's key
    code_size: int
    last_modified: str  # Lambda's format: 2026-11-28T13:07:49.123+0000
    # Invariant: changes on every write, so sandboxes keyed by it never
    # outlive the configuration they were built from.
    revision_id: str
    ephemeral_storage: int = 512  # MB of /tmp
    architectures: tuple[str, ...] = ("x86_64",)
    # ember extensions (GET/PUT /_ember/functions/{name}/sandbox):
    egress: bool = False  # network beyond loopback, through user-mode NAT
    isolation: str = "standard"  # "standard" (namespaces, seccomp) or "strong" (gVisor)
    # "$LATEST" (mutable) or a published version's number ("1", "2", ...): immutable.
    version: str = LATEST
    # Layer version ARNs, in the order they are merged under /opt. Invariant:
    # layer_digests and layer_sizes are parallel to it (content of each version
    # when attached: the function keeps it even if the version is deleted).
    layers: tuple[str, ...] = ()
    layer_digests: tuple[str, ...] = ()
    layer_sizes: tuple[int, ...] = ()
    tracing_mode: str = "PassThrough"  # or "Active": fresh trace ids are sampled
    # LoggingConfig. Invariant: both levels are None unless log_format is "JSON"
    # (Lambda filters by level only in JSON), and then both are set.
    log_format: str = "Text"
    application_log_level: str | None = None
    system_log_level: str | None = None
    log_group: str | None = None  # None: Lambda's default, /aws/lambda/<name>
    # PutRuntimeManagementConfig: "Auto" (Lambda's default), "FunctionUpdate" or
    # "Manual". Invariant: runtime_version_arn is set exactly when it is "Manual".
    update_runtime_on: str = "Auto"
    runtime_version_arn: str | None = None
    # SnapStart's ApplyOn: "None", "PublishedVersions" or ember's "LatestAndPublished".
    snap_start: str = snapstart.NONE
    # This version's SnapStart template (a ``snapstart.Template`` value): status, not
    # configuration, so it changes without a new RevisionId (``settled``). Invariant:
    # "Off" exactly when SnapStart does not apply to this version; the reason fields
    # are set exactly when it is "Refused" or "Failed".
    template: str = Template.OFF.value
    template_reason_code: str | None = None
    template_reason: str | None = None
    # Whether an update of $LATEST (not its create, nor a publish) asked for the
    # template: Lambda reports an update's progress in LastUpdateStatus, not State.
    template_after_update: bool = False

    def to_json(self) -> str:
        return orjson.dumps(dataclasses.asdict(self)).decode()

    @classmethod
    def from_json(cls, document: str) -> FunctionRecord:
        raw: dict[str, Any] = orjson.loads(document)
        raw["architectures"] = tuple(raw.get("architectures", ("x86_64",)))
        for key in ("layers", "layer_digests", "layer_sizes"):
            raw[key] = tuple(raw.get(key, ()))
        return cls(**raw)

    @property
    def starts_from_template(self) -> bool:
        """Whether this version's sandboxes start from its SnapStart template (being
        made counts: the backend makes it then, or runs Init if it must)."""
        return self.template in (Template.PENDING.value, Template.READY.value)

    def awaiting_template(self, after_update: bool = False) -> FunctionRecord:
        """This record as a new version of it starts: its template to be made if
        SnapStart applies to it, else none (``after_update``: an update of $LATEST)."""
        template = snapstart.initial(self.snap_start, self.version)
        return dataclasses.replace(
            self,
            template=template.value,
            template_reason_code=None,
            template_reason=None,
            template_after_update=after_update and template is Template.PENDING,
        )

    def settled(self, outcome: Outcome) -> FunctionRecord:
        """This record with its template's outcome recorded (same RevisionId)."""
        return dataclasses.replace(
            self,
            template=outcome.template.value,
            template_reason_code=outcome.reason_code,
            template_reason=outcome.reason,
        )

    def same_configuration(self, other: FunctionRecord) -> bool:
        """Whether ``other`` differs from this record in its template's status only."""
        return (
            dataclasses.replace(
                other,
                template=self.template,
                template_reason_code=self.template_reason_code,
                template_reason=self.template_reason,
                template_after_update=self.template_after_update,
            )
            == self
        )

    @property
    def function_name(self) -> str:
        """The name clients see (``name`` is the storage key, see ``Arns.key``)."""
        return bare(self.name)

    @property
    def log_group_name(self) -> str:
        return self.log_group or f"/aws/lambda/{bare(self.name)}"

    def logging_config(self) -> dict[str, str]:
        """LoggingConfig as Lambda answers it: the levels only in JSON format."""
        config = {"LogFormat": self.log_format, "LogGroup": self.log_group_name}
        if self.application_log_level is not None:
            config["ApplicationLogLevel"] = self.application_log_level
        if self.system_log_level is not None:
            config["SystemLogLevel"] = self.system_log_level
        return config

    def configuration(self, arns: Arns, qualifier: str | None = None) -> dict[str, Any]:
        """FunctionConfiguration as AWS returns it; ``qualifier`` ends the FunctionArn.

        Lambda qualifies the ARN when the caller named a version or alias (and in
        version listings); published versions have no LastUpdateStatus.
        """
        config: dict[str, Any] = {
            "FunctionName": bare(self.name),
            "FunctionArn": arns.function(self.name, qualifier),
            "Runtime": self.runtime,
            "Role": self.role,
            "Handler": self.handler,
            "CodeSize": self.code_size,
            "Description": self.description,
            "Timeout": self.timeout,
            "MemorySize": self.memory_size,
            "LastModified": self.last_modified,
            "CodeSha256": self.code_sha256,
            "Version": self.version,
            "TracingConfig": {"Mode": self.tracing_mode},
            "RevisionId": self.revision_id,
            "PackageType": "Zip",
            "Architectures": list(self.architectures),
            "EphemeralStorage": {"Size": self.ephemeral_storage},
            "LoggingConfig": self.logging_config(),
            **snapstart.status_fields(
                self.snap_start,
                Template(self.template),
                self.template_reason_code,
                self.template_reason,
                self.template_after_update,
            ),
        }
        if not self.handler:
            del config["Handler"]  # a custom runtime's is optional; Lambda then omits it
        if self.environment is not None:
            config["Environment"] = {"Variables": dict(self.environment)}
        if self.version != LATEST:
            del config["LastUpdateStatus"]
        if self.layers:
            config["Layers"] = [
                {"Arn": arn, "CodeSize": size}
                for arn, size in zip(self.layers, self.layer_sizes, strict=True)
            ]
        return config
