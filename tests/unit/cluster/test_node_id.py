"""The node id: made once per data directory, the same ever after."""

from __future__ import annotations

from pathlib import Path

from ember.storage.node import FILE_NAME, node_id


def test_a_data_dir_keeps_its_node_id_and_another_gets_its_own(tmp_path: Path) -> None:
    first = node_id(tmp_path / "a")
    assert first and node_id(tmp_path / "a") == first
    assert (tmp_path / "a" / FILE_NAME).read_text().strip() == first
    assert node_id(tmp_path / "b") != first
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [FILE_NAME]
