"""SnapStart: a new sandbox as a fork of its version's template, isolated by a trusted tracer.

Loaded by the zygote as ``_ember_restore`` (standard library only, Python
3.9 syntax, x86_64). A template is an ordinary sandbox of a published
version that ran Init and then parked, blocked in ``read(3)`` on its
socket. Its user code may have done anything to its own memory, so nothing
in it is trusted: every step below is made by the zygote (root, outside
every sandbox) through ptrace, with the template and the new process both
stopped, before the new process runs a single instruction of its own.

- ``fork_template``: the zygote seizes the parked template, and makes it
  execute one ``clone()`` into new user, PID, mount, network, IPC and UTS
  namespaces, reusing the ``syscall`` instruction of its own ``read``. The
  template's seccomp filter (which refuses namespace flags) is suspended
  for that one call only (``PTRACE_O_SUSPEND_SECCOMP``, which only a tracer
  with CAP_SYS_ADMIN may set); user code never makes a namespace call. The
  template then resumes its ``read`` as if nothing happened.
- ``isolate_child``: in the new process, stopped at birth, the zygote runs
  system calls of its choosing: the uid and gid maps, a fresh ``/proc`` of
  its PID namespace, a ``/tmp`` of its own (an overlay over the template's,
  so what Init wrote there is kept, as in a Lambda snapshot), loopback up,
  a new socket and output pipe whose other ends the zygote takes with
  ``pidfd_getfd``, every other descriptor closed, and every capability the
  new user namespace granted dropped. On detach the filter applies again.
- The new process then returns from the template's ``read`` with ``b"R"``
  (the template itself never reads that: its socket's other end never
  writes), and the runtime's restore path (``pyloop.restored``) takes over.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import platform
import socket
import struct
from typing import Callable

PTRACE_GETREGS, PTRACE_SETREGS = 12, 13
PTRACE_CONT, PTRACE_SINGLESTEP, PTRACE_DETACH = 7, 9, 17
PTRACE_GETEVENTMSG, PTRACE_SEIZE, PTRACE_INTERRUPT = 0x4201, 0x4206, 0x4207
PTRACE_O_TRACEFORK = 0x2
PTRACE_O_EXITKILL = 0x100000
PTRACE_O_SUSPEND_SECCOMP = 0x200000
PTRACE_EVENT_FORK, PTRACE_EVENT_STOP = 1, 128
WALL = 0x40000000
SIGTRAP, SIGSTOP = 5, 19
ERESTART = (512, 513, 514)  # ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND
NO_SYSCALL = (1 << 64) - 1  # orig_rax outside a system call (-1)
RESTARTS = 100  # how often an injected call is made again after a signal interrupted it

SYS = {
    "read": 0,
    "close": 3,
    "mmap": 9,
    "munmap": 11,
    "ioctl": 16,
    "dup2": 33,
    "socket": 41,
    "socketpair": 53,
    "clone": 56,
    "capset": 126,
    "prctl": 157,
    "mount": 165,
    "openat": 257,
    "mkdirat": 258,
    "chmod": 90,
    "unshare": 272,
    "write": 1,
    "pipe2": 293,
    "pidfd_open": 434,
    "close_range": 436,
    "pidfd_getfd": 438,
    "wait4": 61,
    "recvmsg": 47,
}
SOL_SOCKET, SCM_RIGHTS, MSG_CMSG_CLOEXEC = 1, 1, 0x40000000
WNOHANG = 1
CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID = 0x08000000, 0x10000000, 0x20000000
CLONE_NEWNET, SIGCHLD = 0x40000000, 17
CLONE_FS = 0x00000200
NAMESPACES = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
AT_FDCWD = -100
O_WRONLY, O_PATH, O_DIRECTORY, O_CLOEXEC = 1, 0o10000000, 0o200000, 0o2000000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
PR_SET_DUMPABLE, PR_CAPBSET_DROP = 4, 24
AF_UNIX, AF_INET, SOCK_STREAM, SOCK_DGRAM = 1, 2, 1, 2
SIOCSIFFLAGS = 0x8914
LOOPBACK_FLAGS = 0x1 | 0x8 | 0x40  # IFF_UP | IFF_LOOPBACK | IFF_RUNNING
PAGE = 4096
RESTORED = b"R"  # what the new process's read returns

ARGUMENT_REGISTERS = ("rdi", "rsi", "rdx", "r10", "r8", "r9")
_REGS = [
    "r15",
    "r14",
    "r13",
    "r12",
    "rbp",
    "rbx",
    "r11",
    "r10",
    "r9",
    "r8",
    "rax",
    "rcx",
    "rdx",
    "rsi",
    "rdi",
    "orig_rax",
    "rip",
    "cs",
    "eflags",
    "rsp",
    "ss",
    "fs_base",
    "gs_base",
    "ds",
    "es",
    "fs",
    "gs",
]


class Regs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_ulonglong) for name in _REGS]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.syscall.restype = ctypes.c_long


class RestoreError(OSError):
    """The template could not be forked (it is not parked as a template parks)."""


def supported() -> str:
    """Why this host cannot fork templates ("" when it can)."""
    if platform.machine() != "x86_64":
        return "SnapStart's restore is built for x86_64 only (this host is {0})".format(
            platform.machine()
        )
    return ""


def _ptrace(request: int, pid: int, addr: int = 0, data: int = 0) -> int:
    result = _libc.ptrace(request, pid, ctypes.c_void_p(addr), ctypes.c_void_p(data))
    if result == -1:
        err = ctypes.get_errno()
        if err:
            raise OSError(err, "ptrace({0}) on {1}: {2}".format(request, pid, os.strerror(err)))
    return int(result)


def _wait_stop(pid: int) -> tuple[int, int]:
    """Wait for ``pid``'s next ptrace stop: (signal, event)."""
    _, status = os.waitpid(pid, WALL)
    if (status & 0xFF) != 0x7F:
        raise RestoreError("process {0} ended while being forked (status {1})".format(pid, status))
    return (status >> 8) & 0xFF, status >> 16


def _resume(pid: int, request: int) -> tuple[int, int]:
    """Resume ``pid`` (single-step or continue) until it stops for us: (signal, event).

    A signal that arrives meanwhile (SIGCHLD, when one of a template's forks ends)
    stops it before the instruction runs; it is dropped (a template ignores them
    all, and a new sandbox has none yet) and the step made again.
    """
    while True:
        _ptrace(request, pid)
        sig, event = _wait_stop(pid)
        if sig == SIGTRAP or event not in (0, PTRACE_EVENT_STOP):
            return sig, event


def _step_syscall(pid: int, regs: Regs) -> tuple[int, int]:
    """Run the system call ``regs`` set up (at ``regs.rip``) with one single-step.

    A call that a signal interrupted (SIGCHLD, when one of a template's forks ends
    meanwhile: a traced process queues even the signals it ignores) returns an
    ERESTART code, which the kernel would turn into the same call again on the way
    back to user space. A single-step stops before that, so the call is made again
    here, as the kernel would have; the signal's own stop is dropped by ``_resume``.
    """
    for _ in range(RESTARTS):
        _set_regs(pid, regs)
        sig, event = _resume(pid, PTRACE_SINGLESTEP)
        if not (sig == SIGTRAP and event == 0 and -_signed(_regs(pid).rax) in ERESTART):
            return sig, event
    raise RestoreError("a system call in process {0} was interrupted again and again".format(pid))


def _interrupt(pid: int) -> None:
    """Stop ``pid`` where it is (a template: in its read), signals aside."""
    _ptrace(PTRACE_INTERRUPT, pid)
    while _wait_stop(pid)[1] != PTRACE_EVENT_STOP:
        _ptrace(PTRACE_CONT, pid)  # a signal's stop came first: dropped


def _regs(pid: int) -> Regs:
    regs = Regs()
    _ptrace(PTRACE_GETREGS, pid, 0, ctypes.addressof(regs))
    return regs


def _set_regs(pid: int, regs: Regs) -> None:
    _ptrace(PTRACE_SETREGS, pid, 0, ctypes.addressof(regs))


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


class Restorers:
    """Threads that make restores beside the zygote's loop, one per CPU (two at most).

    A burst of cold calls on a SnapStart version asks for many sandboxes at once,
    and one restore after another made the last call of a burst of 16 wait ~80-100 ms.
    The template can only fork once at a time (it is one process, traced by one
    thread), but setting up the new process (``isolate_child``) and handing it over
    can overlap with the next fork. Ptrace binds a tracee to the *thread* that
    seized it, so each restore stays on one thread from fork to release.

    Each thread is kept on a CPU of its own: every injected call wakes the tracee
    and then the tracer, and across two CPUs that is two inter-processor wake-ups,
    which in a virtual machine cost more than the calls themselves (a restore took
    twice as long); the template and its new process run on the thread's CPU for
    the restore (``fork_template`` sets it, ``release`` lifts it).

    ``tracing`` is held while a template is traced, and by the zygote around its
    own wait for exited children: a template is the zygote's child, and the
    zygote's wait would take the stops meant for the thread tracing it. Each
    thread also leaves the zygote's shared filesystem context (``unshare(CLONE_FS)``),
    since the kernel lets only a process whose context is not shared enter a mount
    namespace, which the zygote does for every sandbox it forks itself.
    """

    def __init__(self, cpus: list[int]) -> None:
        import queue
        import threading

        self.tracing = threading.RLock()
        self._jobs: queue.SimpleQueue[tuple[str, Callable[[], object]] | None] = queue.SimpleQueue()
        self._done: collections.deque[tuple[str, object]] = collections.deque()
        self.wake, self._wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._threads = [
            threading.Thread(target=self._work, args=(cpu,), name="restore", daemon=True)
            for cpu in cpus[:2]
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, key: str, job: Callable[[], object]) -> None:
        """Run ``job`` on a restore thread; its result (or the exception it raised)
        comes back from ``finished`` under ``key``."""
        self._jobs.put((key, job))

    def finished(self) -> list[tuple[str, object]]:
        """What the threads have finished since the last call (``wake`` became readable)."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wake, 512):
                pass
        done = []
        while self._done:
            done.append(self._done.popleft())
        return done

    def stop(self) -> None:
        """Let the threads finish the restores they were given, and end."""
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()

    def _work(self, cpu: int) -> None:
        if _libc.unshare(CLONE_FS) != 0:
            os.write(2, b"ember zygote: a restore thread cannot unshare its fs context\n")
            os._exit(70)  # the zygote could no longer fork isolated sandboxes
        # A CPU taken from the zygote's set meanwhile: the thread runs anywhere, never dies
        # (restores queued to a thread that ended would wait forever).
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})
        while True:
            item = self._jobs.get()
            if item is None:
                return
            key, job = item
            try:
                outcome: object = job()
            except BaseException as exc:  # handed to the zygote's loop, which reports it
                outcome = exc
            self._done.append((key, outcome))
            with contextlib.suppress(BlockingIOError):
                os.write(self._wake, b"!")


class Tracee:
    """A stopped process into which system calls are injected one at a time.

    Each call runs the ``syscall`` instruction at ``insn`` with registers of
    our choosing and one single-step; the process's own registers are put
    back by the caller when done.
    """

    def __init__(self, pid: int, base: Regs, insn: int) -> None:
        self.pid = pid
        self.everywhere: set[int] = set()  # the CPUs it may run on once released
        self.base = base
        self.insn = insn
        self.mem = -1

    def call(self, name: str, *args: int) -> int:
        regs = Regs.from_buffer_copy(self.base)
        regs.rip = self.insn
        regs.rax = SYS[name]
        regs.orig_rax = (1 << 64) - 1  # not inside a system call: no restart logic
        for index, value in enumerate(args):
            setattr(regs, ARGUMENT_REGISTERS[index], value & ((1 << 64) - 1))
        sig, _event = _step_syscall(self.pid, regs)
        if sig != SIGTRAP:
            raise RestoreError(
                "{0} in process {1} stopped with signal {2}".format(name, self.pid, sig)
            )
        return _signed(_regs(self.pid).rax)

    def check(self, name: str, *args: int) -> int:
        result = self.call(name, *args)
        if result < 0:
            raise OSError(-result, "{0} in the new sandbox: {1}".format(name, os.strerror(-result)))
        return result

    def poke(self, addr: int, data: bytes) -> None:
        if self.mem < 0:
            self.mem = os.open("/proc/{0}/mem".format(self.pid), os.O_RDWR | os.O_CLOEXEC)
        os.pwrite(self.mem, data, addr)

    def peek(self, addr: int, size: int) -> bytes:
        if self.mem < 0:
            self.mem = os.open("/proc/{0}/mem".format(self.pid), os.O_RDWR | os.O_CLOEXEC)
        return os.pread(self.mem, size, addr)

    def close(self) -> None:
        if self.mem >= 0:
            os.close(self.mem)
            self.mem = -1


def _parked_regs(tracee: Tracee, regs: Regs) -> None:
    """Refuse unless the template is blocked in ``read(3, ...)``, as a template parks.

    Or about to enter that read again: ``_back_into_read`` left it on the system
    call instruction, and it has not run since (the zygote forks or reaps again
    before the scheduler gets to it, on a busy machine). That state is rewritten
    here as the one it would be in once blocked, which is what the callers use.
    """
    if (
        regs.orig_rax == NO_SYSCALL
        and regs.rax == SYS["read"]
        and regs.rdi == 3
        and tracee.peek(regs.rip, 2) == b"\x0f\x05"
    ):
        regs.rip += 2
        regs.orig_rax = SYS["read"]
        regs.rax = -ERESTART[0] & NO_SYSCALL
        return
    if not (
        regs.orig_rax == SYS["read"]
        and regs.rdi == 3
        and -_signed(regs.rax) in ERESTART
        and tracee.peek(regs.rip - 2, 2) == b"\x0f\x05"
    ):
        raise RestoreError("the template is not parked (it ran code of its own after its snapshot)")


def threads_of(pid: int) -> int:
    with open("/proc/{0}/status".format(pid)) as handle:
        for line in handle:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def inspect(template: int) -> str:
    """Why the parked ``template`` cannot be forked ("" when it can; RestoreError
    when it is not parked, which it may yet be): other threads (a fork holds only
    one), open descriptors beyond the runtime's own or shared writable memory (its
    forks would share them with each other)."""
    _ptrace(PTRACE_SEIZE, template)
    tracee = Tracee(template, Regs(), 0)
    try:
        _interrupt(template)
        _parked_regs(tracee, _regs(template))  # RestoreError: not yet, or never
        if threads_of(template) != 1:
            return "Init left threads running: a snapshot holds only one thread"
        held = sorted(
            os.readlink("/proc/{0}/fd/{1}".format(template, fd))
            for fd in os.listdir("/proc/{0}/fd".format(template))
            if int(fd) > 3
        )
        if held:
            return "Init left descriptors open, which its sandboxes would share: " + ", ".join(held)
        with open("/proc/{0}/maps".format(template)) as handle:
            shared = [
                [*parts, "anonymous"][5]
                for parts in (line.split() for line in handle)
                if parts[1][1] == "w" and parts[1][3] == "s"
            ]
        if shared:
            return "Init mapped shared writable memory, which its sandboxes would share: " + (
                ", ".join(shared)
            )
        return ""
    finally:
        tracee.close()
        _ptrace(PTRACE_DETACH, template)  # its read() restarts


def fork_template(template: int) -> tuple[int, Tracee]:
    """Make the parked ``template`` fork once into new namespaces; return the new
    process's pid (the zygote's view) and it, stopped at birth and traced."""
    options = PTRACE_O_TRACEFORK | PTRACE_O_SUSPEND_SECCOMP | PTRACE_O_EXITKILL
    everywhere = os.sched_getaffinity(template)
    _ptrace(PTRACE_SEIZE, template, 0, options)
    parent = Tracee(template, Regs(), 0)
    try:
        # On the tracing thread's CPU (``Restorers``); the fork inherits it,
        # ``release`` lifts it.
        os.sched_setaffinity(template, os.sched_getaffinity(0))
        _interrupt(template)
        saved = _regs(template)
        _parked_regs(parent, saved)
        if threads_of(template) != 1:
            # Only the calling thread is forked: the rest would be missing.
            raise RestoreError("the template runs threads")
        # The new process leaves as if from this read() (``release``).
        original = Regs.from_buffer_copy(saved)
        parent.insn = saved.rip - 2
        regs = Regs.from_buffer_copy(saved)
        regs.rip = parent.insn
        regs.rax = SYS["clone"]
        regs.orig_rax = (1 << 64) - 1
        regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8 = NAMESPACES | SIGCHLD, 0, 0, 0, 0
        sig, event = _step_syscall(template, regs)
        if event != PTRACE_EVENT_FORK:
            result = _signed(_regs(template).rax)
            raise RestoreError(
                "clone in the template failed: {0}".format(
                    os.strerror(-result) if result < 0 else "signal {0}".format(sig)
                )
            )
        message = ctypes.c_ulong()
        _ptrace(PTRACE_GETEVENTMSG, template, 0, ctypes.addressof(message))
        child = int(message.value)
        _resume(template, PTRACE_SINGLESTEP)  # the rest of clone() in the template
        sig, event = _wait_stop(child)
        if event != PTRACE_EVENT_STOP:
            os.kill(child, 9)
            raise RestoreError("the new sandbox did not stop at birth (signal {0})".format(sig))
        _back_into_read(template, saved)
    finally:
        parent.close()
        os.sched_setaffinity(template, everywhere)
        _ptrace(PTRACE_DETACH, template)
    tracee = Tracee(child, original, original.rip - 2)
    tracee.everywhere = everywhere
    return child, tracee


def _back_into_read(template: int, saved: Regs) -> None:
    """Put the template back into the read() it was interrupted in: the same call
    again, as the kernel restarts an interrupted one."""
    saved.rip -= 2
    saved.rax = saved.orig_rax
    saved.orig_rax = (1 << 64) - 1
    _set_regs(template, saved)


def exit_status(pid: int) -> int | None:
    """The wait status of ``pid``, a zombie not reaped yet (/proc's 52nd stat field)."""
    try:
        with open("/proc/{0}/stat".format(pid)) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[49]) if len(fields) > 49 else None


def reap(template: int) -> None:
    """Reap the template's ended forks (its children): it is parked and never waits."""
    _ptrace(PTRACE_SEIZE, template)
    tracee = Tracee(template, Regs(), 0)
    try:
        _interrupt(template)
        saved = _regs(template)
        _parked_regs(tracee, saved)
        tracee.base, tracee.insn = saved, saved.rip - 2
        while tracee.call("wait4", -1, 0, WNOHANG | WALL, 0) > 0:
            pass
        _back_into_read(template, saved)
    finally:
        tracee.close()
        _ptrace(PTRACE_DETACH, template)


# Runs a table of system calls in the stopped process, in one stop instead of one
# per call: entries of seven quadwords (number, six arguments), ended by -1; it
# stops (int3) at the end or at the first call that fails, with rbx on its entry.
# Machine code written by hand because it is this small and must not depend on
# anything in the process's (untrusted) memory, which is why it is written, with
# its table and their strings, into a page the zygote maps there.
_RUNNER = bytes.fromhex(
    "488b03"  # 0: mov rax, [rbx]
    "4883f8ff"  # 3: cmp rax, -1
    "7425"  # 7: je 46
    "488b7b08"  # 9: mov rdi, [rbx+8]
    "488b7310"  # 13: mov rsi, [rbx+16]
    "488b5318"  # 17: mov rdx, [rbx+24]
    "4c8b5320"  # 21: mov r10, [rbx+32]
    "4c8b4328"  # 25: mov r8, [rbx+40]
    "4c8b4b30"  # 29: mov r9, [rbx+48]
    "0f05"  # 33: syscall
    "4885c0"  # 35: test rax, rax
    "7806"  # 38: js 46
    "4883c338"  # 40: add rbx, 56
    "ebd2"  # 44: jmp 0
    "cc"  # 46: int3
)
SCRATCH = 2 * PAGE  # data | table | runner
TABLE_AT, RUNNER_AT = 1536, SCRATCH - 64
ENTRY = struct.Struct("=7q")


class Batch:
    """System calls for one run of ``_RUNNER``, and the data they point to."""

    def __init__(self, scratch: int) -> None:
        self.scratch = scratch
        self.data = bytearray()
        self.calls: list[tuple[str, tuple[int, ...]]] = []

    def put(self, value: bytes) -> int:
        """``value`` in the scratch page (8-byte aligned); its address there."""
        address = self.scratch + len(self.data)
        self.data += value + b"\0" * (-len(value) % 8)
        if len(self.data) > TABLE_AT:
            raise RestoreError("a restore's data outgrew its page")
        return address

    def string(self, value: bytes) -> int:
        return self.put(value + b"\0")

    def call(self, name: str, *args: int) -> None:
        self.calls.append((name, args))

    def write_file(self, path: bytes, data: bytes, fd: int) -> None:
        """Open ``path`` (it becomes ``fd``: the lowest free), write ``data``, close."""
        self.call("openat", AT_FDCWD, self.string(path), O_WRONLY | O_CLOEXEC)
        self.call("write", fd, self.put(data), len(data))
        self.call("close", fd)

    def run(self, tracee: Tracee) -> None:
        table = b"".join(
            ENTRY.pack(SYS[name], *args, *([0] * (6 - len(args)))) for name, args in self.calls
        )
        table += ENTRY.pack(-1, 0, 0, 0, 0, 0, 0)
        if TABLE_AT + len(table) > RUNNER_AT:
            raise RestoreError("a restore's calls outgrew their page")
        tracee.poke(self.scratch, bytes(self.data))
        tracee.poke(self.scratch + TABLE_AT, table)
        tracee.poke(self.scratch + RUNNER_AT, _RUNNER)
        regs = Regs.from_buffer_copy(tracee.base)
        regs.rip = self.scratch + RUNNER_AT
        regs.rbx = self.scratch + TABLE_AT
        regs.orig_rax = (1 << 64) - 1
        _set_regs(tracee.pid, regs)
        sig, _event = _resume(tracee.pid, PTRACE_CONT)
        done = _regs(tracee.pid)
        index = (done.rbx - self.scratch - TABLE_AT) // ENTRY.size
        if sig != SIGTRAP or index != len(self.calls):
            name = self.calls[index][0] if 0 <= index < len(self.calls) else "?"
            raise OSError(
                -_signed(done.rax),
                "{0} in the new sandbox: {1}".format(name, os.strerror(-_signed(done.rax))),
            )


def isolate_child(
    tracee: Tracee, uid: int, gid: int, tmp_mb: int, last_cap: int, cgroups: list[int]
) -> tuple[int, int]:
    """Give the new (stopped) process its own everything; return the zygote's ends
    of its socket and output pipe. ``cgroups``: the zygote's open descriptors of
    the ``tasks`` (or ``cgroup.procs``) files of the cgroups it joins.

    Its descriptors are known in advance: the first call closes all but the
    template's 0 to 3, so each new one is the lowest free number.
    """
    # PROT_READ|WRITE|EXEC, MAP_PRIVATE|ANONYMOUS: the runner, its table and data.
    scratch = tracee.check("mmap", 0, SCRATCH, 7, 0x22, -1, 0)
    first = Batch(scratch)
    first.call("close_range", 4, (1 << 32) - 1, 0)
    # Its /proc files belong to root until it is dumpable: it must own its maps.
    first.call("prctl", PR_SET_DUMPABLE, 1)
    first.write_file(b"/proc/self/setgroups", b"deny", 4)
    first.write_file(b"/proc/self/uid_map", "{0} {0} 1".format(uid).encode(), 4)
    first.write_file(b"/proc/self/gid_map", "{0} {0} 1".format(gid).encode(), 4)
    proc = first.string(b"proc")
    first.call("mount", proc, first.string(b"/proc"), proc, MS_NOSUID | MS_NODEV | MS_NOEXEC, 0)
    _own_tmp(first, tmp_mb)
    _loopback_up(first)
    # A socket (4, 5) and an output pipe (6, 7): the zygote takes 5 and 6.
    first.call("socketpair", AF_UNIX, SOCK_STREAM, 0, first.put(b"\0" * 8))
    first.call("pipe2", first.put(b"\0" * 8), O_CLOEXEC)
    first.run(tracee)
    ours = _take(tracee.pid, 5), _take(tracee.pid, 6)
    try:
        with socket.socket(fileno=os.dup(ours[0])) as channel:
            if cgroups:
                socket.send_fds(channel, [b"c"], cgroups)
        second = Batch(scratch)
        for fd, target in ((7, 1), (7, 2), (4, 3)):
            second.call("dup2", fd, target)
        second.call("close_range", 4, (1 << 32) - 1, 0)
        if cgroups:
            _join_cgroups(second, len(cgroups))
        second.call("unshare", CLONE_NEWCGROUP)  # rooted at its own cgroup, as any sandbox
        # Every capability the new user namespace granted: the bounding set first
        # (dropping from it needs CAP_SETPCAP), then the rest.
        for capability in range(last_cap + 1):
            second.call("prctl", PR_CAPBSET_DROP, capability)
        header = second.put(struct.pack("=Ii", 0x20080522, 0))  # _LINUX_CAPABILITY_VERSION_3
        second.call("capset", header, second.put(b"\0" * 24))
        second.call("prctl", PR_SET_DUMPABLE, 0)
        second.run(tracee)
        tracee.check("munmap", scratch, SCRATCH)
    except BaseException:
        for fd in ours:
            os.close(fd)
        raise
    return ours


def _take(pid: int, fd: int) -> int:
    """A copy of the process's descriptor ``fd`` (pidfd_getfd)."""
    pidfd = _syscall("pidfd_open", pid, 0)
    try:
        return _syscall("pidfd_getfd", pidfd, fd, 0)
    finally:
        os.close(pidfd)


def _join_cgroups(batch: Batch, count: int) -> None:
    """The process joins its cgroups itself, writing "0" to descriptors the zygote
    opened and sent over its socket (received as 4, 5, ...): moving another process
    (a pid written from outside) takes the kernel's global threadgroup lock, which
    waits for an RCU grace period after an idle spell (6 to 17 ms measured here);
    moving oneself does not. The files were opened by root, whose credentials the
    kernel checks."""
    control = batch.put(b"\0" * (16 + 8 * ((4 * count + 7) // 8)))  # CMSG_SPACE
    iovec = batch.put(struct.pack("=QQ", batch.put(b"\0"), 1))
    header = struct.pack("=QI4xQQQQi4x", 0, 0, iovec, 1, control, 16 + 4 * count, 0)
    batch.call("recvmsg", 3, batch.put(header), MSG_CMSG_CLOEXEC)
    zero = batch.put(b"0")
    for fd in range(4, 4 + count):
        batch.call("write", fd, zero, 1)
    batch.call("close_range", 4, (1 << 32) - 1, 0)


def _own_tmp(batch: Batch, tmp_mb: int) -> None:
    """/tmp: the template's (what Init wrote) under a writable tmpfs of its own."""
    tmp = batch.string(b"/tmp")
    batch.call("openat", AT_FDCWD, tmp, O_PATH | O_DIRECTORY | O_CLOEXEC)  # 4
    tmpfs = batch.string(b"tmpfs")
    options = batch.string("size={0}m,mode=1777".format(tmp_mb).encode())
    batch.call("mount", tmpfs, tmp, tmpfs, MS_NOSUID | MS_NODEV, options)
    upper, work = batch.string(b"/tmp/.upper"), batch.string(b"/tmp/.work")
    batch.call("mkdirat", AT_FDCWD, upper, 0o700)
    batch.call("chmod", upper, 0o1777)  # what the merged /tmp shows (umask aside)
    batch.call("mkdirat", AT_FDCWD, work, 0o700)
    overlay = b"lowerdir=/proc/self/fd/4,upperdir=/tmp/.upper,workdir=/tmp/.work,userxattr"
    batch.call(
        "mount",
        batch.string(b"ember"),
        tmp,
        batch.string(b"overlay"),
        MS_NOSUID | MS_NODEV,
        batch.string(overlay),
    )
    batch.call("close", 4)


def _loopback_up(batch: Batch) -> None:
    request = batch.put(struct.pack("16sH22s", b"lo", LOOPBACK_FLAGS, b""))
    batch.call("socket", AF_INET, SOCK_DGRAM, 0)  # 4
    batch.call("ioctl", 4, SIOCSIFFLAGS, request)
    batch.call("close", 4)


def _syscall(name: str, *args: int) -> int:
    result = _libc.syscall(ctypes.c_long(SYS[name]), *[ctypes.c_long(a) for a in args])
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, "{0}: {1}".format(name, os.strerror(err)))
    return int(result)


def release(tracee: Tracee) -> None:
    """Let the new process go: it returns from the template's read with ``RESTORED``,
    its seccomp filter in force again once it is no longer traced."""
    regs = Regs.from_buffer_copy(tracee.base)
    tracee.poke(regs.rsi, RESTORED)  # read()'s buffer
    regs.rax = len(RESTORED)
    regs.orig_rax = (1 << 64) - 1
    _set_regs(tracee.pid, regs)
    tracee.close()
    if tracee.everywhere:
        os.sched_setaffinity(tracee.pid, tracee.everywhere)
    _ptrace(PTRACE_DETACH, tracee.pid)
