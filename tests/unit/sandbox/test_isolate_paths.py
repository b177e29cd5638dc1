"""``runtime_paths``: the fewest directories to bind so the runtime finds everything it needs.

Each returned path is bound read-only into the sandbox's root, so the result
must cover every existing input (after symlinks), hold no path twice and no
path inside another (a nested bind would be redundant), and never invent one.
"""

from __future__ import annotations

import os
from pathlib import Path

from ember.sandbox.isolate import runtime_paths


def tree(root: Path, *paths: str) -> dict[str, str]:
    """Create directories under ``root``; name -> absolute path."""
    made = {}
    for path in paths:
        (root / path).mkdir(parents=True, exist_ok=True)
        made[path] = str(root / path)
    return made


def covers(kept: list[str], path: str) -> bool:
    real = os.path.realpath(path)
    return any(real == k or real.startswith(k.rstrip("/") + "/") for k in kept)


def test_a_directory_inside_another_is_dropped(tmp_path: Path) -> None:
    d = tree(tmp_path, "prefix", "prefix/lib/python3.11", "prefix/lib/python3.11/site-packages")
    kept = runtime_paths([d["prefix/lib/python3.11/site-packages"], d["prefix"]])
    assert kept == [os.path.realpath(d["prefix"])]


def test_a_sibling_sharing_a_name_prefix_is_not_inside(tmp_path: Path) -> None:
    d = tree(tmp_path, "venv", "venv-other", "venv/lib")
    kept = runtime_paths([d["venv-other"], d["venv/lib"], d["venv"]])
    assert kept == sorted(os.path.realpath(d[name]) for name in ("venv", "venv-other"))


def test_missing_and_empty_paths_are_ignored(tmp_path: Path) -> None:
    d = tree(tmp_path, "lib")
    kept = runtime_paths(["", str(tmp_path / "absent"), str(tmp_path / "absent/deeper"), d["lib"]])
    assert kept == [os.path.realpath(d["lib"])]
    assert runtime_paths([]) == []
    assert runtime_paths(["", str(tmp_path / "absent")]) == []


def test_symlinks_are_resolved_to_what_must_be_bound(tmp_path: Path) -> None:
    d = tree(tmp_path, "real/versions/3.11", "elsewhere")
    link = tmp_path / "elsewhere" / "python"
    link.symlink_to(d["real/versions/3.11"])
    kept = runtime_paths([str(link)])
    # The bind needs the real directory: a symlink's target would be missing inside.
    assert kept == [os.path.realpath(d["real/versions/3.11"])]
    assert str(link) not in kept


def test_a_symlink_into_a_kept_directory_adds_nothing(tmp_path: Path) -> None:
    d = tree(tmp_path, "prefix", "prefix/lib")
    link = tmp_path / "shortcut"
    link.symlink_to(d["prefix/lib"])
    assert runtime_paths([d["prefix"], str(link)]) == [os.path.realpath(d["prefix"])]


def test_duplicates_and_trailing_slashes_collapse(tmp_path: Path) -> None:
    d = tree(tmp_path, "a")
    kept = runtime_paths([d["a"], d["a"] + "/", d["a"] + "/.", d["a"]])
    assert kept == [os.path.realpath(d["a"])]


def test_the_root_covers_everything() -> None:
    assert runtime_paths(["/usr", "/", "/etc"]) == ["/"]


def test_files_are_kept_as_they_are(tmp_path: Path) -> None:
    d = tree(tmp_path, "lib", "bin")
    interpreter = Path(d["bin"]) / "python3"
    interpreter.write_text("")
    kept = runtime_paths([str(interpreter), d["lib"]])
    assert kept == sorted(os.path.realpath(p) for p in (str(interpreter), d["lib"]))


def test_the_result_is_sorted_minimal_and_covers_every_input(tmp_path: Path) -> None:
    names = ["z", "z/y", "m/n/o", "m/n", "b", "bb", "b/c/d", "q/r"]
    d = tree(tmp_path, *names)
    inputs = [d[name] for name in reversed(names)]
    kept = runtime_paths(inputs)
    assert kept == sorted(kept)
    assert len(set(kept)) == len(kept)
    assert all(covers(kept, path) for path in inputs)
    for path in kept:  # none is inside another
        assert not covers([k for k in kept if k != path], path), path
    assert set(kept) <= {os.path.realpath(path) for path in inputs}  # nothing invented
