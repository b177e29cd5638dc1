"""Typed, frozen settings: loaded once at start-up, documented per field."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _total_memory_mb() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    except (ValueError, OSError):
        return 4096


@dataclass(frozen=True)
class Settings:
    """Everything `ember serve` can be told. Each default is the documented one."""

    # Address the Frontend listens on.
    host: str = "127.0.0.1"
    port: int = 9900
    # Where metadata (SQLite, WAL), packages, unpacked code and logs live.
    data_dir: Path = field(default_factory=lambda: Path(".ember-data"))
    # The account and region every ARN names; any credentials are accepted.
    region: str = "us-east-1"
    account_id: str = "000000000000"
    # A request whose head is not whole this many seconds after its first byte,
    # or whose body sends nothing for as long, is closed (slow-loris; api/wire.py).
    read_timeout_seconds: float = 30.0
    # The largest request head (request line and headers) and most headers taken.
    max_head_bytes: int = 64 * 1024
    max_headers: int = 100
    # Idle warm sandboxes are destroyed after this many seconds (Lambda: ~10 min).
    keep_alive_seconds: float = 600.0
    # How often the evictor freezes idle sandboxes and reclaims expired ones.
    evict_interval_seconds: float = 1.0
    # An idle warm sandbox is frozen (cgroup freezer) after this many seconds.
    freeze_after_seconds: float = 1.0
    # "zygote": forked sandboxes with cgroups and a private mount namespace
    # (needs root); "process": the same forks with no isolation at all, for
    # development on machines without root (logged as unisolated).
    sandbox: str = "zygote"
    # Placement refuses new sandboxes beyond these (memory counts function MemorySize).
    worker_memory_mb: int = field(default_factory=lambda: max(1024, _total_memory_mb() * 3 // 4))
    max_sandboxes: int = 512
    # Pre-forked sandboxes each zygote keeps ready (cgroup made, process
    # forked, waiting for a function): a cold start then skips fork and set-up.
    sandbox_pool: int = 2
    # Init (fork + import of the handler) must finish within this many seconds.
    init_timeout_seconds: float = 10.0
    # Processes (and threads) one sandbox may hold at once (cgroup pids.max).
    pids_per_sandbox: int = 64
    # Open files per sandbox (RLIMIT_NOFILE).
    files_per_sandbox: int = 1024
    # Per-function log files are rotated past this size (one old file is kept).
    log_file_max_bytes: int = 16 * 1024 * 1024
    # Concurrent executions of each account (Lambda's default quota): reserved
    # concurrency is carved out of it, at least 100 always stay unreserved.
    account_concurrency: int = 1000
    # Quotas of every account (each its own): functions, and bytes of code
    # (functions, their versions and layers; Lambda's default, 75 GB).
    account_max_functions: int = 1000
    account_code_storage_bytes: int = 80_530_636_800
    # Where rate-limit state and concurrency leases live: "memory" (this process)
    # or "redis" (shared by every frontend using the same redis_url).
    throttle_backend: str = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Cluster mode (issue 13): a PostgreSQL URL (postgresql://USER@HOST:PORT/DB)
    # puts every piece of metadata there, shared by every node using it; None
    # keeps the embedded SQLite files in the data dir.
    database_url: str | None = None
    # Code and layer blobs: "local" (<data_dir>/packages), "postgresql" (chunked
    # bytea in database_url) or "s3://BUCKET?endpoint=URL". "" picks the default:
    # local without a database, postgresql with one.
    blobs: str = ""
    # The S3-compatible endpoint (http(s)://HOST:PORT) of the users' own buckets, where
    # CreateFunction's Code.S3Bucket/S3Key (and UpdateFunctionCode's, PublishLayerVersion's)
    # are read with boto3's credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE, ...); unrelated
    # to blobs. None: code is taken inline (ZipFile) only.
    code_s3_endpoint: str | None = None
    # What throttling does while its Redis cannot be reached: "deny" every call
    # (503 ServiceException, fail closed) or "allow" them without rate limits,
    # concurrency counted on this node only (fail open).
    throttle_unavailable: str = "deny"
    # Asynchronous invocation (issue 4). "sqlite": events are durable in
    # <data_dir>/queue.sqlite3 before the 202; "postgresql": in database_url;
    # "memory": lost on exit (development). "" picks the default: sqlite
    # without a database, postgresql with one.
    queue_backend: str = ""
    # Concurrent deliveries of queued events (0: accept events, deliver none).
    # Each delivery waits on the sandbox and on the queue's commits: with few
    # slots the latency, not the CPU, bounds the drain rate.
    pollers: int = 32
    # Lambda's 60 s: a failed event is retried 1x then 2x this later, and
    # throttle backoff (1 s .. 5 min) is scaled by it / 60. Tests make it tiny.
    retry_base_delay_seconds: float = 60.0
    # A received event stays hidden for the function's timeout plus this margin
    # (Init, queueing) before another poller may take it again.
    visibility_margin_seconds: float = 60.0
    # Largest Event payload (Lambda: 1 MB; older docs and LocalStack say 256 KB).
    async_max_payload_bytes: int = 1024 * 1024
    # Manifests (issue 8): the controller re-reconciles every object this often.
    reconcile_resync_seconds: float = 30.0
    # Length of a minute for rate(...) schedules. 60; tests shrink it (cron is unaffected).
    schedule_minute_seconds: float = 60.0
    # MCP at /mcp: a static bearer token acting for the default account (all its
    # tools); when set, /mcp requires a bearer token even with auth "none".
    mcp_token: str | None = None
    # An OAuth 2.1 authorization server whose JWT access tokens /mcp accepts
    # (its JWKS found through its RFC 8414 or OpenID metadata); None: none.
    mcp_oauth_issuer: str | None = None
    # The URL clients reach /mcp at, when not endpoint_url + "/mcp" (behind a
    # proxy): the audience OAuth tokens must name, and the RFC 9728 resource.
    mcp_resource: str | None = None
    # Host names (besides loopback and `host`) that the API, ember's routes and /mcp
    # accept in Host and Origin, e.g. the name clients use behind a proxy; anything
    # else is refused (DNS rebinding, forged browser calls: ember.auth.hosts).
    allowed_hosts: tuple[str, ...] = ()
    # The domain of host-style function URLs, <url-id>.lambda-url.<region>.<domain>.
    # Given: FunctionUrl names that form. Not given: such hosts are still served
    # under "localhost" (browsers and curl resolve *.localhost to loopback), and
    # FunctionUrl keeps the /url/NAME/ form every resolver reaches.
    url_domain: str = ""
    # Proxies (CIDRs) whose X-Forwarded-For names the client: the client address
    # keys per-caller rate limits without authentication and is a URL event's
    # sourceIp. None trusted by default: a header anyone can send proves nothing.
    trusted_proxies: tuple[str, ...] = ()
    # The audit log of control-plane changes keeps this many of the newest entries
    # (GET /_ember/audit); older ones are pruned as new ones are written.
    audit_retention: int = 100_000
    # Authentication (issue 15): "sigv4" verifies every API request's AWS
    # Signature V4 against the access keys, and /mcp requires a bearer token;
    # "none" acts as the default account's root unverified (loopback hosts only,
    # for development).
    auth: str = "sigv4"
    # Invocation history (GET /_ember/functions/NAME/invocations): the newest records
    # kept per function; older ones are trimmed as new ones are written.
    history_size: int = 10_000
    # False: calls are not recorded at all (no call metrics, history or series);
    # what the benchmark compares the warm path against.
    observe: bool = True
    # OTLP/HTTP collector (e.g. http://127.0.0.1:4318) that receives a span tree per
    # call; None: no tracing, and OpenTelemetry is never imported (pip install ember[otel]).
    otlp_endpoint: str | None = None
    # GET /metrics without authentication from anywhere; otherwise loopback clients
    # and holders of metrics_token scrape unsigned, anyone else signs (ember:GetMetrics).
    metrics_public: bool = False
    # A bearer token Prometheus may send (authorization: credentials) for /metrics.
    metrics_token: str | None = None
    # The base64 master key that seals access-key secrets at rest (EMBER_MASTER_KEY
    # wins over it); None: <data_dir>/master.key, created on first start.
    master_key_file: Path | None = None

    # Cluster roles (issue 14): "all" runs every component in this process;
    # "frontend" runs the API, routing, pollers and singleton duties and sends
    # every call to a worker host (`ember worker`) over the channel: no sandboxes.
    role: str = "all"
    # The shared secret of the frontend-to-worker channel (every frontend and
    # worker of a cluster has the same one); None outside the two roles.
    cluster_token: bytes | None = field(default=None, repr=False)
    # A worker host's channel: the address it listens on, and the one it
    # registers for frontends to reach it at ("" : the listen address).
    listen: str = ""
    advertise: str = ""
    # Event source mappings: the brokers an EventSourceArn may name, NAME -> URL
    # (with its credentials: never logged nor answered): amqp:// for RabbitMQ
    # (arn:aws:mq:REGION:ACCOUNT:broker:NAME:ID), nats:// for NATS JetStream
    # (arn:ember:nats:REGION:ACCOUNT:stream:NAME:STREAM). None declared: no mapping.
    brokers: tuple[tuple[str, str], ...] = ()

    @property
    def queue(self) -> str:
        """The queue backend in force: the one named, else the default of the mode."""
        return self.queue_backend or ("postgresql" if self.database_url else "sqlite")

    @property
    def blob_store(self) -> str:
        """The blob store in force: the one named, else the default of the mode."""
        return self.blobs or ("postgresql" if self.database_url else "local")

    @property
    def url_host_suffix(self) -> str:
        """``.lambda-url.<region>.<url domain>``: what host-style URLs end with."""
        return f".lambda-url.{self.region}.{self.url_domain or 'localhost'}".lower()

    @property
    def mcp_resource_url(self) -> str:
        """The MCP resource's URL: the one named, else this server's /mcp."""
        return self.mcp_resource or self.endpoint_url + "/mcp"

    @property
    def endpoint_url(self) -> str:
        """The URL a function (or a user on this host) reaches ember at."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"
