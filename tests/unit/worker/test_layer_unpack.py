"""Unit tests of the layer cache: merge order, read-only result, and unsafe zips refused."""

from __future__ import annotations

import asyncio
import io
import os
import stat
import zipfile
from pathlib import Path

import pytest

from ember.worker.layers import LayerCache, UnsafeLayer, cache_key, extract_into, merge


def zip_of(files: dict[str, str], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def test_later_layers_win_and_the_result_is_read_only(tmp_path: Path) -> None:
    target = tmp_path / "merged"
    merge(
        [
            zip_of({"python/a.py": "first", "python/only_first.py": "1"}),
            zip_of({"python/a.py": "second", "bin/tool": "#!/bin/sh\n"}),
        ],
        target,
    )
    assert (target / "python/a.py").read_text() == "second"
    assert (target / "python/only_first.py").read_text() == "1"
    assert not os.access(target / "python", os.W_OK) or os.geteuid() == 0
    assert stat.S_IMODE((target / "python/a.py").stat().st_mode) == 0o444
    assert stat.S_IMODE((target / "python").stat().st_mode) == 0o555


@pytest.mark.parametrize(
    "name", ["../escape.py", "python/../../escape.py", "/etc/passwd", "python\\..\\x.py"]
)
def test_members_outside_the_directory_are_refused(tmp_path: Path, name: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(UnsafeLayer):
        extract_into(zip_of({name: "x"}), root)
    assert not (tmp_path / "escape.py").exists()


def test_symlinks_pointing_out_are_refused_and_inside_ones_kept(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for target in ("/etc", "../../outside", "../.."):
        with pytest.raises(UnsafeLayer):
            extract_into(zip_of({}, {"lib/link": target}), root)
    extract_into(zip_of({"lib/libx.so.1": "elf"}, {"lib/libx.so": "libx.so.1"}), root)
    assert os.readlink(root / "lib/libx.so") == "libx.so.1"
    assert (root / "lib/libx.so").read_text() == "elf"


def test_a_later_layer_cannot_write_through_an_earlier_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    # An earlier layer may hold a link to a directory inside the root only...
    extract_into(zip_of({"data/file": "x"}, {"alias": "data"}), root)
    extract_into(zip_of({"alias/new": "y"}), root)
    assert (root / "data/new").read_text() == "y"
    # ...and a file replacing a link replaces the link, never its target.
    extract_into(zip_of({"alias": "plain"}), root)
    assert (root / "alias").read_text() == "plain" and (root / "data/file").exists()


def test_the_cache_unpacks_once_per_digest_list(tmp_path: Path) -> None:
    fetched: list[str] = []
    blobs = {"a" * 64: zip_of({"python/m.py": "a"}), "b" * 64: zip_of({"python/m.py": "b"})}

    async def fetch(digest: str) -> bytes:
        fetched.append(digest)
        return blobs[digest]

    async def scenario() -> None:
        cache = LayerCache(tmp_path / "layers", fetch)
        first = await cache.directory(["a" * 64, "b" * 64])
        again = await cache.directory(["a" * 64, "b" * 64])
        reversed_order = await cache.directory(["b" * 64, "a" * 64])
        assert first == again != reversed_order
        assert (first / "python/m.py").read_text() == "b"
        assert (reversed_order / "python/m.py").read_text() == "a"
        assert first.name == cache_key(["a" * 64, "b" * 64])

    asyncio.run(scenario())
    assert len(fetched) == 4


def test_a_function_package_keeps_its_inside_symlinks(tmp_path: Path) -> None:
    from ember.worker.packages import _unpack

    target = tmp_path / "code"
    _unpack(zip_of({"lib/libx.so.1": "elf"}, {"lib/libx.so": "libx.so.1"}), target)
    assert os.readlink(target / "lib/libx.so") == "libx.so.1"
    assert (target / "lib/libx.so").read_text() == "elf"


def test_a_function_package_that_escapes_is_not_unpacked(tmp_path: Path) -> None:
    from ember.worker.packages import UnsafePackage, _unpack

    with pytest.raises(UnsafePackage):
        _unpack(zip_of({"ok.py": "x"}, {"out": "../../etc"}), tmp_path / "code")
    assert not (tmp_path / "code").exists()
