"""SnapStart's runtime hooks, as AWS's ``snapshot-restore-py`` package names them.

Present in every Python sandbox (the zygote puts it in ``sys.modules``), as
Lambda's managed Python runtimes include the package: a function imports
``snapshot_restore_py`` unchanged. Hooks registered during Init run only for
a SnapStart version: the before-snapshot hooks in the template once Init is
done, latest registered first (AWS's order); the after-restore hooks in each
new sandbox started from it, in the order registered.

Standard library only, Python 3.9 syntax (it runs under the function's
interpreter).
"""

from __future__ import annotations

from typing import Any, Callable

_before_snapshot: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []
_after_restore: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []


def register_before_snapshot(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``func(*args, **kwargs)`` before the snapshot; usable as a decorator."""
    _before_snapshot.append((func, args, kwargs))
    return func


def register_after_restore(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``func(*args, **kwargs)`` in each sandbox restored; usable as a decorator."""
    _after_restore.append((func, args, kwargs))
    return func


def get_before_snapshot() -> list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]]:
    return _before_snapshot


def get_after_restore() -> list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]]:
    return _after_restore
