"""One self-contained HTML page per report: inline CSS and SVG, no script, nothing fetched.

``render(report)`` returns the page for a consistency, skew or performance report:
a summary, the tables the terminal shows, and the plots (per feature, reference against
served bin shares; the consistency classes per hour; calibration). It opens offline.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from featurestore.reports.classes import CLASSES
from featurestore.reports.svg import (
    MATCHED_COLOR,
    PALETTE,
    REFERENCE_COLOR,
    SERVED_COLOR,
    grouped_bars,
    stacked_bars,
    xy_chart,
)
from featurestore.reports.thresholds import Level

if TYPE_CHECKING:
    from featurestore.reports.consistency import ConsistencyReport
    from featurestore.reports.performance import PerformanceReport
    from featurestore.reports.skew import SkewReport

    Report = ConsistencyReport | SkewReport | PerformanceReport

NUMERIC = re.compile(r"^[-+]?[\d.,]*\d[\d.,%]*( [/>-]+ [-+]?[\d.,%]+)*$|^-$")
STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
.meta{color:#555;font-size:13px} .level{display:inline-block;padding:2px 10px;border-radius:10px;
color:#fff;font-weight:bold} .ok{background:#54a24b} .warn{background:#e5a100} .alert{background:#d62728}
table{border-collapse:collapse;font-size:13px;margin:6px 0} th,td{border:1px solid #ccc;
padding:4px 8px;text-align:right} th{background:#f2f2f2} td.l,th.l{text-align:left}
tr.warn td{background:#fff6dd} tr.alert td{background:#fde2e2}
.plots{display:flex;flex-wrap:wrap;gap:12px} .plot{border:1px solid #eee}
pre{background:#f7f7f7;padding:8px;font-size:12px;overflow-x:auto}
"""


def render(report: Report) -> str:
    """The HTML page of ``report``."""
    from featurestore.reports.consistency import ConsistencyReport
    from featurestore.reports.skew import SkewReport

    if isinstance(report, ConsistencyReport):
        return _consistency(report)
    if isinstance(report, SkewReport):
        return _skew(report)
    return _performance(report)


def _page(title: str, level: Level, meta: Iterable[str], body: Iterable[str]) -> str:
    lines = "".join(f"<div class='meta'>{escape(m)}</div>" for m in meta)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(title)} <span class='level {level.label}'>{level.label}</span></h1>"
        f"{lines}{''.join(body)}</body></html>"
    )


def _table(header: Sequence[str], rows: Iterable[tuple[Sequence[Any], Level | None]]) -> str:
    """A table: numbers right-aligned, words left; a row's level colors it."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for cells, level in rows:
        tds = "".join(
            f"<td class='{'' if _numeric(str(c)) else 'l'}'>{escape(str(c))}</td>" for c in cells
        )
        body.append(f"<tr class='{level.label if level else ''}'>{tds}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _numeric(text: str) -> bool:
    """Numbers (and '-') are right-aligned, words left."""
    return bool(NUMERIC.match(text))


def _fmt(value: float | None, spec: str = ".4f") -> str:
    if value is None or value != value:
        return "-"
    return format(value, spec)


def _consistency(report: ConsistencyReport) -> str:
    from featurestore.reports.terminal import class_rows, consistency_rows

    body = [
        f"<h2>Overall: {report.score:.4%} exact matches ({report.matched:,} of "
        f"{report.compared:,} values)</h2>",
        _table(
            ["replay as_of", "rows", "why"],
            (((g.as_of, f"{g.rows:,}", g.reason), None) for g in report.groups),
        ),
        "<h2>Features</h2>",
        _table(*consistency_rows(report)),
        "<h2>Mismatch classes</h2>",
        _table(*class_rows(report)),
    ]
    hourly = report.hourly()
    if hourly:
        labels = [h.strftime("%m-%d %H:00") for h, *_ in hourly]
        stacks = [("matched", [m for _, _, m, _ in hourly], MATCHED_COLOR)]
        stacks += [
            (name, [k.get(name, 0) for *_, k in hourly], PALETTE[i])
            for i, name in enumerate(CLASSES)
            if any(k.get(name, 0) for *_, k in hourly)
        ]
        body += [
            "<h2>Compared values per hour (UTC), by class</h2>",
            f"<div class='plot'>{stacked_bars('values per hour by class', labels, stacks)}</div>",
        ]
    examples = [(f.ref, c) for f in report.features for c in f.classes if c.examples]
    if examples:
        body.append("<h2>Examples</h2>")
        import json

        for ref, summary in examples:
            text = json.dumps(list(summary.examples), indent=1, default=str)
            body.append(f"<h3>{escape(ref)}: {escape(summary.name)}</h3><pre>{escape(text)}</pre>")
    body += [f"<p class='meta'>{escape(n)}</p>" for n in report.notes]
    return _page(
        "Consistency report",
        report.level,
        [f"feature log {report.log_path}, {report.window.describe()}: {report.rows:,} rows"],
        body,
    )


def _skew(report: SkewReport) -> str:
    from featurestore.reports.terminal import schema_rows, skew_rows

    body = ["<h2>Features</h2>", _table(*skew_rows(report))]
    if report.schema:
        body += ["<h2>Schema</h2>", _table(*schema_rows(report))]
    body.append("<h2>Distributions (share of rows per bin)</h2><div class='plots'>")
    for f in report.features:
        ref_share, srv_share = f.bins.shares()
        chart = grouped_bars(
            f"{f.ref} (PSI {f.psi:.3f}, {f.level.label})",
            f.bins.labels,
            [
                ("reference", ref_share.tolist(), REFERENCE_COLOR),
                ("served", srv_share.tolist(), SERVED_COLOR),
            ],
        )
        body.append(f"<div class='plot'>{chart}</div>")
    body.append("</div>")
    body += [f"<p class='meta'>{escape(n)}</p>" for n in report.notes]
    return _page(
        "Skew report",
        report.level,
        [
            f"reference: {report.reference}",
            f"served: {report.served} ({report.served_rows:,} rows)",
        ],
        body,
    )


def _performance(report: PerformanceReport) -> str:
    from featurestore.reports.terminal import performance_rows

    points = [
        (
            b.mean_prediction,
            b.positive_rate,
            f"{b.count:,} predictions in [{b.low:.1f}, {b.high:.1f})",
        )
        for b in report.calibration
    ]
    body = [
        "<h2>Overall and by day (UTC)</h2>",
        _table(*performance_rows(report)),
        "<h2>Calibration</h2>",
        _table(
            ["predicted", "count", "mean prediction", "positive rate"],
            (
                (
                    (
                        f"[{b.low:.1f}, {b.high:.1f})",
                        f"{b.count:,}",
                        _fmt(b.mean_prediction),
                        _fmt(b.positive_rate),
                    ),
                    None,
                )
                for b in report.calibration
            ),
        ),
        f"<div class='plot'>{xy_chart('positive rate by mean prediction', points, True)}</div>",
    ]
    body += [f"<p>{escape(r)}</p>" for r in report.reasons]
    return _page(
        "Model performance report",
        report.level,
        [
            f"model {report.model}; labels {report.labels} matched {report.matched_by}",
            f"{report.labels_rows:,} labels: {report.unmatched:,} without a logged prediction, "
            f"{report.null_labels:,} null; window {report.window.describe()}",
        ],
        body,
    )
