"""The compact framed protocol between a worker and a Python sandbox.

Every frame is ``HEADER`` (payload length, kind) followed by the payload.
Worker -> sandbox:

- ``INVOKE``: ``META_LEN`` + NUL-separated metadata (request id, deadline in
  epoch ms, invoked function ARN, client context JSON, cognito identity JSON,
  trace id) + the raw event bytes.

- ``CLAIM``: (from the zygote, not the worker) the first frame a pre-started
  runtime reads (Node, started with ``--claim``): JSON ``{"env", "cwd"}``, its
  function's environment and task root; the worker's frames follow. Also the
  first frame a sandbox restored from a SnapStart template reads (``env``).
- ``SNAPSHOT``: (empty) a SnapStart template's Init is done: run the
  before-snapshot hooks and park. Answered with a ``SNAPSHOT`` reply whose
  body is JSON ``{}`` (parked) or ``{"reasonCode", "reason"}`` (refused).

Sandbox -> worker (all share one layout: ``REPLY`` (max RSS in KiB, log
length) + captured log bytes + body):

- ``READY``: Init finished; body is JSON ``{"pid": ..., "initMs": ...}``.
- ``INIT_ERROR``: Init failed; body is Lambda's error JSON; the sandbox exits.
- ``RESULT``: the handler returned; body is the JSON-encoded result.
- ``ERROR``: the handler raised; body is Lambda's error JSON.
- ``LOG``: output as it is printed (a line or more; body empty), before the
  reply it belongs to, or just before the runtime exits (``sys.exit``).
- ``EXIT``: a custom runtime's process exited (``rapi.py``); body is JSON
  ``{"exitCode": n}`` (negative: killed by that signal); the sandbox ends.
- ``CHUNK``: a piece of a streamed response body, as the function wrote it
  (log empty). Any number of them, then the reply that ends the invocation:
- ``PRELUDE``: before the first CHUNK, an HTTP integration prelude (JSON
  ``{"statusCode", "headers", "cookies"}``) for a function URL's status and
  headers (Node's ``HttpResponseStream.from``); optional.
- ``STREAM_END``: the streamed response ended (body empty); or ``ERROR``:
  the stream ended with the function's error (Lambda's error JSON). A
  runtime streams only when the function asks (a Python handler returning
  an iterator; Node's ``awslambda.streamifyResponse``; a custom runtime's
  streaming response); the worker forwards the chunks as they come.

This module is imported both by the platform and, as ``_ember_frames``, by
the zygote under any python3.9+ interpreter: standard library only.
"""

import os
import struct
import time

HEADER = struct.Struct("!IB")
META_LEN = struct.Struct("!I")
REPLY = struct.Struct("!II")

INVOKE = 1
READY = 2
INIT_ERROR = 3
RESULT = 4
ERROR = 5
LOG = 6
EXIT = 7
CHUNK = 8
STREAM_END = 9
PRELUDE = 10
CLAIM = 11
SNAPSHOT = 12

# Control messages between the platform and a zygote (SOCK_SEQPACKET, one
# JSON object per message, file descriptors passed with SCM_RIGHTS).
# A message with a "spec" carries the sandbox's environment as a further fd (a
# sealed memfd the zygote passes on unread), never in the JSON; for Node, then
# another with the variables its runtime reads at start.
SPAWN = "spawn"  # platform -> zygote, with fds [sandbox socket, log pipe, environment]
DESTROY = "destroy"  # platform -> zygote
HELLO = "hello"  # zygote -> platform, once ready to fork
SPAWN_FAILED = "spawn_failed"  # zygote -> platform
SPAWNED = "spawned"  # zygote -> platform: the sandbox's pid on the host
EXITED = "exited"  # zygote -> platform, after the sandbox was reaped
TEMPLATE = "template"  # platform -> zygote: check a parked SnapStart template; and its answer
RESTORE = "restore"  # platform -> zygote: a fork of a template (SPAWNED); fds [environment]

META_SEPARATOR = "\0"


def invoke_frame(meta: "list[str]", event: bytes) -> bytes:
    """Encode one INVOKE frame."""
    encoded = META_SEPARATOR.join(meta).encode("utf-8")
    length = META_LEN.size + len(encoded) + len(event)
    return b"".join((HEADER.pack(length, INVOKE), META_LEN.pack(len(encoded)), encoded, event))


def reply_frame(kind: int, max_rss_kb: int, log: bytes, body: bytes) -> bytes:
    """Encode one sandbox -> worker frame."""
    length = REPLY.size + len(log) + len(body)
    return b"".join((HEADER.pack(length, kind), REPLY.pack(max_rss_kb, len(log)), log, body))


def trace_headers(trace_id: str) -> "tuple[str, str]":
    """(X-Ray trace id, W3C ``traceparent``) for an INVOKE frame's trace id field.

    The platform always sends one (``ember.invoke.tracing``); an empty field (a
    sandbox's self-check) gets a fresh random one, never one derived from the
    request id. The traceparent carries the same trace: the Root's two parts
    as its trace id, Parent as its parent id, Sampled as its flags.
    """
    if not trace_id:
        trace_id = "Root=1-{0:08x}-{1};Parent={2};Sampled=0".format(
            int(time.time()), os.urandom(12).hex(), os.urandom(8).hex()
        )
    # By position, not by splitting: this runs in the sandbox on every invocation.
    root = trace_id.find("Root=1-")
    parent = trace_id.find("Parent=")
    if root < 0 or parent < 0 or trace_id[root + 15 : root + 16] != "-":
        return trace_id, ""
    trace = trace_id[root + 7 : root + 15] + trace_id[root + 16 : root + 40]
    span = trace_id[parent + 7 : parent + 23]
    if len(trace) != 32 or len(span) != 16:
        return trace_id, ""
    flags = "-01" if "Sampled=1" in trace_id else "-00"
    return trace_id, ("00-" + trace + "-" + span + flags).lower()
