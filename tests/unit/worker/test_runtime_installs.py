"""Installing a Node major from an npm tarball: the version picked, the sha512 check, the
unpacking that never leaves a half install (``ember.worker.runtime_installs``)."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from ember.errors import RuntimeInstallFailed
from ember.worker import runtime_installs


def tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def test_the_newest_release_of_the_major_is_chosen_never_a_prerelease() -> None:
    document = {
        "versions": {
            "22.9.0": {"dist": {"tarball": "a"}},
            "22.12.0": {"dist": {"tarball": "b"}},
            "23.0.0": {"dist": {"tarball": "c"}},
            "22.13.0-rc.1": {"dist": {"tarball": "d"}},
        }
    }
    assert runtime_installs.newest_of_major(document, "22") == ("22.12.0", {"tarball": "b"})
    with pytest.raises(RuntimeInstallFailed, match="no node-linux-"):
        runtime_installs.newest_of_major(document, "24")


def test_a_tarball_whose_digest_differs_is_refused() -> None:
    data = tarball({"package/bin/node": b"#!/bin/sh\n"})
    runtime_installs.verify(data, integrity(data))
    with pytest.raises(RuntimeInstallFailed, match="sha512"):
        runtime_installs.verify(data + b"x", integrity(data))
    with pytest.raises(RuntimeInstallFailed, match="no sha512"):
        runtime_installs.verify(data, "sha1-abc")


def test_unpacking_replaces_an_install_whole(tmp_path: Path) -> None:
    runtime_installs.unpack(
        tarball({"package/bin/node": b"old", "package/old.txt": b"1"}), tmp_path, "nodejs22.x"
    )
    runtime_installs.unpack(tarball({"package/bin/node": b"new"}), tmp_path, "nodejs22.x")
    install = tmp_path / "nodejs22.x"
    assert (install / "bin" / "node").read_bytes() == b"new"
    assert not (install / "old.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nodejs22.x"]  # no leftovers


def test_a_package_without_node_or_escaping_its_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuntimeInstallFailed, match="no bin/node"):
        runtime_installs.unpack(tarball({"package/README": b"x"}), tmp_path, "nodejs22.x")
    with pytest.raises(RuntimeInstallFailed, match="cannot be unpacked"):
        runtime_installs.unpack(tarball({"../escape": b"x"}), tmp_path, "nodejs22.x")
    assert not (tmp_path.parent / "escape").exists()
    assert list(tmp_path.iterdir()) == []  # nothing installed, nothing left behind
