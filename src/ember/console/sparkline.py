"""Sparklines as inline SVG, drawn on the server: the functions table needs no script."""

from __future__ import annotations

from markupsafe import Markup

WIDTH, HEIGHT = 120, 24


def svg(values: list[int], width: int = WIDTH, height: int = HEIGHT) -> Markup:
    """A polyline of ``values`` (oldest first) scaled to the box; flat at the bottom
    when every value is 0. The numbers are the only input, so the markup is safe."""
    top = max(values, default=0) or 1
    step = width / max(1, len(values) - 1)
    points = " ".join(
        f"{index * step:.1f},{height - 1 - (value / top) * (height - 2):.1f}"
        for index, value in enumerate(values)
    )
    return Markup(
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
        f' role="img" aria-label="invocations per minute, last hour">'
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{points}"/>'
        "</svg>"
    )


__all__ = ["svg"]
