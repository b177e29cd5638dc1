"""Full isolation for a forked sandbox: namespaces, a minimal root, no privileges, seccomp.

Loaded by the zygote as ``_ember_isolate`` under the function's own
interpreter (python3.9 and up): standard library only (plus the pyseccomp
module the platform hands over by path), Python 3.9 syntax.

The sequence, split so a pre-forked blank does the function-independent half:

- ``clone_isolated`` (zygote): fork straight into new PID, mount, network,
  IPC and UTS namespaces; the child is PID 1 of its namespace, so killing it
  takes every process it started along.
- ``stage_shared_root`` (zygote, once): in the zygote's own mount namespace,
  a read-only tmpfs root holding read-only binds of what the runtime needs
  (``/usr``, a few ``/etc`` files, the interpreter's prefixes) and a minimal
  read-only ``/dev``.
- ``sandbox_mounts`` (zygote, once): a mount namespace whose root is that
  tree and which holds no host mount. Each sandbox's new mount namespace is
  cloned as a copy of it, so it starts inside its minimal root, already
  built, with no ``pivot_root`` of its own to do.
- ``prepare_root`` (child): loopback up, hostname, a fresh ``/proc``.
- ``enter_staged_root`` (child, still before the claim): a ``/tmp`` of its
  own.
- ``enter_task`` (child, per function): the code read-only at ``/var/task``
  and the merged layers at ``/opt`` (trees the zygote cloned with
  ``clone_readonly``), ``/tmp`` at its size; then
  ``drop_privileges``: no capability bounding set, an unprivileged uid/gid,
  a user namespace of its own, no capabilities, ``no_new_privs``, and last
  the seccomp filter.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import platform
import shutil
import socket
import struct
import tempfile
from typing import Any, Iterator

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NAMESPACES = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET
# Every flag of clone() that makes a namespace (CLONE_NEWTIME only exists for
# unshare and clone3: its bit is the exit signal's in clone()).
CLONE_NAMESPACES = NAMESPACES | CLONE_NEWCGROUP | CLONE_NEWUSER
SIGCHLD = 17
_SYS_CLONE = {"x86_64": 56, "aarch64": 220}

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE, MS_SLAVE = 32, 4096, 16384, 1 << 18, 1 << 19
MNT_DETACH = 2
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
# The new mount API (Linux 5.2+; mount_setattr 5.12+): one number on every architecture.
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442
AT_FDCWD, AT_EMPTY_PATH, AT_RECURSIVE = -100, 0x1000, 0x8000
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC = 1, os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 0x1, 0x2, 0x4
SYS_FSOPEN, SYS_FSCONFIG, SYS_FSMOUNT = 430, 431, 432
FSOPEN_CLOEXEC, FSMOUNT_CLOEXEC = 1, 1
FSCONFIG_SET_STRING, FSCONFIG_CMD_CREATE = 1, 6
# A blank's /tmp until its function's EphemeralStorage is known (Lambda's default).
BLANK_TMP_MB = 512
SIOCSIFFLAGS = 0x8914
IFF_UP, IFF_LOOPBACK, IFF_RUNNING = 0x1, 0x8, 0x40

# Where a sandbox's root is assembled (inside its own mount namespace only).
STAGING = "/run/ember-sandbox"
TASK_ROOT = "/var/task"
# Where managed runtimes beyond the interpreter (installed Node majors and ember's
# Node runtime script) appear, read-only: Lambda keeps its runtime in /var/runtime.
RUNTIMES_MOUNT = "/var/runtime"
ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "nsswitch.conf",
    "hosts",
    "resolv.conf",
    "ssl",
    "ca-certificates",
    "passwd",
    "group",
    "mime.types",
    "protocols",
    "services",
    "os-release",
    "timezone",
)
DEVICES = ("null", "zero", "full", "random", "urandom")

# The seccomp policy is an allowlist modelled on Docker's default profile
# (moby/profiles seccomp/default.json) cut to what the Python, Node and custom
# runtimes (a shell, curl, a static binary) use; docs/security.md gives the
# reason for every family left out. Anything not listed fails with EPERM, as
# under Docker; a kernel call newer than this list is refused the same way.
ALLOWED_SYSCALLS_BY_FAMILY = {
    # files and directories
    "files": (
        "access chdir chmod chown close close_range copy_file_range creat dup dup2 dup3 "
        "faccessat faccessat2 fadvise64 fallocate fchdir fchmod fchmodat fchmodat2 fchown "
        "fchownat fcntl fdatasync fgetxattr flistxattr flock fremovexattr fsetxattr fstat "
        "fstatfs fsync ftruncate futimesat getcwd getdents getdents64 getxattr "
        "inotify_add_watch inotify_init inotify_init1 inotify_rm_watch ioctl lchown lgetxattr "
        "link linkat listxattr llistxattr lremovexattr lseek lsetxattr lstat mkdir mkdirat "
        "newfstatat open openat openat2 pread64 preadv preadv2 pwrite64 pwritev pwritev2 read "
        "readahead readlink readlinkat readv removexattr rename renameat renameat2 rmdir "
        "sendfile setxattr splice stat statfs statx symlink symlinkat sync sync_file_range "
        "syncfs tee truncate umask unlink unlinkat utime utimensat utimes vmsplice write "
        "writev"
    ),
    # waiting on descriptors, events, timers, legacy asynchronous I/O (not io_uring)
    "waiting": (
        "epoll_create epoll_create1 epoll_ctl epoll_pwait epoll_pwait2 epoll_wait eventfd "
        "eventfd2 poll ppoll pselect6 select signalfd signalfd4 timerfd_create "
        "timerfd_gettime timerfd_settime io_cancel io_destroy io_getevents io_pgetevents "
        "io_setup io_submit pipe pipe2"
    ),
    # memory
    "memory": (
        "brk madvise map_shadow_stack membarrier memfd_create mincore mlock mlock2 mlockall "
        "mmap mprotect mremap mseal msync munlock munlockall munmap pkey_alloc pkey_free "
        "pkey_mprotect remap_file_pages"
    ),
    # processes, threads, signals (clone only without namespace flags, below)
    "processes": (
        "arch_prctl capget exit exit_group execve execveat fork futex futex_requeue "
        "futex_wait futex_waitv futex_wake get_robust_list get_thread_area getcpu getegid "
        "geteuid getgid getgroups getitimer getpgid getpgrp getpid getppid getpriority "
        "getresgid getresuid getrlimit getrusage getsid gettid getuid ioprio_get ioprio_set "
        "kill pause pidfd_open pidfd_send_signal prctl prlimit64 restart_syscall rseq "
        "rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend "
        "rt_sigtimedwait rt_tgsigqueueinfo sched_get_priority_max sched_get_priority_min "
        "sched_getaffinity sched_getattr sched_getparam sched_getscheduler "
        "sched_rr_get_interval sched_setaffinity sched_setattr sched_setparam "
        "sched_setscheduler sched_yield seccomp set_robust_list set_thread_area "
        "set_tid_address setfsgid setfsuid setgid setgroups setitimer setpgid setpriority "
        "setregid setresgid setresuid setreuid setrlimit setsid setuid sigaltstack tgkill "
        "tkill vfork wait4 waitid landlock_add_rule landlock_create_ruleset "
        "landlock_restrict_self"
    ),
    # time (reading it; setting it is refused)
    "time": (
        "alarm clock_getres clock_gettime clock_nanosleep gettimeofday nanosleep time "
        "timer_create timer_delete timer_getoverrun timer_gettime timer_settime times"
    ),
    # sockets (socket itself only for the families below)
    "sockets": (
        "accept accept4 bind connect getpeername getsockname getsockopt listen recvfrom "
        "recvmmsg recvmsg sendmmsg sendmsg sendto setsockopt shutdown socketpair"
    ),
    # System V and POSIX IPC: private to the sandbox's IPC namespace
    "ipc": (
        "mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedsend mq_unlink msgctl msgget "
        "msgrcv msgsnd semctl semget semop semtimedop shmat shmctl shmdt shmget"
    ),
    # the system, read only
    "system": "getrandom sysinfo uname",
}
ALLOWED_SYSCALLS = tuple(
    name for names in ALLOWED_SYSCALLS_BY_FAMILY.values() for name in names.split()
)
# Calls newer than the libseccomp a distribution ships (2.5.4 has no mseal):
# their number, the same on x86_64 and aarch64, when the name is unknown.
NEWER_SYSCALLS = {"mseal": 462}
# Calls a runtime tries and falls back from when the kernel lacks them: they
# say "not implemented" (ENOSYS) rather than EPERM, so the fallback runs.
# clone3 passes its flags in memory a filter cannot read: refusing it sends
# the C library back to clone(), whose flags the filter checks.
NOT_IMPLEMENTED_SYSCALLS = ("clone3", "io_uring_setup", "io_uring_enter", "io_uring_register")
ENOSYS, EPERM = 38, 1
AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET, SOCK_TYPE_MASK = 1, 2, 5, 0xF
NETLINK_ROUTE = 0
S_IFMT, S_IFIFO = 0o170000, 0o010000
# personality(): reading it, and the values Docker lets through (Linux, UNAME26).
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

_libc = ctypes.CDLL(None, use_errno=True)
# PyDLL keeps the GIL held across the raw clone() so no other thread of ours
# can run between CPython's before- and after-fork hooks.
_pylibc = ctypes.PyDLL(None, use_errno=True)
_pylibc.syscall.restype = ctypes.c_long


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, "{0}: {1}".format(what, os.strerror(err)))


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        "mount " + target,
    )


def clone_isolated(netns: int = -1, home: int = -1, mounts: int = -1, mounts_home: int = -1) -> int:
    """``fork()`` into new PID, mount, network, IPC and UTS namespaces; with ``netns``
    into that network namespace instead of a new one (the caller enters it for the
    clone and goes back to ``home``, its own, after). With ``mounts``, the new mount
    namespace is a copy of that one (``sandbox_mounts``), not of the caller's, which
    it enters for the clone and leaves for ``mounts_home``."""
    number = _SYS_CLONE.get(platform.machine())
    if number is None:
        raise OSError("raw clone() is not wired for " + platform.machine())
    flags = NAMESPACES
    if mounts >= 0:
        _check(_libc.setns(mounts, CLONE_NEWNS), "setns(mounts)")
    if netns >= 0:
        try:
            _check(_libc.setns(netns, CLONE_NEWNET), "setns(network)")
        except OSError:
            _leave(mounts, mounts_home)
            raise
        flags &= ~CLONE_NEWNET
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    pid = _pylibc.syscall(
        ctypes.c_long(number),
        ctypes.c_ulong(flags | SIGCHLD),
        ctypes.c_long(0),
        ctypes.c_long(0),
        ctypes.c_long(0),
        ctypes.c_long(0),
    )
    error = ctypes.get_errno()
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    api.PyOS_AfterFork_Parent()
    _leave(mounts, mounts_home)
    if netns >= 0:
        _check(_libc.setns(home, CLONE_NEWNET), "setns(home network)")
    if pid < 0:
        raise OSError(error, "clone: " + os.strerror(error))
    return int(pid)


def _leave(mounts: int, mounts_home: int) -> None:
    """Back to the caller's own mount namespace (and its root as cwd) after a clone."""
    if mounts >= 0 and _libc.setns(mounts_home, CLONE_NEWNS) != 0:
        # Never go on with the sandboxes' tree as the zygote's root.
        os.write(2, b"ember zygote: cannot return to its own mount namespace\n")
        os._exit(70)


def network_idle(netns: int, home: int) -> bool:
    """Whether no socket is left in ``netns``, not even one in TIME_WAIT: a network
    namespace is handed on to another sandbox only then (``sockstat`` counts the
    namespace of the reading thread)."""
    _check(_libc.setns(netns, CLONE_NEWNET), "setns(network)")
    try:
        fd = os.open("/proc/thread-self/net/sockstat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            lines = os.read(fd, 4096).decode().splitlines()
        finally:
            os.close(fd)
    finally:
        _check(_libc.setns(home, CLONE_NEWNET), "setns(home network)")
    fields = {line.split(":")[0]: line.split()[1:] for line in lines if ":" in line}
    used = fields.get("sockets", ["used", "1"])
    pairs = fields.get("TCP", [])  # "inuse 0 orphan 0 tw 0 ..."
    tcp = {pairs[i]: pairs[i + 1] for i in range(0, len(pairs) - 1, 2)}
    return used == ["used", "0"] and tcp.get("inuse") == "0" and tcp.get("tw") == "0"


def loopback_up() -> None:
    """The new network namespace has only ``lo``, and it starts down."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14s", b"lo", IFF_UP | IFF_LOOPBACK | IFF_RUNNING, b"")
        fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, request)


def _bind_readonly(source: str, target: str) -> None:
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o444))
    _mount(source, target, None, MS_BIND | MS_REC)
    _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def runtime_paths(paths: list[str]) -> list[str]:
    """The smallest set of directories that contains every path in ``paths``."""
    kept: list[str] = []
    for path in sorted({os.path.realpath(p) for p in paths if p and os.path.exists(p)}):
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return kept


def snapshot_etc(target: str) -> None:
    """Copy the few /etc files a runtime needs into ``target`` (once per server).

    Sandboxes bind this one directory at /etc: one mount instead of one per
    file, and nothing else of the host's /etc (no shadow) is ever visible.
    """
    os.makedirs(target, exist_ok=True)
    os.chmod(target, 0o755)
    for name in ETC_FILES:
        source = "/etc/" + name
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(target, name), symlinks=True, dirs_exist_ok=True)
        elif os.path.exists(source):
            shutil.copy2(source, os.path.join(target, name))


def stage_root(staging: str, runtime: list[str], etc: str) -> None:
    """A tmpfs at ``staging`` with read-only binds of what a runtime needs, and the
    mount points of what each sandbox adds (``/proc``, ``/tmp``, its code, layers
    and the runtimes directory).

    Also the root of the gVisor backend's sandboxes (``gvisor_launch.py``).
    The caller must be in a mount namespace of its own.
    """
    os.makedirs(staging, exist_ok=True)
    _mount("tmpfs", staging, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for name in ("bin", "lib", "lib32", "lib64", "libx32", "sbin"):
        host = "/" + name
        if os.path.islink(host):
            os.symlink(os.readlink(host), staging + host)
        elif os.path.isdir(host):
            _bind_readonly(host, staging + host)
    _bind_readonly("/usr", staging + "/usr")
    _bind_readonly(etc, staging + "/etc")
    for path in runtime:
        if not path.startswith("/usr/"):
            _bind_readonly(path, staging + path)
    for name in ("proc", "tmp", "var/task", "dev", "opt", RUNTIMES_MOUNT[1:]):
        os.makedirs(staging + "/" + name, exist_ok=True)


def bind_readonly(source: str, target: str) -> None:
    """Bind ``source`` read-only (nosuid, nodev) at ``target``, creating the mount point."""
    _bind_readonly(source, target)


def private_mount_namespace() -> None:
    """Enter a new mount namespace whose mounts never propagate back to the host."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)


def stage_shared_root(runtime: list[str], etc: str) -> None:
    """Build every sandbox's root under ``STAGING``, once, in a mount namespace
    of the caller's own (the zygote's, single-threaded).

    Each sandbox's clone(CLONE_NEWNS) copies this namespace, tree included:
    the kernel copies a dozen mounts in microseconds, where building them in
    every new sandbox took ~0.7 ms of Python and system calls (a tenth of a
    sandbox's creation). The copies share their filesystems with this tree,
    so it is read-only everywhere, the zygote's mounts included: what a
    sandbox may write (``/tmp``) and what it must own (``/proc``) it mounts
    itself. Host mounts still propagate in (slave), nothing propagates out.
    """
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, MS_REC | MS_SLAVE)
    stage_root(STAGING, runtime, etc)
    dev = STAGING + "/dev"
    _mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755")
    for device in DEVICES:
        _bind_readonly_device("/dev/" + device, dev + "/" + device)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, dev + "/" + name)
    # Read-only from here on. Devices are binds of their own, still writable:
    # a read-only mount refuses creating and changing files, not device I/O.
    _mount(None, dev, None, MS_REMOUNT | MS_NOSUID | MS_NOEXEC | MS_RDONLY)
    _mount(None, STAGING, None, MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_RDONLY)


def sandbox_mounts() -> int:
    """A mount namespace holding only the staged tree, as its root (an fd).

    Made once, after ``stage_shared_root``, in the caller's (the zygote's)
    namespace: a copy of it pivots into the tree and detaches the rest. Each
    sandbox is cloned with a copy of this one: a dozen mounts to copy instead
    of the host's too, and no ``pivot_root`` and detach in every sandbox (the
    detach waits for an RCU grace period). No sandbox ever has a host mount in
    its namespace, not even before its claim. The caller stays in its own
    namespace (entered again, cwd at its root).
    """
    home = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        try:
            made = os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            os.chdir(STAGING)
            _pivot_here()
        finally:
            _check(_libc.setns(home, CLONE_NEWNS), "setns(back home)")
            os.chdir("/")
    finally:
        os.close(home)
    return made


def _pivot_here() -> None:
    """The current directory becomes the root; the old root is detached.

    pivot_root(".", "."): the old root ends up stacked on the new one and is
    detached from there, so the (read-only) new root needs no directory for it.
    """
    _check(
        _libc.syscall(ctypes.c_long(155 if platform.machine() == "x86_64" else 41), b".", b"."),
        "pivot_root",
    )
    _check(_libc.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")


def prepare_root(runtimes: int = -1, loopback: bool = True, staged: bool = False) -> None:
    """A sandbox's own part of its root (function-independent, before the claim):
    mounts that stay its own, its loopback (unless its network namespace is one
    handed on, whose loopback is up) and hostname, a fresh ``/proc``;
    ``runtimes``, when given, a view of the runtimes directory made by the zygote
    for this sandbox (``view_readonly``), attached read-only at ``RUNTIMES_MOUNT``.
    ``staged``: cloned from ``sandbox_mounts``, the tree is already the root."""
    root = "" if staged else STAGING
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    if loopback:
        loopback_up()
    socket.sethostname("sandbox")
    _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if runtimes >= 0:
        _attach(runtimes, root + RUNTIMES_MOUNT)


def _bind_readonly_device(source: str, target: str) -> None:
    # Devices stay writable (/dev/null must accept writes); nosuid, no exec.
    os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o666))
    _mount(source, target, None, MS_BIND)
    _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NOEXEC)


def enter_staged_root(staged: bool = False) -> None:
    """Make the staged tree the root, read-only, with a /tmp and no code yet.

    Function-independent, so a blank does it before it is claimed; the old
    root is detached, so nothing of the host is reachable from here on.
    ``staged``: cloned from ``sandbox_mounts``, the tree is the root already.
    """
    root = "" if staged else STAGING
    _mount(
        "tmpfs",
        root + "/tmp",
        "tmpfs",
        MS_NOSUID | MS_NODEV,
        "size={0}m,mode=1777".format(BLANK_TMP_MB),
    )
    if staged:
        os.chdir("/")
        return
    os.chdir(STAGING)
    _pivot_here()


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def clone_readonly(path: str) -> int:
    """A detached read-only (nosuid, nodev) copy of the mount tree at ``path``, as an fd.

    Made by the zygote, which sees the host's paths; a claimed blank, which
    no longer does, attaches it with ``enter_task``. The caller closes it.
    """
    fd = _pylibc.syscall(
        ctypes.c_long(SYS_OPEN_TREE),
        ctypes.c_int(AT_FDCWD),
        path.encode(),
        ctypes.c_uint(OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE),
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, "open_tree {0}: {1}".format(path, os.strerror(err)))
    attr = _MountAttr(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0, 0, 0)
    result = _pylibc.syscall(
        ctypes.c_long(SYS_MOUNT_SETATTR),
        ctypes.c_int(fd),
        b"",
        ctypes.c_uint(AT_EMPTY_PATH | AT_RECURSIVE),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )
    if result != 0:
        err = ctypes.get_errno()
        os.close(fd)
        raise OSError(err, "mount_setattr {0}: {1}".format(path, os.strerror(err)))
    return int(fd)


def clone_mount(mount: int) -> int:
    """A new detached mount of the detached mount ``mount`` (``view_readonly``'s): the
    same read-only superblock, for ~20 µs against the ~70 of a new overlay and its
    tear-down. The caller closes it."""
    fd = _pylibc.syscall(
        ctypes.c_long(SYS_OPEN_TREE),
        ctypes.c_int(mount),
        b"",
        ctypes.c_uint(OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH),
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, "open_tree (clone a view): " + os.strerror(err))
    return int(fd)


def view_readonly(path: str, empty: str) -> int:
    """A detached read-only (nosuid, nodev) view of the directory ``path``, as an fd.

    Like ``clone_readonly``, but the view is an overlay whose layers are named
    ``/proc/self/fd/N``: a bind's line in /proc/self/mountinfo carries its
    source path within the host filesystem (the data dir's ``code/<digest>``),
    an overlay's carries only ``/`` and the names it was given. Overlayfs
    needs two lower layers without an upper one; ``empty`` (an empty
    directory) is the second. Made by the zygote, attached by ``enter_task``.
    """
    flags = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
    layers = [os.open(path, flags), os.open(empty, flags)]
    try:
        lower = ":".join("/proc/self/fd/{0}".format(fd) for fd in layers)
        return _fsmount_overlay(lower.encode())
    finally:
        for fd in layers:
            os.close(fd)


def _fsmount_overlay(lower: bytes) -> int:
    context = _syscall_fd("fsopen overlay", SYS_FSOPEN, b"overlay", ctypes.c_uint(FSOPEN_CLOEXEC))
    try:
        for key, value in ((b"source", b"ember"), (b"lowerdir", lower)):
            _syscall_fd(
                "fsconfig " + key.decode(),
                SYS_FSCONFIG,
                ctypes.c_int(context),
                ctypes.c_uint(FSCONFIG_SET_STRING),
                key,
                value,
                ctypes.c_int(0),
            )
        _syscall_fd(
            "fsconfig create",
            SYS_FSCONFIG,
            ctypes.c_int(context),
            ctypes.c_uint(FSCONFIG_CMD_CREATE),
            None,
            None,
            ctypes.c_int(0),
        )
        attributes = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV
        return _syscall_fd(
            "fsmount overlay",
            SYS_FSMOUNT,
            ctypes.c_int(context),
            ctypes.c_uint(FSMOUNT_CLOEXEC),
            ctypes.c_uint(attributes),
        )
    finally:
        os.close(context)


def _syscall_fd(what: str, number: int, *args: object) -> int:
    """A raw syscall's non-negative result, or OSError naming ``what``."""
    result = _pylibc.syscall(ctypes.c_long(number), *args)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, "{0}: {1}".format(what, os.strerror(err)))
    return int(result)


def enter_task(code_tree: int, tmp_mb: int, egress: bool = False, opt_tree: int = -1) -> None:
    """In a claimed blank: the code at /var/task, layers at /opt, /tmp at its size."""
    _attach(code_tree, TASK_ROOT)
    if opt_tree >= 0:
        _attach(opt_tree, "/opt")
    _mount(None, "/tmp", None, MS_REMOUNT | MS_NOSUID | MS_NODEV, "size={0}m".format(tmp_mb))
    if egress:
        # slirp4netns answers DNS at 10.0.2.3; the host's resolver is out of reach.
        # Written in the sandbox's own /tmp (the root's filesystem is every
        # sandbox's), bound over /etc/resolv.conf, then unlinked: the bind keeps it.
        written = "/tmp/.ember-resolv.conf"
        with open(written, "w") as handle:
            handle.write("nameserver 10.0.2.3\n")
        _bind_readonly(written, "/etc/resolv.conf")
        os.unlink(written)


def task_mounts_of(pid: int, code_tree: int, tmp_mb: int, egress: bool, opt_tree: int) -> None:
    """``enter_task`` done from outside, for a sandbox whose runtime already runs (Node).

    The caller (the zygote: trusted, single-threaded, root) steps into the
    sandbox's mount namespace and root, attaches the code there and steps
    back; the sandbox itself has long dropped the privileges this needs. Only
    trusted code has run in that sandbox so far, and its root is read-only
    to it, so the paths resolved in there are the ones its set-up made. The
    caller keeps (and closes) ``code_tree`` and ``opt_tree``.
    """
    home = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    copies: list[int] = []
    entered = False
    try:
        target = os.open("/proc/{0}/ns/mnt".format(pid), os.O_RDONLY | os.O_CLOEXEC)
        # setns puts us at the namespace's first root, under the one the sandbox
        # pivoted to: its own root is reached through /proc, opened beforehand.
        try:
            root = os.open("/proc/{0}/root".format(pid), os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            os.close(target)
            raise
        try:
            # enter_task consumes (closes) what it attaches: it gets copies.
            copies = [os.dup(code_tree)] + ([os.dup(opt_tree)] if opt_tree >= 0 else [])
            _check(_libc.setns(target, CLONE_NEWNS), "setns into the sandbox")
            entered = True
            os.fchdir(root)
            os.chroot(".")
        finally:
            os.close(target)
            os.close(root)
        enter_task(copies[0], tmp_mb, egress, copies[1] if len(copies) > 1 else -1)
        copies = []
    finally:
        for copy in copies:  # those not attached (attached ones are closed: EBADF)
            with contextlib.suppress(OSError):
                os.close(copy)
        if entered:
            if _libc.setns(home, CLONE_NEWNS) != 0:
                # Never go on inside a sandbox's namespace.
                os.write(2, b"ember zygote: cannot return from a sandbox's namespace\n")
                os._exit(70)
            os.chdir("/")
        os.close(home)


def _attach(tree: int, target: str) -> None:
    """Attach a detached mount tree (from ``clone_readonly``) at ``target``; close it."""
    result = _pylibc.syscall(
        ctypes.c_long(SYS_MOVE_MOUNT),
        ctypes.c_int(tree),
        b"",
        ctypes.c_int(AT_FDCWD),
        target.encode(),
        ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH),
    )
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, "move_mount {0}: {1}".format(target, os.strerror(err)))
    os.close(tree)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _drop_capabilities() -> None:
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def _last_capability() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return -1  # read again where it is needed (and fail there)


# Read once, in the zygote: every sandbox drops the bounding set.
_LAST_CAP = _last_capability()


def _drop_bounding_set() -> None:
    last = _LAST_CAP
    if last < 0:
        with open("/proc/sys/kernel/cap_last_cap") as handle:
            last = int(handle.read())
    prctl = _libc.prctl
    for capability in range(last + 1):
        if prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            _check(-1, "drop capability bound")


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def drop_privileges(uid: int, gid: int, user_namespace: bool) -> None:
    """Become an unprivileged user in a user namespace of its own, for good."""
    if not user_namespace:
        # With one, this would be undone: a new user namespace starts with a
        # full bounding set (relative to it), emptied below instead.
        _drop_bounding_set()
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)  # clears every capability of the real root
    if user_namespace:
        # Changing uid made the process non-dumpable, which hands /proc/self
        # to root; it must own its own map files to write them.
        _check(_libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "dumpable")
        _check(_libc.unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER)")
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", "{0} {0} 1".format(uid))
        _write("/proc/self/gid_map", "{0} {0} 1".format(gid))
        _drop_bounding_set()  # the new namespace granted a full set again
        _drop_capabilities()
        _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "not dumpable")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def user_namespaces_available() -> bool:
    try:
        with open("/proc/sys/user/max_user_namespaces") as handle:
            return int(handle.read()) > 0
    except (OSError, ValueError):
        return False


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class CompiledFilter:
    """A seccomp filter compiled to its BPF program once; ``load`` installs it.

    libseccomp's own ``load`` generates the program again on every call
    (~0.5 ms in a fresh fork, on the cold-start path); the program is the
    same each time. Installing it is what libseccomp does with its default
    attributes: no_new_privs, then the filter with no flags (no TSYNC, no LOG).
    """

    def __init__(self, program: bytes) -> None:
        if not program or len(program) % 8:  # struct sock_filter is 8 bytes
            raise ValueError("not a BPF program: {0} bytes".format(len(program)))
        self._buffer = ctypes.create_string_buffer(program, len(program))
        self._program = _SockFprog(len(program) // 8, ctypes.addressof(self._buffer))

    def load(self) -> None:
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        result = _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(self._program), 0, 0)
        _check(result, "seccomp filter")


def build_filter(seccomp: Any) -> CompiledFilter:
    """The seccomp filter: the calls above and nothing else (EPERM, or ENOSYS).

    Built and compiled once in the zygote; each child only installs the
    program (one prctl).
    """
    rules = _filter_rules(seccomp)
    with tempfile.TemporaryFile() as handle:
        rules.export_bpf(handle)
        handle.seek(0)
        return CompiledFilter(handle.read())


def _filter_rules(seccomp: Any) -> Any:
    allow = seccomp.ALLOW
    rules = seccomp.SyscallFilter(seccomp.ERRNO(EPERM))
    # Another ABI's calls (i386's int 0x80, x32) have other numbers the list
    # above does not describe: they kill the whole sandbox (SIGSYS). libseccomp
    # would kill only the calling thread, leaving the rest of it running.
    rules.set_attr(seccomp.Attr.ACT_BADARCH, seccomp.KILL_PROCESS)
    # A binary tree of syscall numbers, not a list: ~280 rules stay a few
    # comparisons on every call (libseccomp 2.5+; older ones keep the list).
    with contextlib.suppress(OSError, ValueError, RuntimeError):
        rules.set_attr(seccomp.Attr.CTL_OPTIMIZE, 2)
    for name in ALLOWED_SYSCALLS:
        _add(rules, allow, name)
    for name in NOT_IMPLEMENTED_SYSCALLS:
        _add(rules, seccomp.ERRNO(ENOSYS), name)
    # clone(): threads and processes, never a new namespace.
    _add(rules, allow, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_NAMESPACES, 0))
    for arguments in _socket_arguments(seccomp):
        _add(rules, allow, "socket", *arguments)
    for value in PERSONALITIES:
        _add(rules, allow, "personality", seccomp.Arg(0, seccomp.EQ, value))
    # Named pipes (os.mkfifo) only; devices stay refused.
    _add(rules, allow, "mknod", seccomp.Arg(1, seccomp.MASKED_EQ, S_IFMT, S_IFIFO))
    _add(rules, allow, "mknodat", seccomp.Arg(2, seccomp.MASKED_EQ, S_IFMT, S_IFIFO))
    return rules


def _socket_arguments(seccomp: Any) -> Iterator[tuple[Any, ...]]:
    """The sockets a function may open: local, TCP/UDP, and netlink routing.

    No raw IP or packet sockets (no crafting packets); netlink only for the
    routing family the C library lists interfaces through.
    """
    yield (seccomp.Arg(0, seccomp.EQ, AF_UNIX),)
    for family in (AF_INET, AF_INET6):
        for kind in (SOCK_STREAM, SOCK_DGRAM):
            yield (
                seccomp.Arg(0, seccomp.EQ, family),
                seccomp.Arg(1, seccomp.MASKED_EQ, SOCK_TYPE_MASK, kind),
            )
    yield (seccomp.Arg(0, seccomp.EQ, AF_NETLINK), seccomp.Arg(2, seccomp.EQ, NETLINK_ROUTE))


def _add(rules: Any, action: int, name: str, *arguments: Any) -> None:
    # A call this architecture does not have (arch_prctl on aarch64, the
    # legacy open on aarch64...) cannot be allowed nor made.
    try:
        rules.add_rule(action, name, *arguments)
    except (OSError, ValueError, RuntimeError):
        if name in NEWER_SYSCALLS:
            with contextlib.suppress(OSError, ValueError, RuntimeError):
                rules.add_rule(action, NEWER_SYSCALLS[name], *arguments)
