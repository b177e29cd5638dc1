"""The compact framed protocol between a worker and a Python sandbox.

Every frame is ``HEADER`` (payload length, kind) followed by the payload.
Worker -> sandbox:

- ``INVOKE``: ``META_LEN`` + NUL-separated metadata (request id, deadline in
  epoch ms, invoked function ARN, client context JSON, cognito identity JSON,
  trace id) + the raw event bytes.

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

# Control messages between the platform and a zygote (SOCK_SEQPACKET, one
# JSON object per message, file descriptors passed with SCM_RIGHTS).
SPAWN = "spawn"  # platform -> zygote, with fds [sandbox socket, log pipe]
DESTROY = "destroy"  # platform -> zygote
HELLO = "hello"  # zygote -> platform, once ready to fork
SPAWN_FAILED = "spawn_failed"  # zygote -> platform
SPAWNED = "spawned"  # zygote -> platform: the sandbox's pid on the host
EXITED = "exited"  # zygote -> platform, after the sandbox was reaped

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
    fields = dict(part.strip().partition("=")[::2] for part in trace_id.split(";"))
    root = fields.get("Root", "").split("-")
    parent = fields.get("Parent", "")
    if len(root) != 3 or len(root[1] + root[2]) != 32 or len(parent) != 16:
        return trace_id, ""
    flags = "01" if fields.get("Sampled") == "1" else "00"
    return trace_id, "00-{0}{1}-{2}-{3}".format(root[1], root[2], parent.lower(), flags).lower()
