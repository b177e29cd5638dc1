"""The local Worker: turns a function record into a running sandbox."""

from __future__ import annotations

import contextlib
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from ember.config import Settings
from ember.control.models import FunctionRecord
from ember.sandbox.base import Sandbox, SandboxBackend, SandboxSpec
from ember.sandbox.isolate import TASK_ROOT
from ember.worker.layers import LayerCache, cache_key
from ember.worker.packages import CodeCache

RUNTIME_DIR = str(Path(__file__).resolve().parent.parent / "runtime")
# AWS_LAMBDA_INITIALIZATION_TYPE of each way a sandbox starts (Lambda's values).
ON_DEMAND = "on-demand"
PROVISIONED = "provisioned-concurrency"
# Every sandbox of a SnapStart version, provisioned or not, and its template: the
# template's environment is the one its sandboxes start with.
SNAP_START = "snap-start"


def log_stream_name(now: datetime, token: str, version: str = "$LATEST") -> str:
    """Lambda's stream name: ``2026/11/28/[$LATEST]<32 hex>`` (``[3]`` for version 3)."""
    return now.strftime("%Y/%m/%d/") + f"[{version}]" + token


def lambda_environment(
    record: FunctionRecord,
    settings: Settings,
    task_root: str,
    stream: str,
    initialization_type: str = ON_DEMAND,
) -> dict[str, str]:
    """Lambda's variables first, then the function's own; nothing of the server's."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "_HANDLER": record.handler,
        "LAMBDA_TASK_ROOT": task_root,
        "LAMBDA_RUNTIME_DIR": RUNTIME_DIR,
        "AWS_LAMBDA_FUNCTION_NAME": record.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": record.version,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(record.memory_size),
        "AWS_LAMBDA_LOG_GROUP_NAME": record.log_group_name,
        "AWS_LAMBDA_LOG_STREAM_NAME": stream,
        "AWS_LAMBDA_INITIALIZATION_TYPE": initialization_type,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{record.runtime}",
        "AWS_REGION": settings.region,
        "AWS_DEFAULT_REGION": settings.region,
        # Any credentials are accepted by ember; SDKs just need some.
        "AWS_ACCESS_KEY_ID": "ember",
        "AWS_SECRET_ACCESS_KEY": "ember",
        "AWS_SESSION_TOKEN": "ember",
        # SDK calls made inside a function reach this ember, not AWS.
        "AWS_ENDPOINT_URL": settings.endpoint_url,
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if record.log_format == "JSON":
        # What Lambda's runtimes read to log JSON records at the configured level.
        env["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
        env["AWS_LAMBDA_LOG_LEVEL"] = record.application_log_level or "INFO"
    if not record.handler:
        del env["_HANDLER"]  # optional for custom runtimes
    if record.runtime.startswith("nodejs"):
        env.update(node_env(record.runtime, task_root))
    if record.runtime.startswith("provided"):
        # Where a custom runtime's shared libraries live, as on Lambda.
        env["LD_LIBRARY_PATH"] = f"/lib64:/usr/lib64:{task_root}:{task_root}/lib:/opt/lib"
    env.update(record.environment or {})
    return env


def node_env(runtime: str, task_root: str) -> dict[str, str]:
    """What Lambda's Node runtimes set: module paths (layers' first), the runtime's
    library path, and the major-specific layer directory."""
    major = runtime.removeprefix("nodejs").removesuffix(".x")
    return {
        "NODE_PATH": f"/opt/nodejs/node{major}/node_modules:/opt/nodejs/node_modules:"
        f"/var/runtime/node_modules:/var/runtime:{task_root}",
        "LD_LIBRARY_PATH": f"/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:{task_root}:"
        f"{task_root}/lib:/opt/lib",
        "AWS_LAMBDA_RUNTIME_NAME": runtime,
    }


def with_layer_paths(env: dict[str, str], opt: str) -> dict[str, str]:
    """Lambda's layer paths: ``/opt/bin`` ends PATH, ``/opt/lib`` is on LD_LIBRARY_PATH."""
    library = env.get("LD_LIBRARY_PATH")
    return {
        **env,
        "PATH": f"{env.get('PATH', '')}:{opt}/bin",
        "LD_LIBRARY_PATH": f"{library}:{opt}/lib" if library else f"{opt}/lib",
    }


def package_keys(record: FunctionRecord) -> set[str]:
    """The worker's cache entries a sandbox of ``record`` runs from: code and merged layers."""
    keys = {record.code_digest}
    if record.layer_digests:
        keys.add(cache_key(record.layer_digests))
    return keys


class LocalWorker:
    """The one Worker of embedded mode: package cache plus a sandbox backend."""

    def __init__(
        self,
        backend: SandboxBackend,
        code: CodeCache,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        strong: SandboxBackend | None = None,
        layers: LayerCache | None = None,
    ) -> None:
        self.backend = backend
        # Functions with Isolation "strong" run here (gVisor), the rest on ``backend``.
        self.strong = strong
        self.code = code
        self.layers = layers
        self.settings = settings
        self._clock = clock
        self.memory_mb = settings.worker_memory_mb
        self.max_sandboxes = settings.max_sandboxes
        # Cache entries of sandboxes being started (not yet a slot the manager knows).
        self._starting: Counter[str] = Counter()

    async def start_sandbox(self, record: FunctionRecord, provisioned: bool = False) -> Sandbox:
        """Init a sandbox for ``record``: fetch the code (cached), fork, import; or
        start it from the version's SnapStart template (``starts_from_template``).

        ``provisioned``: started ahead of any call (provisioned concurrency),
        which the function sees as AWS_LAMBDA_INITIALIZATION_TYPE.
        """
        with self._unpacking(record):
            backend, spec = await self.sandbox_spec(record, provisioned)
            return await backend.create(spec)

    async def prepare_snap_start(self, record: FunctionRecord) -> None:
        """Make the SnapStart template of ``record``'s version now, from the spec its
        sandboxes get. Raises SnapStartRefused (it cannot be snapshotted) or InitFailed."""
        with self._unpacking(record):
            backend, spec = await self.sandbox_spec(record)
            await backend.prepare_snap_start(spec)

    @contextlib.contextmanager
    def _unpacking(self, record: FunctionRecord) -> Iterator[None]:
        """Keep ``sweep`` off ``record``'s cache entries while a sandbox is made of them."""
        keys = package_keys(record)
        self._starting.update(keys)
        try:
            yield
        finally:
            self._starting.subtract(keys)
            for key in keys:
                if self._starting[key] <= 0:
                    del self._starting[key]

    async def sweep(self, needed: Iterable[str]) -> int:
        """Remove unpacked code and merged layers that no function and no sandbox needs.

        ``needed``: the cache entries of every stored function and version and of
        every live sandbox (``package_keys``); those being started are added here.
        Without this, every code update would leave its old unpacked tree behind.
        """
        keep = set(needed) | set(self._starting)
        removed = 0
        for digest in self.code.cached() - keep:
            await self.code.evict(digest)
            removed += 1
        if self.layers is not None:
            for key in self.layers.cached() - keep:
                await self.layers.evict(key)
                removed += 1
        return removed

    async def sandbox_spec(
        self, record: FunctionRecord, provisioned: bool = False
    ) -> tuple[SandboxBackend, SandboxSpec]:
        """The backend and spec of a new sandbox of ``record`` (its code unpacked first).

        A SnapStart version's specs differ from one sandbox to the next only in
        ``sandbox_id`` and AWS_LAMBDA_LOG_STREAM_NAME (its template was made from one
        of them): the template's environment is every sandbox's.
        """
        code_dir = await self.code.directory(record.code_digest)
        opt_dir = None
        if record.layer_digests and self.layers is not None:
            opt_dir = str(await self.layers.directory(record.layer_digests))
        backend = self.backend
        if record.isolation == "strong" and self.strong is not None:
            backend = self.strong
        task_root = TASK_ROOT if backend.name in ("zygote", "gvisor") else str(code_dir)
        token = secrets.token_hex(16)
        snap_start = record.starts_from_template
        env = lambda_environment(
            record,
            self.settings,
            task_root,
            log_stream_name(self._clock(), token, record.version),
            SNAP_START if snap_start else PROVISIONED if provisioned else ON_DEMAND,
        )
        if opt_dir is not None:
            env = with_layer_paths(env, "/opt" if backend.name in ("zygote", "gvisor") else opt_dir)
        spec = SandboxSpec(
            sandbox_id=token[:16],
            runtime=record.runtime,
            handler=record.handler,
            code_dir=str(code_dir),
            env=env,
            memory_mb=record.memory_size,
            tmp_mb=record.ephemeral_storage,
            pids_max=self.settings.pids_per_sandbox,
            files_max=self.settings.files_per_sandbox,
            egress=record.egress,
            opt_dir=opt_dir,
            snap_start=snap_start,
            # One version in one configuration: a revision names both.
            reuse_key=f"{record.name}:{record.version}:{record.revision_id}",
        )
        return backend, spec
