"""What a function or layer zip may hold, judged once at upload.

A package is refused when the worker could not unpack it safely or at all:
a name that is absolute, climbs with ``..``, holds a NUL or a backslash, or
is longer than a filesystem allows; a member that is neither a regular file,
a directory nor a symlink (a device, a FIFO, a socket); a path that is both a
file and a directory (which includes a file "under" a symlink); or a symlink
that resolves outside the package. Lambda keeps symlinks that stay inside
the package (``node_modules/.bin``, versioned ``.so`` names), so ember does
too. Symlinks are resolved through the zip's own symlinks, as the kernel will
resolve them once unpacked, so ``a -> .`` followed by ``b -> a/../x`` is
caught although ``b``'s target looks harmless on its own.
"""

from __future__ import annotations

import posixpath
import stat
import zipfile
from collections.abc import Iterable

# Linux's NAME_MAX and PATH_MAX: a longer name cannot be created at all.
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096
# The kernel's limit on symlinks followed while resolving one path (ELOOP).
_MAX_HOPS = 40


class UnsafeZip(Exception):
    """The zip cannot be unpacked as a package; the message says which member and why."""


def file_type(member: zipfile.ZipInfo) -> int:
    """The member's ``S_IFMT`` bits (0 when the zip was not made on Unix and says none)."""
    if member.filename.endswith("/"):
        return stat.S_IFDIR
    kind = stat.S_IFMT(member.external_attr >> 16)
    return kind or stat.S_IFREG


def judge(archive: zipfile.ZipFile) -> None:
    """Raise ``UnsafeZip`` unless every member of ``archive`` can be unpacked safely."""
    files: dict[str, zipfile.ZipInfo] = {}
    directories: set[str] = set()
    links: dict[str, str] = {}
    for member in archive.infolist():
        path = _checked_name(member.filename)
        kind = file_type(member)
        if path == ".":
            if kind == stat.S_IFDIR:
                continue  # "./": the package root itself
            raise UnsafeZip(f"unsafe member name {member.filename!r}")
        if kind == stat.S_IFDIR:
            directories.add(path)
        elif kind in (stat.S_IFREG, stat.S_IFLNK):
            files[path] = member
        else:
            raise UnsafeZip(f"{member.filename!r} is not a regular file, directory or symlink")
        if kind == stat.S_IFLNK:
            links[path] = _link_target(archive, member)
        directories.update(_parents(path))
    both = sorted(set(files) & directories)
    if both:
        raise UnsafeZip(f"{both[0]!r} is both a file and a directory")
    for path in links:
        _resolve(path, links)


def _checked_name(name: str) -> str:
    """``name`` without its trailing slash, refused if it is unsafe or too long."""
    if not name or name.startswith("/") or "\\" in name or "\x00" in name:
        raise UnsafeZip(f"unsafe member name {name!r}")
    path = name.rstrip("/")
    parts = path.split("/")
    if ".." in parts:
        raise UnsafeZip(f"member name {name!r} climbs out of the package")
    if len(path.encode()) > MAX_PATH_BYTES or any(
        len(part.encode()) > MAX_NAME_BYTES for part in parts
    ):
        raise UnsafeZip(f"member name {name[:64]!r}... is too long")
    return posixpath.normpath(path or ".")


def _parents(path: str) -> Iterable[str]:
    parent = posixpath.dirname(path)
    while parent:
        yield parent
        parent = posixpath.dirname(parent)


def _link_target(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> str:
    if member.file_size > MAX_PATH_BYTES:
        raise UnsafeZip(f"symlink {member.filename!r} has a target longer than a path")
    try:
        target = archive.read(member).decode()
    except UnicodeDecodeError:
        raise UnsafeZip(f"symlink {member.filename!r} has a target that is not UTF-8") from None
    if not target or "\x00" in target or target.startswith("/"):
        raise UnsafeZip(f"symlink {member.filename!r} points outside the package: {target!r}")
    return target


def _resolve(path: str, links: dict[str, str]) -> None:
    """Follow the symlink at ``path`` as the kernel would; refuse any step outside the root."""
    pending = links[path].split("/")
    stack = path.split("/")[:-1]
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                raise UnsafeZip(f"symlink {path!r} resolves outside the package")
            stack.pop()
            continue
        stack.append(part)
        here = "/".join(stack)
        if here in links:
            hops += 1
            if hops > _MAX_HOPS:
                raise UnsafeZip(f"symlink {path!r} loops")
            stack.pop()
            pending = links[here].split("/") + pending
