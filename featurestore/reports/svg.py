"""Inline SVG charts for the HTML reports: no library, no script, nothing fetched.

Three shapes cover the reports: grouped bars (a feature's bin shares, reference against
served), stacked bars (consistency classes per hour) and an x-y chart with a diagonal
(calibration). Each returns one ``<svg>`` element as text, sized in pixels, with a title
and its series named in a legend.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

REFERENCE_COLOR = "#4c78a8"
SERVED_COLOR = "#f58518"
MATCHED_COLOR = "#54a24b"
PALETTE = ("#e45756", "#f58518", "#b279a2", "#d62728", "#9d755d", "#72b7b2", "#bab0ac")
WIDTH, HEIGHT = 560, 230
LEFT, RIGHT, BOTTOM = 46, 12, 58


def _legend(legend: Sequence[tuple[str, str]]) -> tuple[list[str], int]:
    """Legend items left to right under the title, wrapping; the elements and the plot's top."""
    parts, x, y = [], float(LEFT), 32
    for name, color in legend:
        width = 18 + 6.5 * len(name)
        if x + width > WIDTH - RIGHT and x > LEFT:
            x, y = LEFT, y + 15
        parts.append(
            f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{color}"/>'
            f'<text x="{x + 13}" y="{y}" font-size="11">{escape(name)}</text>'
        )
        x += width + 8
    return parts, y + 14


def _frame(
    title: str, legend: Sequence[tuple[str, str]], body: list[str], ymax: float, top: int,
    percent: bool,
) -> str:  # fmt: skip
    plot_h = HEIGHT - top - BOTTOM
    items, _ = _legend(legend)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
        f'<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
        *items,
    ]
    for i in range(5):  # horizontal grid with its scale
        y = top + plot_h - plot_h * i / 4
        label = f"{ymax * i / 4:.0%}" if percent else f"{ymax * i / 4:,.0f}"
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{LEFT - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{label}</text>'
        )
    parts += body
    parts.append("</svg>")
    return "".join(parts)


def _x_labels(labels: Sequence[str], slot: float) -> list[str]:
    step = max(1, len(labels) // 16)  # at most ~16 labels, the others skipped
    out = []
    for i, label in enumerate(labels):
        if i % step:
            continue
        x = LEFT + slot * (i + 0.5)
        y = HEIGHT - BOTTOM + 10
        text = label if len(label) <= 14 else label[:13] + "…"
        out.append(
            f'<text x="{x:.1f}" y="{y}" font-size="10" text-anchor="end" '
            f'transform="rotate(-35 {x:.1f} {y})">{escape(text)}</text>'
        )
    return out


def grouped_bars(
    title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float], str]]
) -> str:
    """Bars side by side per label, one per series (name, values, color)."""
    ymax = max([v for _, values, _ in series for v in values] + [1e-9])
    top = _legend([(n, c) for n, _, c in series])[1]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - top - BOTTOM
    slot = plot_w / max(len(labels), 1)
    bar = slot * 0.8 / max(len(series), 1)
    body = []
    for s, (_, values, color) in enumerate(series):
        for i, value in enumerate(values):
            h = plot_h * value / ymax
            x = LEFT + slot * i + slot * 0.1 + bar * s
            body.append(
                f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{color}"><title>{escape(labels[i])}: {value:.4g}'
                "</title></rect>"
            )
    body += _x_labels(labels, slot)
    return _frame(title, [(n, c) for n, _, c in series], body, ymax, top, percent=True)


def stacked_bars(
    title: str, labels: Sequence[str], stacks: Sequence[tuple[str, Sequence[float], str]]
) -> str:
    """One bar per label, the stacks (name, values, color) piled bottom-up."""
    totals = [sum(values[i] for _, values, _ in stacks) for i in range(len(labels))]
    ymax = max([*totals, 1e-9])
    top = _legend([(n, c) for n, _, c in stacks])[1]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - top - BOTTOM
    slot = plot_w / max(len(labels), 1)
    body = []
    for i, label in enumerate(labels):
        base = 0.0
        for name, values, color in stacks:
            if not values[i]:
                continue
            h = plot_h * values[i] / ymax
            y = top + plot_h - plot_h * base / ymax - h
            body.append(
                f'<rect x="{LEFT + slot * i + slot * 0.1:.1f}" y="{y:.1f}" '
                f'width="{slot * 0.8:.1f}" height="{h:.1f}" fill="{color}">'
                f"<title>{escape(label)} {escape(name)}: {values[i]:,.0f}</title></rect>"
            )
            base += values[i]
    body += _x_labels(labels, slot)
    return _frame(title, [(n, c) for n, _, c in stacks], body, ymax, top, percent=False)


def xy_chart(title: str, points: Sequence[tuple[float, float, str]], diagonal: bool) -> str:
    """Points (x, y, tooltip) on [0, 1] x [0, 1], joined by a line, with the diagonal."""
    top = _legend([("served", SERVED_COLOR)])[1]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - top - BOTTOM

    def at(x: float, y: float) -> tuple[float, float]:
        return LEFT + plot_w * x, top + plot_h - plot_h * y

    body = []
    if diagonal:
        (x0, y0), (x1, y1) = at(0, 0), at(1, 1)
        body.append(
            f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#999" stroke-dasharray="4"/>'
        )
    path = " ".join(f"{'M' if i == 0 else 'L'}{at(x, y)[0]:.1f},{at(x, y)[1]:.1f}"
                    for i, (x, y, _) in enumerate(points))  # fmt: skip
    if points:
        body.append(f'<path d="{path}" fill="none" stroke="{SERVED_COLOR}" stroke-width="2"/>')
    for x, y, tip in points:
        cx, cy = at(x, y)
        body.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{SERVED_COLOR}">'
            f"<title>{escape(tip)}</title></circle>"
        )
    for i in range(5):  # the x axis: predicted probability
        x, y = at(i / 4, 0)
        body.append(
            f'<text x="{x:.1f}" y="{y + 14:.1f}" font-size="10" text-anchor="middle">'
            f"{i / 4:.0%}</text>"
        )
    return _frame(title, [("served", SERVED_COLOR)], body, 1.0, top, percent=True)
