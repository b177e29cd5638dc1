"""The sandbox backend contract.

A *sandbox* is one execution environment of one function version: created
(Init) once, then invoked many times, one invocation at a time. A *backend*
knows how to build sandboxes; the Worker owns their lifecycle and the Worker
Manager never learns how they are built.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol


@dataclass(frozen=True)
class SandboxSpec:
    """What one sandbox runs and within which limits."""

    sandbox_id: str
    runtime: str  # e.g. "python3.12"
    handler: str  # "module.function"
    code_dir: str  # unpacked, read-only package
    env: Mapping[str, str]  # the complete environment (nothing is inherited)
    memory_mb: int  # memory cgroup limit
    tmp_mb: int  # size of the private /tmp
    pids_max: int  # cgroup pids.max
    files_max: int  # RLIMIT_NOFILE
    egress: bool = False  # network beyond loopback (user-mode NAT, no host loopback)
    # The function's layers merged in order (read-only), seen at /opt when
    # isolated; its ``python`` subdirectory goes on sys.path. None: no layers.
    opt_dir: str | None = None
    # SnapStart: start from the version's template (Init ran once, in the
    # template) instead of running Init; a version the backend refused
    # (``SnapStartRefused``) gets an ordinary sandbox, which runs Init.
    snap_start: bool = False
    # Sandboxes with the same key may be handed what one of them leaves behind
    # (its network namespace, emptied of sockets; on cgroup v1 its cgroups):
    # one function version's sandboxes, one after another, never another
    # tenant's or configuration's. "": nothing is.
    reuse_key: str = ""


class ResponseSink(Protocol):
    """Receives a streamed response as the function writes it, on the event loop."""

    def prelude(self, data: bytes) -> None:
        """An HTTP integration prelude (JSON: statusCode, headers, cookies), before
        any chunk: Node's ``HttpResponseStream.from``, a custom runtime's
        ``application/vnd.awslambda.http-integration-response``."""
        ...

    def chunk(self, data: bytes) -> None:
        """One piece of the response body, in order; never empty."""
        ...


class SandboxRequest(NamedTuple):
    """One invocation as the sandbox sees it (a tuple: built on every call)."""

    request_id: str
    deadline_ms: int  # epoch milliseconds
    invoked_arn: str
    client_context: str  # decoded JSON, or ""
    identity: str  # JSON, or ""
    trace_id: str
    payload: bytes
    timeout_seconds: float
    # Called with the function's output as it arrives (a line or more at a
    # time), before the call ends; None: the output only comes in the result.
    output: Callable[[bytes], None] | None = None
    # Where a streamed response goes as the function writes it (the result's
    # body is then empty); None: a streamed response is gathered into the
    # result's body (the prelude as Lambda's bytes: JSON, then 8 NULs).
    stream: ResponseSink | None = None


# Lambda's limit on one streamed response; past it the sandbox is stopped and
# the stream ends with Function.ResponseSizeTooLarge.
MAX_STREAMED_RESPONSE = 200 * 1024 * 1024


class Outcome(enum.Enum):
    # The handler returned; body is its JSON result, or (streamed through
    # ``SandboxRequest.chunk``) empty.
    OK = "ok"
    # The function failed (exception, timeout, crash, OOM); body is Lambda's
    # error JSON and the invoke answers 200 with X-Amz-Function-Error.
    FUNCTION_ERROR = "function_error"


class SandboxResult(NamedTuple):
    outcome: Outcome
    body: bytes
    log: bytes  # output captured during this invocation
    max_rss_kb: int
    # Invariant: when False the sandbox is already destroyed and must not be reused.
    reusable: bool


class InitFailed(Exception):
    """Init failed: ``payload`` is the error JSON to answer the invocation with."""

    def __init__(self, payload: bytes, log: bytes, init_ms: float) -> None:
        super().__init__(payload.decode("utf-8", "replace"))
        self.payload = payload
        self.log = log
        self.init_ms = init_ms


class SnapStartRefused(Exception):
    """A version's template cannot be snapshotted: ``reason_code`` (Lambda's
    ``StateReasonCode``) and ``reason`` (its ``StateReason``) say why. Its
    sandboxes then run Init as without SnapStart."""

    def __init__(self, reason_code: str, reason: str) -> None:
        super().__init__(reason)
        self.reason_code = reason_code
        self.reason = reason


class Sandbox(Protocol):
    """A started sandbox. Calls after ``destroy`` are harmless."""

    @property
    def sandbox_id(self) -> str: ...

    @property
    def pid(self) -> int: ...

    @property
    def init_ms(self) -> float:
        """How long Init took (fork to handler imported), in milliseconds."""
        ...

    @property
    def restore_ms(self) -> float | None:
        """How long starting from the version's SnapStart template took, in
        milliseconds (REPORT's ``Restore Duration``); None: Init ran instead."""
        ...

    @property
    def init_log(self) -> bytes:
        """Output printed during Init, reported with the first invocation."""
        ...

    @property
    def alive(self) -> bool: ...

    @property
    def frozen(self) -> bool:
        """Whether ``freeze`` stopped the sandbox's processes."""
        ...

    def freeze(self) -> None:
        """Stop every process of the (idle) sandbox; a no-op where the host cannot."""
        ...

    def thaw(self) -> None:
        """Undo ``freeze``; must be called before ``invoke`` on a frozen sandbox."""
        ...

    async def invoke(self, request: SandboxRequest) -> SandboxResult:
        """Run one invocation. Never raises for a function's failure: a timeout,
        crash or OOM kill becomes a FUNCTION_ERROR result with ``reusable`` False
        (the sandbox is destroyed). A streamed response goes to ``request.stream``
        as it is written (else it is the body), its error or end being the result;
        past MAX_STREAMED_RESPONSE the sandbox is destroyed. Must not be called
        concurrently."""
        ...

    def destroy(self) -> None:
        """Start killing every process of the sandbox and releasing its resources;
        returns at once. Idempotent."""
        ...


OutputSink = Callable[[str, bytes], None]
"""Receives (sandbox id, bytes) that a sandbox wrote straight to fd 1 or 2."""


class SandboxBackend(Protocol):
    """Builds sandboxes. ``start`` before use; ``close`` destroys everything it made."""

    name: str

    async def start(self) -> None:
        """Check the host can give the promised isolation; raise with the reason if not."""
        ...

    async def create(self, spec: SandboxSpec) -> Sandbox:
        """Create a sandbox and run Init. Raises InitFailed when the function's
        Init fails and SandboxUnavailable when the platform could not start one."""
        ...

    async def prepare_snap_start(self, spec: SandboxSpec) -> None:
        """Make ``spec``'s SnapStart template now (Init runs in it once), so that
        its sandboxes start from it. Raises SnapStartRefused when the version
        cannot be snapshotted, InitFailed when its Init fails. Idempotent."""
        ...

    async def close(self) -> None:
        """Destroy every sandbox, stop helper processes, remove cgroups. Idempotent."""
        ...

    def describe(self) -> dict[str, object]:
        """A JSON-able description for /health: isolation in force, runtimes found."""
        ...
