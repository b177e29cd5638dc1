"""The id of one node: stable per data directory, made once, kept across restarts.

In a cluster it names this node's queue leases (the PostgreSQL queue's
``owner``) and its change records (``Database.node_id``), and /health shows it.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

FILE_NAME = "node-id"


def node_id(data_dir: Path) -> str:
    """The id kept in ``data_dir/node-id``, created (atomically) on first use."""
    path = data_dir / FILE_NAME
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    fresh = uuid.uuid4().hex[:16]
    temporary = path.with_name(f".{FILE_NAME}.{os.getpid()}")
    temporary.write_text(fresh + "\n")
    try:
        os.link(temporary, path)  # fails if another process made it first: theirs wins
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return path.read_text().strip()
