"""The upload-time judgement of a package zip (control/zips.py, via validation.code)."""

from __future__ import annotations

import base64
import io
import stat
import zipfile

import pytest

from ember.control import validation
from ember.errors import InvalidParameterValue

UNZIP = "Could not unzip uploaded file. Please check your file, then try to upload again."
Member = tuple[str, str, int]  # name, content (a symlink's target), S_IFMT


def build(*members: Member) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content, kind in members:
            info = zipfile.ZipInfo(name)
            info.create_system = 3  # Unix: the mode bits are read
            info.external_attr = (kind | 0o755) << 16
            archive.writestr(info, content)
    return buffer.getvalue()


def upload(data: bytes) -> None:
    with validation.code({"ZipFile": base64.b64encode(data).decode()}):
        pass


def file(name: str, text: str = "x") -> Member:
    return (name, text, stat.S_IFREG)


def link(name: str, target: str) -> Member:
    return (name, target, stat.S_IFLNK)


REFUSED = {
    "parent": [file("../evil.py")],
    "nested parent": [file("lib/../../evil.py")],
    "absolute": [file("/etc/cron.d/evil")],
    "backslash": [file("..\\evil.py")],
    "fifo": [("pipe", "", stat.S_IFIFO)],
    "char device": [("tty", "", stat.S_IFCHR)],
    "socket": [("sock", "", stat.S_IFSOCK)],
    "file and directory": [file("lib"), file("lib/mod.py")],
    "directory then file": [("lib/", "", stat.S_IFDIR), file("lib")],
    "file under a symlink": [link("out", "lib"), file("lib/a.py"), file("out/b.py")],
    "long component": [file("a" * 256)],
    "long path": [file("/".join(["d" * 200] * 21) + "/f")],
    "absolute symlink": [link("passwd", "/etc/passwd")],
    "symlink climbing out": [link("up", "../../etc/passwd")],
    "symlink through symlinks": [link("here", "."), link("sneak", "here/../x")],
    "symlink loop": [link("a", "b"), link("b", "a/x")],
    "empty symlink": [link("nothing", "")],
}

ACCEPTED = {
    "plain": [file("app.py"), file("lib/util.py")],
    "dot slash root": [("./", "", stat.S_IFDIR), file("app.py")],
    "symlink inside": [file("lib/libfoo.so.1"), link("lib/libfoo.so", "libfoo.so.1")],
    "symlink up but inside": [file("data/x"), link("bin/x", "../data/x")],
    "symlink to a directory": [file("pkg/m.py"), link("alias", "pkg")],
    "dangling symlink inside": [link("later", "not-yet")],
    "longest name": [file("a" * 255)],
}


@pytest.mark.parametrize("members", REFUSED.values(), ids=REFUSED.keys())
def test_unsafe_zips_are_refused_with_lambdas_message(members: list[Member]) -> None:
    with pytest.raises(InvalidParameterValue) as refused:
        upload(build(*members))
    assert str(refused.value) == UNZIP


@pytest.mark.parametrize("members", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_safe_zips_are_accepted(members: list[Member]) -> None:
    upload(build(*members))


def test_a_zip_without_unix_modes_is_plain_files() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("app.py")
        info.create_system = 0  # made on Windows: no mode bits at all
        archive.writestr(info, "x")
    upload(buffer.getvalue())
