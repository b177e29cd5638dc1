"""Issue 3: what a stranger's function can see, touch or starve, through the real server.

Every test deploys a function with boto3 on a real ``ember serve`` and asserts
what a user relies on: another tenant's function cannot read the host's
files, the server's secrets or other sandboxes; cannot write outside its own
``/tmp``; cannot reach the network, the host's services or other processes;
and when it misbehaves (fork bomb, memory hog, disk filler, infinite loop,
busy thread), only its own sandbox suffers: a canary function deployed beside
it answers the next call.

A sandbox's runtime is PID 1 of its own PID namespace, so ``os.getpid()``
inside says nothing; a function identifies itself by a token made at Init,
and the host pid of a sandbox comes from the server (``GET /_ember/sandboxes``).

The suite needs root (the server refuses full isolation otherwise) and never
skips where the server claims full isolation.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    ROLE,
    Server,
    children,
    host_pid_of,
    lambda_client,
    make_zip,
    read_text,
    sandboxes_of,
    wait_until,
)

Deploy = Callable[..., dict[str, Any]]

# Gives a function a token made at Init, to tell its sandboxes apart.
TOKEN = "import uuid\nTOKEN = uuid.uuid4().hex\n"

# Tries each operation and names the errno it failed with ("ok" when it did not).
ATTEMPT = """
import errno

def attempt(operation):
    try:
        result = operation()
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return "ok" if result is None or isinstance(result, int) else result
"""

CANARY = (
    TOKEN
    + """
def handler(event, context):
    return {"token": TOKEN, "event": event}
"""
)


# -- helpers --------------------------------------------------------------------------


def invoke(aws: Any, name: str, payload: Any = None) -> tuple[dict[str, Any], Any]:
    """Invoke ``name``; return (response, decoded JSON payload or None when empty)."""
    response = aws.invoke(FunctionName=name, Payload=json.dumps(payload or {}).encode())
    raw = response["Payload"].read()
    return response, json.loads(raw) if raw else None


def invoke_ok(aws: Any, name: str, payload: Any = None) -> Any:
    response, body = invoke(aws, name, payload)
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response, body
    return body


def pid_namespace(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/pid")


def members(namespace: str) -> list[int]:
    """Host pids of the processes in a PID namespace (zombies included)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") == namespace:
                    found.append(int(entry))
            except OSError:
                continue  # exited meanwhile
    return found


def freezer_state(pid: int) -> str | None:
    """``FROZEN``/``THAWED`` (cgroup v1) or ``frozen``/``thawed`` (v2) of ``pid``'s cgroup."""
    for line in (read_text(f"/proc/{pid}/cgroup") or "").splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "freezer":
            state = read_text(f"/sys/fs/cgroup/freezer{path}/freezer.state")
            return state.strip() if state else None
        if controllers == "" and path != "/":
            events = read_text(f"/sys/fs/cgroup{path}/cgroup.events") or ""
            if "frozen 1" in events.splitlines():
                return "frozen"
            if "frozen 0" in events.splitlines():
                return "thawed"
    return None


def assert_canary(server: Server, aws: Any, canary: str) -> None:
    """The server is healthy and another function answers its next call."""
    assert server.health()["status"] == "ok"
    marker = uuid.uuid4().hex
    body = invoke_ok(aws, canary, {"marker": marker})
    assert body["event"] == {"marker": marker}


@pytest.fixture(scope="module", autouse=True)
def full_isolation(request: pytest.FixtureRequest) -> None:
    """Skip only where full isolation is impossible; never where the server claims it."""
    if os.geteuid() != 0:
        pytest.skip(
            "not root: `ember serve` cannot isolate sandboxes (namespaces, cgroups, "
            "pivot_root need root), so there is no full isolation to test"
        )
    server: Server = request.getfixturevalue("server")
    isolation = server.health()["isolation"]
    assert isolation["isolated"] is True, f"root, yet the server claims no isolation: {isolation}"


@pytest.fixture
def canary(deploy: Deploy, unique_name: str) -> str:
    return str(deploy(CANARY, name=f"{unique_name}-canary", Timeout=30)["FunctionName"])


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A world-readable directory on the host outside /tmp (which the sandbox replaces)."""
    path = Path("/var/tmp") / f"ember-isolation-{uuid.uuid4().hex}"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# -- what a function can read ------------------------------------------------------------

READER = (
    ATTEMPT
    + """
import os

def read(path):
    with open(path, "rb") as handle:
        return "read %d bytes" % len(handle.read())

def handler(event, context):
    return {
        "files": {path: attempt(lambda: read(path)) for path in event["files"]},
        "dirs": {path: attempt(lambda: os.listdir(path) and "listed") for path in event["dirs"]},
        "tmp": os.listdir("/tmp"),
    }
"""
)


def test_shadow_the_hosts_files_and_embers_data_dir_are_unreadable(
    server: Server, aws: Any, deploy: Deploy, host_dir: Path
) -> None:
    secret, marker = uuid.uuid4().hex, uuid.uuid4().hex
    # World-readable on the host: only the sandbox's own root keeps them out of reach.
    in_host_tmp = Path(f"/tmp/ember-isolation-{marker}")
    in_host_dir = host_dir / "secret.txt"
    in_data_dir = server.data_dir / f"secret-{marker}.txt"
    for path in (in_host_tmp, in_host_dir, in_data_dir):
        path.write_text(secret)
        path.chmod(0o644)
    try:
        name = deploy(READER)["FunctionName"]
        files = [str(in_host_tmp), str(in_host_dir), str(in_data_dir), "/etc/shadow"]
        files += [str(path) for path in sorted(server.data_dir.iterdir()) if path.is_file()]
        dirs = [str(server.data_dir), str(host_dir), "/home", "/var/tmp"]
        seen = invoke_ok(aws, name, {"files": files, "dirs": dirs})
    finally:
        in_host_tmp.unlink()
        in_data_dir.unlink()
    assert Path("/etc/shadow").exists()  # the host has one; the sandbox does not see it
    for path in files:
        assert seen["files"][path] in ("ENOENT", "EACCES"), (path, seen["files"][path])
    for path in dirs:
        assert seen["dirs"][path] in ("ENOENT", "EACCES"), (path, seen["dirs"][path])
    assert in_host_tmp.name not in seen["tmp"]
    assert secret not in json.dumps(seen)  # no file's content came back


ENVIRONMENT = (
    ATTEMPT
    + """
import os

def read(path):
    with open(path, "rb") as handle:
        return handle.read().decode("utf-8", "replace")

def handler(event, context):
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() or entry in ("self", "thread-self"):
            for part in ("environ", "cmdline"):
                path = "/proc/%s/%s" % (entry, part)
                procs[path] = attempt(lambda: read(path))
    data_dir = event["data_dir"]
    return {
        "environ": dict(os.environ),
        "procs": procs,
        "server": attempt(lambda: read("/proc/%d/environ" % event["server_pid"])),
        "data_dir": attempt(lambda: os.listdir(data_dir) and "listed"),
        "registry": {
            path: attempt(lambda: read(path)) for path in event["data_files"]
        },
    }
"""
)


def test_the_servers_environment_and_data_dir_are_invisible(
    host_dir: Path,
    spawn_server: Callable[..., Server],
    monkeypatch: pytest.MonkeyPatch,
    unique_name: str,
) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv("EMBER_ISOLATION_SECRET", secret)
    server = spawn_server(host_dir / "data")  # a data dir outside /tmp, world-readable
    monkeypatch.delenv("EMBER_ISOLATION_SECRET")
    assert server.process is not None
    # The secret is really in the server's environment (root on the host can see it).
    assert secret in Path(f"/proc/{server.process.pid}/environ").read_bytes().decode()
    aws = lambda_client(server)
    aws.create_function(
        FunctionName=unique_name,
        Runtime="python3.11",
        Handler="app.handler",
        Role=ROLE,
        Code={"ZipFile": make_zip({"app.py": ENVIRONMENT})},
        Environment={"Variables": {"MINE": "visible"}},
    )
    data_files = [str(path) for path in server.data_dir.rglob("*") if path.is_file()][:50]
    assert data_files
    seen = invoke_ok(
        aws,
        unique_name,
        {
            "server_pid": server.process.pid,
            "data_dir": str(server.data_dir),
            "data_files": data_files,
        },
    )
    assert seen["environ"]["MINE"] == "visible"  # its own configuration does arrive
    assert "EMBER_ISOLATION_SECRET" not in seen["environ"]
    assert "/proc/1/environ" in seen["procs"]  # its own runtime's, which it may read
    assert seen["server"] == "ENOENT"
    assert seen["data_dir"] == "ENOENT"
    assert set(seen["registry"].values()) == {"ENOENT"}
    assert secret not in json.dumps(seen)


# -- what a function can write -------------------------------------------------------------

WRITER = (
    ATTEMPT
    + """
import os

def write(path):
    with open(path, "w") as handle:
        handle.write("escaped")

def handler(event, context):
    return {
        "files": {path: attempt(lambda: write(path)) for path in event["files"]},
        "dirs": {path: attempt(lambda: os.mkdir(path)) for path in event["dirs"]},
        "tmp": attempt(lambda: write("/tmp/mine")),
    }
"""
)


def test_writing_outside_tmp_fails(
    server: Server, aws: Any, deploy: Deploy, host_dir: Path
) -> None:
    name = deploy(WRITER)["FunctionName"]
    marker = uuid.uuid4().hex
    # Paths that exist in the sandbox (its read-only root and the binds in it) ...
    inside = [
        f"/{marker}",
        "/etc/passwd",
        f"/etc/{marker}",
        f"/usr/{marker}",
        f"/usr/bin/{marker}",
        "/var/task/app.py",
        f"/var/task/{marker}",
        f"/var/{marker}",
        f"/opt/{marker}",
        f"/dev/{marker}",
        # The interpreter's own library, bound read-only from the host.
        os.path.join(os.path.dirname(os.path.realpath(os.__file__)), f"{marker}.py"),
    ]
    # ... and paths of the host, which must not land there either.
    host = [str(host_dir / marker), str(server.data_dir / marker), f"/root/{marker}"]
    dirs = [f"/{marker}-dir", f"/var/task/{marker}-dir", f"/etc/{marker}-dir"]
    seen = invoke_ok(aws, name, {"files": inside + host, "dirs": dirs})
    for path in inside:
        assert seen["files"][path] in ("EROFS", "EACCES"), (path, seen["files"][path])
    for path in dirs:
        assert seen["dirs"][path] in ("EROFS", "EACCES"), (path, seen["dirs"][path])
    for path in host:
        assert seen["files"][path] != "ok", path
        assert not os.path.exists(path), path
    assert seen["tmp"] == "ok"  # its own /tmp is writable


ROOT_AND_DEVICES = (
    ATTEMPT
    + """
import os

def mount_options(target):
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        if fields[4] == target:
            return fields[5].split(",") + line.split(" - ")[1].split()[2].split(",")
    return []

def handler(event, context):
    return {
        "root": sorted(os.listdir("/")),
        "options": {path: mount_options(path) for path in ("/", "/dev", "/tmp", "/proc")},
        "null": attempt(lambda: open("/dev/null", "w").write("x")),
        "zero": attempt(lambda: str(len(open("/dev/zero", "rb").read(8)))),
        "urandom": attempt(lambda: str(len(open("/dev/urandom", "rb").read(8)))),
        "dev_file": attempt(lambda: open("/dev/mine", "w")),
    }
"""
)


def test_the_shared_root_and_dev_are_read_only_filesystems_and_devices_still_work(
    server: Server, aws: Any, deploy: Deploy
) -> None:
    """The root tmpfs and /dev are built once by the zygote and every sandbox's mount
    namespace holds a copy of them: the filesystems themselves (not only the mounts)
    are read-only, so nothing one sandbox does can change what the next one sees."""
    name = deploy(ROOT_AND_DEVICES)["FunctionName"]
    seen = invoke_ok(aws, name, {})
    options = seen["options"]
    for shared in ("/", "/dev"):
        mount_flags, super_flags = options[shared][:1], options[shared][1:]
        assert mount_flags == ["ro"] and "ro" in super_flags, (shared, options[shared])
    for own in ("/tmp", "/proc"):
        assert options[own] and options[own][0] == "rw", (own, options[own])
    assert seen["dev_file"] in ("EROFS", "EACCES")
    assert (seen["null"], seen["zero"], seen["urandom"]) == ("ok", "8", "8")
    assert ".old" not in seen["root"] and "var" in seen["root"] and "tmp" in seen["root"]


TMP_FILE = (
    TOKEN
    + ATTEMPT
    + """
import os

def handler(event, context):
    if "write" in event:
        with open("/tmp/" + event["write"], "w") as handle:
            handle.write(TOKEN)
    looked = event.get("look", "")
    return {
        "token": TOKEN,
        "listing": sorted(os.listdir("/tmp")),
        "read": attempt(lambda: open("/tmp/" + looked).read()) if looked else None,
    }
"""
)


def test_tmp_of_one_function_is_invisible_to_another(
    server: Server, aws: Any, deploy: Deploy
) -> None:
    first = deploy(TMP_FILE)["FunctionName"]
    second = deploy(TMP_FILE)["FunctionName"]
    unique = f"only-mine-{uuid.uuid4().hex}"
    written = invoke_ok(aws, first, {"write": unique})
    assert unique in written["listing"]
    other = invoke_ok(aws, second, {"look": unique})
    assert unique not in other["listing"]
    assert other["read"] == "ENOENT"
    again = invoke_ok(aws, first, {"look": unique})  # the writer still has it, warm
    assert again["token"] == written["token"]
    assert again["read"] == written["token"]
    assert not os.path.exists(f"/tmp/{unique}")  # nor is it in the host's /tmp


# -- what a function can see and reach --------------------------------------------------------

MARKED = (
    TOKEN
    + """
import ctypes

# Names its process after its token: visible in /proc to anyone who can see it.
MARKER = ("m" + TOKEN)[:15]
ctypes.CDLL(None).prctl(15, MARKER.encode(), 0, 0, 0)  # PR_SET_NAME

def handler(event, context):
    return {"token": TOKEN, "marker": MARKER}
"""
)

LOOKER = """
import os
import subprocess

def read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""

def handler(event, context):
    child = subprocess.Popen(["sleep", "600"])
    try:
        pids = sorted(int(entry) for entry in os.listdir("/proc") if entry.isdigit())
        seen = {}
        for pid in pids:
            tasks = "/proc/%d/task" % pid
            names = [read("%s/%s/comm" % (tasks, t)) for t in os.listdir(tasks)]
            seen[pid] = {"names": names, "cmdline": read("/proc/%d/cmdline" % pid)}
        return {
            "me": os.getpid(),
            "child": child.pid,
            "pids": pids,
            "seen": seen,
            "hosts": {str(pid): os.path.exists("/proc/%d" % pid) for pid in event["hosts"]},
        }
    finally:
        child.kill()
        child.wait()
"""


def test_other_sandboxes_and_the_hosts_processes_are_invisible(
    server: Server, aws: Any, deploy: Deploy
) -> None:
    assert server.process is not None
    other = deploy(MARKED)["FunctionName"]
    marked = invoke_ok(aws, other)
    other_pid = host_pid_of(server, other)
    # From the host, the other sandbox's marker is plain to see.
    names = [
        read_text(f"/proc/{other_pid}/task/{task}/comm") or ""
        for task in os.listdir(f"/proc/{other_pid}/task")
    ]
    assert marked["marker"] + "\n" in names

    looker = deploy(LOOKER)["FunctionName"]
    hosts = [server.process.pid, other_pid, os.getpid()]
    seen = invoke_ok(aws, looker, {"hosts": hosts})
    assert seen["me"] == 1
    assert seen["pids"] == sorted({1, seen["child"]})  # its runtime and its own child only
    assert seen["hosts"] == {str(pid): False for pid in hosts}
    dump = json.dumps(seen["seen"])
    assert marked["marker"] not in dump
    assert marked["token"] not in dump
    assert "ember serve" not in dump.replace("\\u0000", " ")


NETWORK = (
    ATTEMPT
    + """
import socket

def connect(family, address):
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(address)

def send(address):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"x", address)

def handler(event, context):
    port = event["port"]
    targets = {
        "server": (socket.AF_INET, ("127.0.0.1", port)),
        "redis": (socket.AF_INET, ("127.0.0.1", 6379)),
        "external": (socket.AF_INET, ("10.255.255.1", 80)),
        "server6": (socket.AF_INET6, ("::1", port)),
        "abstract": (socket.AF_UNIX, event["abstract"]),
    }
    if event.get("host_address"):
        targets["host_address"] = (socket.AF_INET, (event["host_address"], port))
    return {
        "connect": {
            name: attempt(lambda: connect(family, address))
            for name, (family, address) in targets.items()
        },
        "udp": attempt(lambda: send(("10.255.255.1", 53))),
        "interfaces": [name for _, name in socket.if_nameindex()],
        "hostname": socket.gethostname(),
        "routes": open("/proc/net/route").read().splitlines()[1:],
        "devices": [line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:]],
    }
"""
)


def _host_address() -> str | None:
    """The host's own outbound address, if it has one (a UDP connect sends nothing)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("10.255.255.1", 80))
            return str(sock.getsockname()[0])
    except OSError:
        return None


def test_no_network_only_lo_and_the_hostname_is_sandbox(
    server: Server, aws: Any, deploy: Deploy
) -> None:
    name = deploy(NETWORK, Timeout=30)["FunctionName"]
    abstract = f"\0ember-isolation-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        # A service on the host, reachable by any local process that shares its network.
        listener.bind(abstract)
        listener.listen()
        host_address = _host_address()
        seen = invoke_ok(
            aws,
            name,
            {"port": server.port, "abstract": abstract, "host_address": host_address},
        )
    connect = seen["connect"]
    assert connect["server"] == "ECONNREFUSED"  # its own loopback, where nothing listens
    assert connect["redis"] == "ECONNREFUSED"
    assert connect["external"] == "ENETUNREACH"  # no route: nothing leaves the sandbox
    assert connect["server6"] in ("ECONNREFUSED", "EADDRNOTAVAIL", "ENETUNREACH", "EAFNOSUPPORT")
    assert connect["abstract"] == "ECONNREFUSED"
    if host_address is not None:
        assert connect["host_address"] == "ENETUNREACH"
    assert seen["udp"] == "ENETUNREACH"
    assert seen["interfaces"] == ["lo"]
    assert seen["devices"] == ["lo"]
    assert seen["routes"] == []
    assert seen["hostname"] == "sandbox"


# -- what a function can do to others --------------------------------------------------------

KILLER = (
    ATTEMPT
    + """
import os
import signal
import subprocess

def handler(event, context):
    results = {}
    for pid in event["pids"]:
        results[str(pid)] = {
            "probe": attempt(lambda: os.kill(pid, 0)),
            "kill": attempt(lambda: os.kill(pid, signal.SIGKILL)),
            "group": attempt(lambda: os.killpg(pid, signal.SIGKILL)),
        }
    if not event.get("everyone"):
        return results
    child = subprocess.Popen(["sleep", "600"])
    results["everyone"] = attempt(lambda: os.kill(-1, signal.SIGKILL))
    results["child"] = child.wait()
    return results
"""
)


def test_a_function_cannot_signal_processes_outside_its_sandbox(
    server: Server, aws: Any, deploy: Deploy, canary: str
) -> None:
    assert server.process is not None
    victim = deploy(CANARY)["FunctionName"]
    before = invoke_ok(aws, victim)["token"]
    victim_pid = host_pid_of(server, victim)
    zygotes = children(server.process.pid)
    assert zygotes
    targets = [server.process.pid, victim_pid, os.getpid(), *zygotes]
    name = deploy(KILLER)["FunctionName"]
    seen = invoke_ok(aws, name, {"pids": targets})
    for pid in targets:
        for how, outcome in seen[str(pid)].items():
            assert outcome in ("ESRCH", "EPERM"), (pid, how, outcome)
    assert server.process.poll() is None
    assert not [pid for pid in targets if not os.path.exists(f"/proc/{pid}")]

    # kill(-1) reaches only the sandbox's own processes.
    response, body = invoke(aws, name, {"pids": [], "everyone": True})
    assert response["StatusCode"] == 200
    if "FunctionError" not in response:
        assert body["child"] == -9
    assert server.process.poll() is None
    assert invoke_ok(aws, victim)["token"] == before  # the same warm sandbox, untouched
    assert host_pid_of(server, victim) == victim_pid
    assert_canary(server, aws, canary)


SECCOMP = (
    ATTEMPT
    + """
import ctypes
import os
import platform
import socket

NUMBERS = {  # x86_64, aarch64 (None: the architecture has no such call)
    "mount": (165, 40), "umount2": (166, 39), "unshare": (272, 97), "setns": (308, 268),
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "kcmp": (312, 272),
    "pidfd_getfd": (438, 438), "bpf": (321, 280), "keyctl": (250, 219),
    "add_key": (248, 217), "request_key": (249, 218), "perf_event_open": (298, 241),
    "userfaultfd": (323, 282), "reboot": (169, 142), "init_module": (175, 105),
    "finit_module": (313, 273), "kexec_load": (246, 104), "swapon": (167, 224),
    "syslog": (103, 116), "acct": (163, 89), "quotactl": (179, 60),
    "clock_settime": (227, 112), "adjtimex": (159, 171), "iopl": (172, None),
    "open_by_handle_at": (304, 265), "name_to_handle_at": (303, 264),
    "fanotify_init": (300, 262), "personality": (135, 92), "mknodat": (259, 33),
    "memfd_secret": (447, 447), "clone": (56, 220), "clone3": (435, 435),
    "open_tree": (428, 428), "move_mount": (429, 429), "fsopen": (430, 430),
    "fsmount": (432, 432), "fspick": (433, 433), "mount_setattr": (442, 442),
    "io_uring_setup": (425, 425), "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
}
CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET, SIGCHLD = 0x10000000, 0x00020000, 0x40000000, 17
S_IFCHR, S_IFIFO = 0o020000, 0o010000
READ_IMPLIES_EXEC = 0x0400000
AT_FDCWD = -100

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def call(name, *args):
    number = NUMBERS[name][0 if platform.machine() == "x86_64" else 1]
    if number is None:
        return "absent"
    result = libc.syscall(ctypes.c_long(number), *[ctypes.c_long(a) for a in args])
    if result == -1:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    if result == 0 and name == "clone":
        os._exit(0)  # a child would mean the filter let a namespace through
    return None

def text(value):
    return ctypes.cast(ctypes.c_char_p(value), ctypes.c_void_p).value

def sock(family, kind, protocol=0):
    socket.socket(family, kind, protocol).close()

def handler(event, context):
    src, dst, tmpfs = b"none", b"/tmp", b"tmpfs"
    fd = os.open("/proc/self/ns/net", os.O_RDONLY)
    params = ctypes.create_string_buffer(120)  # struct io_uring_params, zeroed
    try:
        return {
            "mount": attempt(lambda: call("mount", text(src), text(dst), text(tmpfs), 0, 0)),
            "umount2": attempt(lambda: call("umount2", text(dst), 0)),
            "open_tree": attempt(lambda: call("open_tree", AT_FDCWD, text(dst), 1)),
            "move_mount": attempt(
                lambda: call("move_mount", -1, text(b""), AT_FDCWD, text(dst), 4)),
            "fsopen": attempt(lambda: call("fsopen", text(tmpfs), 0)),
            "fsmount": attempt(lambda: call("fsmount", -1, 0, 0)),
            "fspick": attempt(lambda: call("fspick", AT_FDCWD, text(dst), 0)),
            "mount_setattr": attempt(lambda: call("mount_setattr", AT_FDCWD, text(dst), 0, 0, 0)),
            "unshare_user": attempt(lambda: call("unshare", CLONE_NEWUSER)),
            "unshare_mount": attempt(lambda: call("unshare", CLONE_NEWNS)),
            "setns": attempt(lambda: call("setns", fd, 0)),
            "clone_newuser": attempt(lambda: call("clone", CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)),
            "clone_newnet": attempt(lambda: call("clone", CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0)),
            "ptrace_traceme": attempt(lambda: call("ptrace", 0, 0, 0, 0)),
            "ptrace_attach": attempt(lambda: call("ptrace", 16, 1, 0, 0)),
            "process_vm_readv": attempt(lambda: call("process_vm_readv", 1, 0, 0, 0, 0, 0)),
            "kcmp": attempt(lambda: call("kcmp", 1, 1, 0, 0, 0)),
            "pidfd_getfd": attempt(lambda: call("pidfd_getfd", -1, 0, 0)),
            "bpf": attempt(lambda: call("bpf", 0, 0, 0)),
            "perf_event_open": attempt(lambda: call("perf_event_open", 0, 0, -1, -1, 0)),
            "keyctl": attempt(lambda: call("keyctl", 0, 0, 0, 0, 0)),
            "add_key": attempt(lambda: call("add_key", text(b"user"), text(b"k"), 0, 0, -2)),
            "request_key": attempt(lambda: call("request_key", text(b"user"), text(b"k"), 0, 0)),
            "userfaultfd": attempt(lambda: call("userfaultfd", 0)),
            "reboot": attempt(lambda: call("reboot", 0, 0, 0, 0)),
            "init_module": attempt(lambda: call("init_module", 0, 0, 0)),
            "finit_module": attempt(lambda: call("finit_module", -1, 0, 0)),
            "kexec_load": attempt(lambda: call("kexec_load", 0, 0, 0, 0)),
            "swapon": attempt(lambda: call("swapon", text(dst), 0)),
            "syslog": attempt(lambda: call("syslog", 3, 0, 0)),
            "acct": attempt(lambda: call("acct", 0)),
            "quotactl": attempt(lambda: call("quotactl", 0, 0, 0, 0)),
            "clock_settime": attempt(lambda: call("clock_settime", 0, 0)),
            "adjtimex": attempt(lambda: call("adjtimex", 0)),
            "iopl": attempt(lambda: call("iopl", 3)),
            "open_by_handle_at": attempt(lambda: call("open_by_handle_at", AT_FDCWD, 0, 0)),
            "name_to_handle_at": attempt(lambda: call("name_to_handle_at", AT_FDCWD, 0, 0, 0, 0)),
            "fanotify_init": attempt(lambda: call("fanotify_init", 0, 0)),
            "memfd_secret": attempt(lambda: call("memfd_secret", 0)),
            "mknod_device": attempt(
                lambda: call("mknodat", AT_FDCWD, text(b"/tmp/d"), S_IFCHR | 0o600, 0x103)),
            "personality_exec": attempt(lambda: call("personality", READ_IMPLIES_EXEC)),
            "raw_inet": attempt(lambda: sock(socket.AF_INET, socket.SOCK_RAW, 1)),
            "raw_inet6": attempt(lambda: sock(socket.AF_INET6, socket.SOCK_RAW, 58)),
            "packet": attempt(lambda: sock(17, socket.SOCK_RAW, 0)),
            "alg": attempt(lambda: sock(38, socket.SOCK_SEQPACKET, 0)),
            "vsock": attempt(lambda: sock(40, socket.SOCK_STREAM, 0)),
            "netlink_audit": attempt(lambda: sock(16, socket.SOCK_RAW, 9)),
            "io_uring_setup": attempt(lambda: call("io_uring_setup", 8, ctypes.addressof(params))),
            "io_uring_enter": attempt(lambda: call("io_uring_enter", -1, 0, 0, 0, 0, 0)),
            "io_uring_register": attempt(lambda: call("io_uring_register", -1, 0, 0, 0)),
            "clone3": attempt(lambda: call("clone3", 0, 0)),
            # what a function does every day still works
            "udp": attempt(lambda: sock(socket.AF_INET, socket.SOCK_DGRAM)),
            "tcp6": attempt(lambda: sock(socket.AF_INET6, socket.SOCK_STREAM)),
            "unix": attempt(lambda: sock(socket.AF_UNIX, socket.SOCK_SEQPACKET)),
            "netlink_route": attempt(lambda: sock(16, socket.SOCK_RAW, 0)),
            "interfaces": attempt(lambda: [n for _, n in socket.if_nameindex()]),
            "fifo": attempt(lambda: (os.mkfifo("/tmp/fifo"), os.unlink("/tmp/fifo"))[1]),
            "personality_read": attempt(lambda: call("personality", 0xFFFFFFFF)),
            "fork": attempt(lambda: os.waitpid(os.fork() or os._exit(0), 0)[1]),
            "thread": attempt(lambda: _thread()),
        }
    finally:
        os.close(fd)

def _thread():
    import threading
    seen = []
    worker = threading.Thread(target=seen.append, args=(1,))
    worker.start()
    worker.join()
    return None if seen == [1] else "not run"
"""
)

# Each family the allowlist leaves out, tried from a function: EPERM, as under
# Docker; docs/security.md says why each is refused.
REFUSED = (
    "mount",
    "umount2",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsmount",
    "fspick",
    "mount_setattr",  # mounts, old API and new
    "unshare_user",
    "unshare_mount",
    "setns",
    "clone_newuser",
    "clone_newnet",  # namespaces
    "ptrace_traceme",
    "ptrace_attach",
    "process_vm_readv",
    "kcmp",
    "pidfd_getfd",  # others' memory
    "bpf",
    "perf_event_open",  # kernel programs and counters
    "keyctl",
    "add_key",
    "request_key",  # keyrings
    "userfaultfd",
    "reboot",
    "init_module",
    "finit_module",
    "kexec_load",
    "swapon",
    "syslog",
    "acct",
    "quotactl",
    "clock_settime",
    "adjtimex",  # the host's own administration
    "open_by_handle_at",
    "name_to_handle_at",
    "fanotify_init",
    "memfd_secret",
    "mknod_device",
    "personality_exec",
    "raw_inet",
    "raw_inet6",
    "packet",
    "alg",
    "vsock",
    "netlink_audit",  # sockets
)
# What runtimes probe and fall back from: "not implemented", not a kill.
NOT_IMPLEMENTED = ("io_uring_setup", "io_uring_enter", "io_uring_register", "clone3")
STILL_WORKS = (
    "udp",
    "tcp6",
    "unix",
    "netlink_route",
    "fifo",
    "personality_read",
    "fork",
    "thread",
)


def test_seccomp_allows_a_list_and_refuses_every_other_family(
    server: Server, aws: Any, deploy: Deploy, canary: str
) -> None:
    name = deploy(SECCOMP)["FunctionName"]
    seen = invoke_ok(aws, name)
    wrong = {call: seen[call] for call in REFUSED if seen[call] not in ("EPERM", "absent")}
    wrong |= {call: seen[call] for call in NOT_IMPLEMENTED if seen[call] != "ENOSYS"}
    wrong |= {call: seen[call] for call in STILL_WORKS if seen[call] != "ok"}
    assert not wrong, wrong
    assert seen["interfaces"] == ["lo"]  # netlink routing still lists interfaces
    assert invoke_ok(aws, name)["fork"] == "ok"  # and the sandbox is still serving
    assert_canary(server, aws, canary)


# The i386 entry (int 0x80) numbers calls differently from x86_64: a filter
# judging them by the x86_64 table would be bypassed, so they kill the whole
# sandbox, not just the thread that made the call (the rest would run on).
FOREIGN_ABI = """
import ctypes
import mmap
import threading

def foreign_call():
    code = bytes([0xB8, 20, 0, 0, 0, 0xCD, 0x80, 0xC3])  # mov eax, 20 (getpid); int 0x80; ret
    page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    ctypes.CFUNCTYPE(ctypes.c_int)(address)()

def handler(event, context):
    worker = threading.Thread(target=foreign_call, daemon=True)
    worker.start()
    worker.join()
    return "the process survived its thread's foreign call"
"""


def test_a_call_through_another_abi_kills_the_sandbox_with_sigsys(
    server: Server, aws: Any, deploy: Deploy, canary: str
) -> None:
    if os.uname().machine != "x86_64":
        pytest.skip("the i386 entry exists on x86_64 only")
    name = deploy(FOREIGN_ABI)["FunctionName"]
    response, body = invoke(aws, name)
    assert response.get("FunctionError") == "Unhandled", body
    assert body["errorType"] == "Runtime.ExitError", body
    assert "bad system call" in body["errorMessage"], body
    assert_canary(server, aws, canary)


PRIVILEGES = """
import os

def handler(event, context):
    status = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        status[key] = value.split()
    return {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "status": status}
"""


def test_runs_as_non_root_with_no_capabilities_no_new_privs_and_seccomp(
    server: Server, aws: Any, deploy: Deploy
) -> None:
    name = deploy(PRIVILEGES)["FunctionName"]
    seen = invoke_ok(aws, name)
    status = seen["status"]
    assert seen["uid"] != 0 and seen["euid"] != 0 and seen["gid"] != 0
    assert "0" not in status["Uid"] and "0" not in status["Gid"]
    for capabilities in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[capabilities][0], 16) == 0, (capabilities, status[capabilities])
    assert status["NoNewPrivs"] == ["1"]
    assert status["Seccomp"] == ["2"]  # a filter
    # Nor is it root on the host: the uid inside is the unprivileged one outside.
    host = Path(f"/proc/{host_pid_of(server, name)}/status").read_text().splitlines()
    (uids,) = [line.split()[1:] for line in host if line.startswith("Uid:")]
    assert "0" not in uids
    assert int(uids[0]) == seen["uid"]


# -- hostile functions are contained ----------------------------------------------------------

FORK_BOMB = """
import os

def handler(event, context):
    while True:
        try:
            os.fork()
        except OSError:
            pass
"""


def test_a_fork_bomb_is_contained(server: Server, aws: Any, deploy: Deploy, canary: str) -> None:
    bomb = deploy(FORK_BOMB, Timeout=3)["FunctionName"]
    peak = [0]
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(invoke, aws, bomb)
        seen = wait_until(lambda: sandboxes_of(server, bomb) or future.done(), timeout=30)
        assert isinstance(seen, list), "the bomb's invocation ended before its sandbox was seen"
        namespace = pid_namespace(seen[0]["pid"])

        def count() -> bool:
            peak[0] = max(peak[0], len(members(namespace)))
            return future.done()

        wait_until(count, timeout=60)
        response, error = future.result()
    assert 8 < peak[0] <= 64, peak[0]  # it went off, up to the sandbox's pids limit
    assert response["FunctionError"] == "Unhandled"
    assert error["errorType"] in ("Sandbox.Timedout", "Runtime.ExitError")
    wait_until(lambda: not members(namespace), timeout=30)
    assert_canary(server, aws, canary)


MEMORY_HOG = (
    TOKEN
    + """
def handler(event, context):
    if event.get("hog"):
        hog = []
        while True:
            hog.append(b"x" * (16 << 20))  # every page touched
    return TOKEN
"""
)


def test_a_memory_hog_is_killed_by_its_own_limit(
    server: Server, aws: Any, deploy: Deploy, canary: str
) -> None:
    name = deploy(MEMORY_HOG, MemorySize=128, Timeout=60)["FunctionName"]
    token = invoke_ok(aws, name)
    namespace = pid_namespace(host_pid_of(server, name))
    response, error = invoke(aws, name, {"hog": True})
    assert response["FunctionError"] == "Unhandled"
    assert error["errorType"] == "Runtime.OutOfMemory"
    wait_until(lambda: not members(namespace), timeout=30)
    assert_canary(server, aws, canary)
    assert invoke_ok(aws, name) != token  # a fresh sandbox takes over


DISK_FILLER = (
    TOKEN
    + """
import errno
import os

def handler(event, context):
    if not event.get("fill"):
        return {"token": TOKEN}
    chunk = b"x" * (1 << 20)
    written = 0
    try:
        with open("/tmp/filler", "wb") as handle:
            while True:
                handle.write(chunk)
                handle.flush()
                written += 1
    except OSError as exc:
        failure = errno.errorcode.get(exc.errno, str(exc.errno))
    os.unlink("/tmp/filler")
    return {"token": TOKEN, "failure": failure, "written_mb": written}
"""
)


def test_a_disk_filler_fills_only_its_own_tmp(
    server: Server, aws: Any, deploy: Deploy, canary: str
) -> None:
    # Memory above the /tmp size, so that /tmp fills before the memory limit is hit.
    name = deploy(DISK_FILLER, MemorySize=1024, EphemeralStorage={"Size": 512}, Timeout=60)[
        "FunctionName"
    ]
    neighbour = deploy(TMP_FILE)["FunctionName"]
    filled = invoke_ok(aws, name, {"fill": True})
    assert filled["failure"] in ("ENOSPC", "EFBIG"), filled
    assert filled["written_mb"] <= 512
    assert invoke_ok(aws, name)["token"] == filled["token"]  # and it keeps serving
    unique = uuid.uuid4().hex
    assert unique in invoke_ok(aws, neighbour, {"write": unique})["listing"]
    assert_canary(server, aws, canary)


INFINITE_LOOP = (
    TOKEN
    + """
import signal

def handler(event, context):
    if event.get("loop"):
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        while True:
            pass
    return TOKEN
"""
)


def test_an_infinite_loop_times_out_and_leaves_nothing(
    server: Server, aws: Any, deploy: Deploy, canary: str
) -> None:
    name = deploy(INFINITE_LOOP, Timeout=1)["FunctionName"]
    token = invoke_ok(aws, name)
    namespace = pid_namespace(host_pid_of(server, name))
    response, error = invoke(aws, name, {"loop": True})
    assert response["FunctionError"] == "Unhandled"
    assert error["errorType"] == "Sandbox.Timedout"
    wait_until(lambda: not members(namespace), timeout=30)
    wait_until(lambda: not sandboxes_of(server, name), timeout=30)
    assert_canary(server, aws, canary)
    assert invoke_ok(aws, name) != token


BUSY_THREAD = (
    TOKEN
    + """
import threading

def spin():
    while True:
        pass

def handler(event, context):
    if event.get("spin"):
        threading.Thread(target=spin, daemon=True).start()
    return {"token": TOKEN, "threads": threading.active_count()}
"""
)


def test_a_busy_thread_that_outlives_its_invocation_is_contained(
    server: Server, aws: Any, deploy: Deploy, canary: str
) -> None:
    name = deploy(BUSY_THREAD, Timeout=5)["FunctionName"]
    started = invoke_ok(aws, name, {"spin": True})
    pid = host_pid_of(server, name)
    namespace = pid_namespace(pid)
    assert_canary(server, aws, canary)
    controllers = server.health()["isolation"]["cgroups"]
    if "freezer" in controllers.get("controllers", []) or controllers.get("version") == 2:
        # Idle, the sandbox is frozen, as Lambda freezes it: the thread spins no more.
        wait_until(lambda: (freezer_state(pid) or "").upper() == "FROZEN", timeout=30)
    again = invoke_ok(aws, name)  # thawed for its next call, the same warm sandbox
    assert again["token"] == started["token"]
    assert again["threads"] == started["threads"]
    assert_canary(server, aws, canary)
    aws.delete_function(FunctionName=name)
    wait_until(lambda: not members(namespace), timeout=30)
    assert_canary(server, aws, canary)


# -- resources: limits follow the function's configuration -----------------------------


def cgroup_dir(pid: int, controller: str) -> str | None:
    """The host directory of ``pid``'s cgroup for ``controller`` (v1), or its v2 one."""
    for line in (read_text(f"/proc/{pid}/cgroup") or "").splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return f"/sys/fs/cgroup/{controller}{path}"
        if controllers == "" and path != "/":
            return f"/sys/fs/cgroup{path}"
    return None


@pytest.mark.parametrize("memory_mb", [128, 1769])
def test_memory_and_cpu_share_follow_memory_size(
    server: Server, aws: Any, deploy: Deploy, unique_name: str, memory_mb: int
) -> None:
    name = deploy(CANARY, name=f"{unique_name}-{memory_mb}", MemorySize=memory_mb)["FunctionName"]
    invoke_ok(aws, name)
    pid = host_pid_of(server, name)
    version = server.health()["isolation"]["cgroups"]["version"]
    # Lambda gives a full vCPU at 1769 MB: the share is that fraction of a full weight.
    shares = max(2, memory_mb * 1024 // 1769)
    if version == 2:
        directory = cgroup_dir(pid, "memory")
        assert directory is not None
        assert read_text(f"{directory}/memory.max") == f"{memory_mb * 1024 * 1024}\n"
        assert read_text(f"{directory}/cpu.weight") == f"{max(1, shares * 100 // 1024)}\n"
        assert (read_text(f"{directory}/pids.max") or "max").strip() != "max"
        return
    memory, cpu, pids = (cgroup_dir(pid, c) for c in ("memory", "cpu", "pids"))
    assert memory and cpu and pids and memory.endswith(cpu.rsplit("/", 1)[1])
    assert read_text(f"{memory}/memory.limit_in_bytes") == f"{memory_mb * 1024 * 1024}\n"
    assert read_text(f"{cpu}/cpu.shares") == f"{shares}\n"
    assert (read_text(f"{pids}/pids.max") or "max").strip() != "max"


# -- what a function can learn of the host's paths ------------------------------------------

MOUNTS = """
def handler(event, context):
    return {path: open(path).read() for path in ("/proc/self/mountinfo", "/proc/self/mounts")}
"""


def test_mountinfo_names_no_path_of_the_data_dir(
    server: Server, aws: Any, deploy: Deploy, unique_name: str
) -> None:
    layer = aws.publish_layer_version(
        LayerName=f"{unique_name}-layer",
        Content={"ZipFile": make_zip({"python/helper.py": "VALUE = 1\n"})},
    )
    try:
        name = deploy(MOUNTS, Layers=[layer["LayerVersionArn"]])["FunctionName"]
        seen = invoke_ok(aws, name, {})
    finally:
        aws.delete_layer_version(LayerName=f"{unique_name}-layer", VersionNumber=layer["Version"])
    text = "\n".join(seen.values())
    assert " /var/task " in seen["/proc/self/mountinfo"]  # the code is mounted ...
    assert " /opt " in seen["/proc/self/mountinfo"]  # ... and so are the layers
    for path in {str(server.data_dir), str(server.data_dir.resolve())}:
        assert path not in text  # ... yet no line says where they live on the host
