"""SnapStart's check that a template is parked (``restore._parked_regs``), on register
sets as ptrace reads them: blocked in its read, about to enter it again, or elsewhere."""

from __future__ import annotations

import pytest

from ember.sandbox import restore

SYSCALL = b"\x0f\x05"
AT = 0x7000  # where the template's syscall instruction is


class Memory:
    """The two bytes of the template's memory the check reads."""

    def peek(self, addr: int, size: int) -> bytes:
        return SYSCALL if (addr, size) == (AT, 2) else b"\x90" * size


def regs(**values: int) -> restore.Regs:
    found = restore.Regs()
    found.rdi, found.rsi = 3, 0x5000
    for name, value in values.items():
        setattr(found, name, value)
    return found


def blocked() -> restore.Regs:
    """Inside read(3, ...), interrupted: the kernel would restart it."""
    return regs(rip=AT + 2, orig_rax=restore.SYS["read"], rax=-512 & restore.NO_SYSCALL)


def test_a_template_blocked_in_its_read_is_parked() -> None:
    found = blocked()
    restore._parked_regs(Memory(), found)  # type: ignore[arg-type]
    assert (found.rip, found.orig_rax) == (AT + 2, restore.SYS["read"])


def test_one_put_back_before_its_read_and_not_run_since_is_parked_as_if_blocked() -> None:
    # What _back_into_read leaves when the template is interrupted again before it runs.
    found = blocked()
    found.rip, found.rax, found.orig_rax = AT, restore.SYS["read"], restore.NO_SYSCALL
    restore._parked_regs(Memory(), found)  # type: ignore[arg-type]
    expected = blocked()
    assert (found.rip, found.rax, found.orig_rax, found.rdi, found.rsi) == (
        expected.rip,
        expected.rax,
        expected.orig_rax,
        expected.rdi,
        expected.rsi,
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"orig_rax": restore.SYS["write"]},  # in another system call
        {"rax": 0},  # its read returned: it ran on
        {"rdi": 4},  # a read of another descriptor
        {"rip": AT + 0x40},  # somewhere else
    ],
)
def test_anything_else_is_refused(changes: dict[str, int]) -> None:
    found = blocked()
    for name, value in changes.items():
        setattr(found, name, value)
    with pytest.raises(restore.RestoreError, match="not parked"):
        restore._parked_regs(Memory(), found)  # type: ignore[arg-type]


def test_about_to_enter_another_call_is_refused() -> None:
    found = regs(rip=AT, rax=restore.SYS["write"], orig_rax=restore.NO_SYSCALL)
    with pytest.raises(restore.RestoreError, match="not parked"):
        restore._parked_regs(Memory(), found)  # type: ignore[arg-type]
