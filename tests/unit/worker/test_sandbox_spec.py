"""The spec the Worker builds for a sandbox, and for a SnapStart template: one path."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ember.config import Settings
from ember.control.models import FunctionRecord
from ember.control.snapstart import Outcome
from ember.sandbox.base import SandboxSpec
from ember.worker.packages import CodeCache
from ember.worker.worker import LocalWorker

# What may differ between two sandboxes of one version (the template is made from one).
PER_SANDBOX = {"AWS_LAMBDA_LOG_STREAM_NAME"}


@dataclass
class Backend:
    """Keeps the specs it is given (no process)."""

    name: str = "zygote"
    created: list[SandboxSpec] = field(default_factory=list)
    prepared: list[SandboxSpec] = field(default_factory=list)

    async def create(self, spec: SandboxSpec) -> SandboxSpec:
        self.created.append(spec)
        return spec

    async def prepare_snap_start(self, spec: SandboxSpec) -> None:
        self.prepared.append(spec)


async def _package(digest: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(e, c):\n    return 1\n")
    return buffer.getvalue()


def _record(apply_on: str = "None", version: str = "1") -> FunctionRecord:
    record = FunctionRecord(
        "f", "python3.11", "app.handler", "role", "", 3, 128, {"STAGE": "x"}, "sha", "d" * 64,
        1, "t", "rev", version=version, snap_start=apply_on,
    )  # fmt: skip
    return record.awaiting_template()


def _worker(tmp_path: Path) -> tuple[LocalWorker, Backend]:
    backend = Backend()
    worker = LocalWorker(backend, CodeCache(tmp_path, _package), Settings())  # type: ignore[arg-type]
    return worker, backend


def _without_per_sandbox(spec: SandboxSpec) -> SandboxSpec:
    env = {key: value for key, value in spec.env.items() if key not in PER_SANDBOX}
    return dataclasses.replace(spec, sandbox_id="", env=env)


def test_a_snap_start_versions_sandboxes_and_template_share_one_spec(tmp_path: Path) -> None:
    async def scenario() -> None:
        worker, backend = _worker(tmp_path)
        record = _record("PublishedVersions")
        await worker.prepare_snap_start(record)
        await worker.start_sandbox(record)
        await worker.start_sandbox(record, provisioned=True)
        template, *sandboxes = backend.prepared + backend.created
        assert template.snap_start and all(spec.snap_start for spec in sandboxes)
        assert template.env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "snap-start"
        for spec in sandboxes:
            assert _without_per_sandbox(spec) == _without_per_sandbox(template)
            assert spec.sandbox_id != template.sandbox_id
            assert (
                spec.env["AWS_LAMBDA_LOG_STREAM_NAME"] != template.env["AWS_LAMBDA_LOG_STREAM_NAME"]
            )

    asyncio.run(scenario())


def test_sandboxes_run_init_where_snap_start_does_not_apply_or_was_refused(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        worker, backend = _worker(tmp_path)
        refused = _record("PublishedVersions").settled(Outcome.refused("X", "threads"))
        for record, provisioned, kind in [
            (_record(), False, "on-demand"),
            (_record(), True, "provisioned-concurrency"),
            (_record("PublishedVersions", "$LATEST"), False, "on-demand"),
            (refused, False, "on-demand"),
        ]:
            await worker.start_sandbox(record, provisioned)
            spec = backend.created[-1]
            assert not spec.snap_start
            assert spec.env["AWS_LAMBDA_INITIALIZATION_TYPE"] == kind
        await worker.start_sandbox(_record("LatestAndPublished", "$LATEST"))
        assert backend.created[-1].snap_start

    asyncio.run(scenario())
