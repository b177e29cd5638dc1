"""The key every package store uses: a package's hex SHA-256."""

from __future__ import annotations

_HEX = frozenset("0123456789abcdef")


def checked(digest: str) -> str:
    """``digest`` itself when it is 64 lowercase hex digits; else KeyError.

    No store holds a package under any other name, so a malformed digest is a
    missing package; checking it first keeps it out of paths, SQL and object keys.
    """
    if len(digest) != 64 or not _HEX.issuperset(digest):
        raise KeyError(digest)
    return digest
