"""Reading numbers out of request text, as Lambda does: ASCII digits only.

``str.isdigit()`` also holds for "²" or "١٢", which ``int()`` refuses (a 500 where a
400 was due) or reads as another number; a fuzzed query or path found it.
"""

from __future__ import annotations


def is_decimal(text: str) -> bool:
    """Whether ``text`` is one or more ASCII digits (``int(text)`` then succeeds)."""
    return text.isascii() and text.isdigit()


__all__ = ["is_decimal"]
