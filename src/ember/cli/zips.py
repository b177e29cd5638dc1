"""Deterministic zips: the same files give the same bytes, so CodeSha256 tracks content."""

from __future__ import annotations

import io
import stat
import zipfile
from collections.abc import Iterable
from pathlib import Path

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def deterministic_zip(entries: Iterable[tuple[str, Path]]) -> bytes:
    """Zip ``(name in the archive, file)`` pairs in the order given, in memory.

    Timestamps and permissions are fixed (only the executable bit is kept),
    so the digest changes only when names or contents do.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for name, path in entries:
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            executable = path.stat().st_mode & stat.S_IXUSR
            info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
            zf.writestr(info, path.read_bytes())
    return buffer.getvalue()
