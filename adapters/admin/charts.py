"""Inline SVG bar charts for the admin page: drawn on the server, nothing to load or build."""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 130
LEFT, BOTTOM, TOP = 56, 18, 18


def day_label(day: int) -> str:
    """A day since the epoch as YYYY-MM-DD (UTC)."""
    return (datetime.date(1970, 1, 1) + datetime.timedelta(days=day)).isoformat()


def bar_chart(
    title: str, days: Sequence[int], values: Sequence[int], *, unit: str, color: str
) -> Markup:
    """One bar per day under the title, the largest value on the axis, a tooltip per bar, and a
    label under the last day and every 7th before it."""
    count = max(1, len(values))
    peak = max(values, default=0) or 1
    slot = (WIDTH - LEFT) / count
    plot = HEIGHT - BOTTOM - TOP
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<text x="{LEFT + 4}" y="13" class="caption">{escape(title)}</text>',
        f'<line x1="{LEFT}" y1="{TOP + plot}" x2="{WIDTH}" y2="{TOP + plot}" stroke="#999"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 8}" text-anchor="end" class="axis">{peak:,}</text>',
        f'<text x="{LEFT - 6}" y="{TOP + plot}" text-anchor="end" class="axis">0</text>',
    ]
    for index, (day, value) in enumerate(zip(days, values, strict=True)):
        height = plot * value / peak
        x = LEFT + index * slot
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{TOP + plot - height:.1f}" width="{max(1.0, slot - 2):.1f}"'
            f' height="{height:.1f}" fill="{color}"><title>{day_label(day)}: {value:,} {unit}'
            "</title></rect>"
        )
        if (count - 1 - index) % 7 == 0:
            last = index == count - 1  # flush right, so it is not cut at the edge
            parts.append(
                f'<text x="{x + slot if last else x + slot / 2:.1f}" y="{HEIGHT - 4}" '
                f'text-anchor="{"end" if last else "middle"}" '
                f'class="axis">{day_label(day)[5:]}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))
