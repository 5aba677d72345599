"""The reports' tables, as rows (shared by the terminal and the HTML page) and as rich tables.

Each ``*_rows(report)`` returns ``(header, [(cells, level or None), ...])``; ``show(report,
console)`` prints the report's tables and one summary line. Text is printed as it is, never
read as rich markup or emoji codes: it holds served values and names (``[/x]`` would raise,
``stats:label:`` would print a label emoji).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from featurestore.reports.classes import ALWAYS_ALERT, CLASSES
from featurestore.reports.thresholds import Level

if TYPE_CHECKING:
    from rich.console import Console

    from featurestore.reports.consistency import ConsistencyReport
    from featurestore.reports.performance import PerformanceReport
    from featurestore.reports.skew import SkewReport

    Row = tuple[Sequence[Any], Level | None]
    Rows = tuple[list[str], list[Row]]

COLORS = {Level.OK: "green", Level.WARN: "yellow", Level.ALERT: "red"}


def _f(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None or value != value else format(value, spec)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def consistency_rows(report: ConsistencyReport, wide: bool = True) -> Rows:
    """Per feature; ``wide`` (the HTML page) adds both-null, classes, sMAPE and quantiles."""
    header = ["feature", "compared", "match rate"]
    if wide:
        header += ["both null", "offline null", "online null", "mismatch", "classes", "sMAPE"]
        header += ["p5 / p50 / p95 of offline - online"]
    else:
        header += ["off null", "on null", "mismatch"]
    rows: list[Row] = []
    for f in report.features:
        q = f.diff_quantiles
        spread = " / ".join(_f(q.get(k), ".4g") for k in ("p5", "p50", "p95")) if q else "-"
        classes = ", ".join(f"{c.name} {c.count:,}" for c in f.classes) or "-"
        cells = [f.ref, f"{f.compared:,}", f"{f.match_rate:.2%}"]
        cells += [f"{f.both_null:,}"] if wide else []
        cells += [f"{f.offline_null:,}", f"{f.online_null:,}", f"{f.mismatch:,}"]
        cells += [classes, _f(f.smape), spread] if wide else []
        rows.append(([*cells, f.level.label], f.level))
    return [*header, "level"], rows


def class_rows(report: ConsistencyReport, wide: bool = True) -> Rows:
    """Per class, over every feature: rows, features, stale-online lags; ``wide``: an example."""
    header = ["class", "rows", "features", "median lag", "p95 lag", "served up to"]
    header += ["example"] if wide else []
    rows: list[Row] = []
    for name in CLASSES:
        found = [(f, c) for f in report.features for c in f.classes if c.name == name]
        if not found:
            continue
        lagged = [c for _, c in found if c.lag_median_s is not None]
        worst = max(lagged, key=lambda c: c.count) if lagged else None
        cells = [name, f"{sum(c.count for _, c in found):,}", str(len(found))]
        cells += [_duration(worst.lag_median_s if worst else None)]
        cells += [_duration(worst.lag_p95_s if worst else None)]
        newest = max((c.served_up_to for _, c in found if c.served_up_to), default=None)
        cells += [f"{newest:%Y-%m-%d %H:%M}" if newest else "-"]
        if wide:
            example = next((c.examples[0] for _, c in found if c.examples), None)
            cells.append(_example(example) if example else "-")
        rows.append((cells, Level.ALERT if name in ALWAYS_ALERT else None))
    return header, rows


def _example(example: dict[str, Any]) -> str:
    served, offline = example["served"], example["offline"]
    return (
        f"{example['keys']} at {example['request_ts']}: served {served['value']!r} "
        f"({served['status']}, event {served['event_ts']}), offline {offline['value']!r} "
        f"(event {offline['event_ts']})"
    )


def skew_rows(report: SkewReport, wide: bool = True) -> Rows:
    """Per feature; ``wide`` (the HTML page) adds rows, KS, means, unseen share and why."""
    header = ["feature"] + (["kind", "rows (ref / served)"] if wide else [])
    header += ["PSI", "JS"] + (["KS (p)"] if wide else []) + ["null rate"]
    header += ["mean (ref -> served)", "unseen"] if wide else []
    rows: list[Row] = []
    for f in report.features:
        ks = "-"
        if f.ks_statistic is not None:
            ks = f"{_f(f.ks_statistic, '.3f')} ({_f(f.ks_pvalue, '.2g')})"
        mean = "-"
        if f.reference_mean is not None:
            mean = f"{_f(f.reference_mean, '.4g')} -> {_f(f.served_mean, '.4g')}"
        cells = [f.ref] + ([f.kind, f"{f.reference_rows:,} / {f.served_rows:,}"] if wide else [])
        cells += [f"{f.psi:.3f}", _f(f.js, ".3f")] + ([ks] if wide else [])
        cells += [f"{f.reference_null_rate:.1%} -> {f.served_null_rate:.1%}"]
        if wide:
            cells += [mean, "-" if f.unseen_share is None else f"{f.unseen_share:.1%}"]
        cells.append(f.level.label)
        if wide:
            cells.append("; ".join(f.reasons))
        rows.append((cells, f.level))
    return [*header, "level", *(["why"] if wide else [])], rows


def schema_rows(report: SkewReport) -> Rows:
    return ["finding", "feature", "level", "what"], [
        ([s.kind, s.feature or "-", s.level.label, s.message], s.level) for s in report.schema
    ]


def performance_rows(report: PerformanceReport) -> Rows:
    header = ["", "rows", "base rate", "mean prediction", "AUC", "log loss", "ECE"]
    rows: list[Row] = []
    v = report.validation
    if v:
        rows.append(
            (
                [
                    "validation",
                    "-",
                    _f(v.get("valid_base_rate")),
                    "-",
                    _f(v.get("valid_auc")),
                    _f(v.get("valid_log_loss")),
                    "-",
                ],
                None,
            )
        )
    for s in (report.overall, *report.days):
        rows.append(
            (
                [
                    s.name,
                    f"{s.rows:,}",
                    _f(s.base_rate),
                    _f(s.mean_prediction),
                    _f(s.auc),
                    _f(s.log_loss),
                    _f(s.ece),
                ],
                report.level if s is report.overall else None,
            )
        )
    return header, rows


def _print_table(console: Console, title: str, rows: Rows) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    header, body = rows
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for i, name in enumerate(header):
        # names are never cut (people grep them); numbers wrap only when they must
        table.add_column(name, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for cells, level in body:
        table.add_row(*(Text(str(c)) for c in cells), style=COLORS[level] if level else None)
    console.print(table)


def _say(console: Console, text: str) -> None:
    """Print ``text`` as it is (module docstring)."""
    console.print(text, markup=False, emoji=False)


def show(report: ConsistencyReport | SkewReport | PerformanceReport, console: Console) -> None:
    """Print the report's tables and its verdict."""
    from featurestore.reports.consistency import ConsistencyReport
    from featurestore.reports.skew import SkewReport

    if isinstance(report, ConsistencyReport):
        for group in report.groups:
            _say(console, f"replayed {group.rows:,} rows with as_of={group.as_of}: {group.reason}")
        _print_table(console, "consistency per feature", consistency_rows(report, wide=False))
        if any(f.classes for f in report.features):
            table = class_rows(report, wide=False)
            _print_table(console, "mismatches by class (decision order)", table)
            for name in CLASSES:  # one example per class
                found = [(f.ref, c) for f in report.features for c in f.classes if c.name == name]
                if found and found[0][1].examples:
                    ref, summary = found[0]
                    _say(console, f"e.g. {name}: {ref} {_example(summary.examples[0])}")
        verdict = (
            f"consistency score {report.score:.4%} ({report.matched:,} of {report.compared:,} "
            f"values match exactly)"
        )
    elif isinstance(report, SkewReport):
        _say(console, f"reference: {report.reference}")
        _say(console, f"served: {report.served} ({report.served_rows:,} rows)")
        _print_table(console, "skew per feature", skew_rows(report, wide=False))
        for feature in report.features:
            if feature.reasons:
                _say(console, f"{feature.ref}: {'; '.join(feature.reasons)}")
        if report.schema:
            _print_table(console, "schema skew", schema_rows(report))
        flagged = report.flagged()
        verdict = f"flagged: {', '.join(flagged)}" if flagged else "no feature flagged"
    else:
        _say(console, f"model {report.model}; labels {report.labels} matched {report.matched_by}")
        _say(
            console,
            f"{report.labels_rows:,} labels: {report.unmatched:,} without a logged prediction, "
            f"{report.null_labels:,} null",
        )
        _print_table(console, "model performance", performance_rows(report))
        verdict = "; ".join(report.reasons) or "within the thresholds"
    for note in getattr(report, "notes", ()):
        _say(console, f"note: {note}")
    from rich.text import Text

    label = (report.level.label.upper(), f"bold {COLORS[report.level]}")
    console.print(Text.assemble(label, f": {verdict}"))
