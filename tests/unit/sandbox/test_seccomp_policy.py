"""The seccomp allowlist: every name is a real call, and the policy compiles.

``isolate`` skips a name the current architecture lacks, so a misspelt name
would silently be refused everywhere; these tests catch it. What the filter
does to a function is tested through the real server in tests/security.
"""

from __future__ import annotations

import pyseccomp

from ember.sandbox import isolate

ARCHES = (pyseccomp.Arch.X86_64, pyseccomp.Arch.AARCH64)


def known(name: str) -> bool:
    """Whether libseccomp knows ``name`` on x86_64 or aarch64."""
    for arch in ARCHES:
        try:
            if pyseccomp.resolve_syscall(arch, name) >= 0:
                return True
        except (OSError, ValueError, RuntimeError):
            continue
    return name in isolate.NEWER_SYSCALLS


def test_every_listed_call_exists_on_a_supported_architecture() -> None:
    names = isolate.ALLOWED_SYSCALLS + isolate.NOT_IMPLEMENTED_SYSCALLS
    assert [name for name in names if not known(name)] == []


def test_no_call_is_both_allowed_and_refused() -> None:
    allowed = set(isolate.ALLOWED_SYSCALLS)
    assert allowed.isdisjoint(isolate.NOT_IMPLEMENTED_SYSCALLS)
    # Allowed only with their arguments checked, never outright.
    assert allowed.isdisjoint({"clone", "socket", "personality", "mknod", "mknodat"})
    assert len(allowed) == len(isolate.ALLOWED_SYSCALLS)


def test_the_families_refused_on_purpose_are_not_on_the_list() -> None:
    refused = {
        "io_uring_setup", "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount",
        "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "unshare", "setns",
        "clone3", "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
        "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "userfaultfd",
        "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
        "reboot", "swapon", "swapoff", "syslog", "acct", "quotactl", "settimeofday",
        "clock_settime", "clock_adjtime", "adjtimex", "sethostname", "setdomainname", "iopl",
        "ioperm", "open_by_handle_at", "name_to_handle_at", "fanotify_init", "fanotify_mark",
        "lookup_dcookie", "memfd_secret", "vhangup", "mbind", "set_mempolicy", "move_pages",
        "migrate_pages", "process_madvise", "io_uring_enter", "io_uring_register",
    }  # fmt: skip
    assert refused.isdisjoint(isolate.ALLOWED_SYSCALLS)


def test_the_policy_compiles_to_a_bpf_program() -> None:
    compiled = isolate.build_filter(pyseccomp)
    assert isinstance(compiled, isolate.CompiledFilter)
