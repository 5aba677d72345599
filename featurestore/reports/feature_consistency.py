"""One feature's consistency: its served values against the replay, counted, classed, by hour.

``summarize_feature`` takes the logged rows and the replayed table of each ``as_of`` group
(``consistency.py``), compares the rows that served the feature (``compare.py``), classes
every mismatch (``classes.py``) and returns a ``FeatureConsistency``. A transformed feature's
mismatches are classed by its inputs, compared on the same rows; the input that gave a row
its class also gives that row's times (a stale-online row's lag is its input's lag), and its
examples say which input it was (``classed_by``) and show every input and request field.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from featurestore.columns import timestamp_columns
from featurestore.reports.classes import (
    ALWAYS_ALERT,
    CLASSES,
    MATCHED,
    NO_TIME,
    STALE_ONLINE,
    FeatureKind,
    RowTimes,
    classify,
    classify_by_inputs,
    status_codes,
    times_us,
)
from featurestore.reports.compare import compare
from featurestore.reports.stats import difference_quantiles, smape
from featurestore.reports.thresholds import Level, Thresholds

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

US_PER_HOUR = 3_600_000_000


@dataclass(frozen=True)
class InputSpec:
    """One input feature of a transformed feature: its log (and replay) column, its view,
    how its own mismatches are classed, and its view's ttl."""

    column: str
    view: str
    kind: FeatureKind
    ttl_us: int | None


@dataclass(frozen=True)
class ClassSummary:
    """The mismatches of one class: how many, a few example rows, and for stale-online the
    lag (offline winner's event time - served event time: how much older the served row is
    than the one training uses), median and p95 in seconds, and the newest event time served
    among those rows (online held nothing newer: where materialization stood)."""

    name: str
    count: int
    examples: tuple[dict[str, Any], ...]
    lag_median_s: float | None = None
    lag_p95_s: float | None = None
    served_up_to: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "class": self.name,
            "count": self.count,
            "lag_median_s": self.lag_median_s,
            "lag_p95_s": self.lag_p95_s,
            "served_up_to": self.served_up_to.isoformat() if self.served_up_to else None,
            "examples": list(self.examples),
        }


@dataclass(frozen=True)
class HourBucket:
    """The rows of one UTC hour (by request time): compared, matched, mismatches per class."""

    hour: datetime
    compared: int
    matched: int
    classes: dict[str, int]


@dataclass(frozen=True)
class FeatureConsistency:
    """One feature's counts (``compared = matched + offline_null + online_null + mismatch``,
    ``both_null`` being part of ``matched``), numeric summaries, classes and hours."""

    ref: str
    column: str
    dtype: str
    kind: FeatureKind
    compared: int
    matched: int
    both_null: int
    offline_null: int
    online_null: int
    mismatch: int
    smape: float | None
    diff_quantiles: dict[str, float]
    classes: tuple[ClassSummary, ...]
    hourly: tuple[HourBucket, ...]
    level: Level
    reasons: tuple[str, ...]

    @property
    def match_rate(self) -> float:
        return self.matched / self.compared if self.compared else 1.0

    def class_count(self, name: str) -> int:
        return next((c.count for c in self.classes if c.name == name), 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "feature": self.ref,
            "column": self.column,
            "dtype": self.dtype,
            "kind": self.kind.value,
            "compared": self.compared,
            "matched": self.matched,
            "match_rate": self.match_rate,
            "both_null": self.both_null,
            "offline_null": self.offline_null,
            "online_null": self.online_null,
            "mismatch": self.mismatch,
            "smape": self.smape,
            "diff_quantiles": self.diff_quantiles,
            "classes": [c.to_json() for c in self.classes],
            "hourly": [
                {"hour": b.hour.isoformat(), "compared": b.compared, "matched": b.matched}
                | {"classes": b.classes}
                for b in self.hourly
            ],
            "level": self.level.label,
            "reasons": list(self.reasons),
        }


def summarize_feature(
    column: str,
    ref: str,
    kind: FeatureKind,
    parts: Sequence[dict[str, Any]],
    thresholds: Thresholds,
    examples: int,
    keys: Sequence[str],
) -> FeatureConsistency:
    """Compare and class one feature over every replay group (``parts``: ``log``, the logged
    rows; ``offline``, their replay in the same order; ``ttl_us``, the view's ttl; for a
    transformed feature ``inputs``, its ``InputSpec``s, and ``request_fields``)."""
    import numpy as np

    view = ref.split(":")[0]
    pieces = [_compare_part(column, view, kind, p, examples, keys) for p in parts]
    stack = {name: np.concatenate([p[name] for p in pieces]) for name in pieces[0] if name != "ex"}
    codes, matched = stack["codes"], stack["matched"]
    online_null, offline_null = stack["online_null"], stack["offline_null"]
    counts = np.bincount(codes.astype(np.int64) + 1, minlength=len(CLASSES) + 1)[1:]
    stale = codes == CLASSES.index(STALE_ONLINE)
    lags = stack["lag"][stale] / 1e6
    classes = []
    for i, name in enumerate(CLASSES):
        if counts[i]:
            found = tuple([e for p in pieces for e in p["ex"].get(name, [])][:examples])
            summary = ClassSummary(name, int(counts[i]), found)
            if name == STALE_ONLINE:
                newest = int(stack["served_event"][stale].max())
                summary = ClassSummary(
                    name,
                    summary.count,
                    found,
                    float(np.median(lags)),
                    float(np.quantile(lags, 0.95)),
                    datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=newest),
                )
            classes.append(summary)
    numbers = "offline_number" in stack
    dtype = parts[0]["log"].schema.field(column).type
    level, reasons = _judge(int(matched.sum()), matched.size, classes, thresholds)
    return FeatureConsistency(
        ref=ref,
        column=column,
        dtype=str(dtype),
        kind=kind,
        compared=int(matched.size),
        matched=int(matched.sum()),
        both_null=int((online_null & offline_null).sum()),
        offline_null=int((offline_null & ~online_null).sum()),
        online_null=int((online_null & ~offline_null).sum()),
        mismatch=int((~online_null & ~offline_null & ~matched).sum()),
        smape=smape(stack["offline_number"], stack["online_number"]) if numbers else None,
        diff_quantiles=difference_quantiles(stack["offline_number"], stack["online_number"])
        if numbers
        else {},
        classes=tuple(classes),
        hourly=_hourly(stack["request"], matched, codes),
        level=level,
        reasons=tuple(reasons),
    )


def _compare_part(
    column: str,
    view: str,
    kind: FeatureKind,
    part: dict[str, Any],
    examples: int,
    keys: Sequence[str],
) -> dict[str, Any]:
    import numpy as np
    import pyarrow.compute as pc

    # only the columns this feature (and a transformed one's inputs) needs, before any take
    read = [(column, view), *((i.column, i.view) for i in part.get("inputs", ()))]
    suffixes = ("", "__status", "__event_ts", "__created_ts")
    logged = [name + s for name, _ in read for s in suffixes]
    fields = list(part.get("request_fields", ()))
    replayed = [c for name, v in read for c in (name, *timestamp_columns(v))]
    have = set(part["offline"].column_names)  # an on-demand view has no winner's times
    log = part["log"].select(
        list(dict.fromkeys(["request_id", "request_ts", *keys, *fields, *logged]))
    )
    offline = part["offline"].select(list(dict.fromkeys(c for c in replayed if c in have)))
    if log[f"{column}__status"].null_count:  # only the rows that served it are compared
        served = pc.is_valid(log[f"{column}__status"]).to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(served)
        log, offline = log.take(rows), offline.take(rows)
    values = compare(log[column], offline[column])
    if kind is FeatureKind.TRANSFORMED:
        inputs = [(i, _times(log, offline, i.column, i.view, i.kind)) for i in part["inputs"]]
        input_codes = [
            classify(~compare(log[i.column], offline[i.column]).matched, t, i.ttl_us)
            for i, t in inputs
        ]
        codes = classify_by_inputs(~values.matched, input_codes)
        by = np.full(codes.shape, -1, np.int64)  # the input that gave each row its class
        for j in reversed(range(len(inputs))):
            by[(codes != MATCHED) & (input_codes[j] == codes)] = j
        request = times_us(log["request_ts"])
        served_event = np.full(codes.shape, NO_TIME, np.int64)
        lag = np.zeros(codes.shape, np.int64)
        for j, (_, t) in enumerate(inputs):
            served_event = np.where(by == j, t.served_event, served_event)
            lag = np.where(by == j, t.offline_event - t.served_event, lag)
        shown = _transformed_examples(
            codes, by, log, offline, column, part, input_codes, examples, keys
        )
    else:
        times = _times(log, offline, column, view, kind)
        codes = classify(~values.matched, times, part["ttl_us"])
        request, served_event = times.request, times.served_event
        lag = times.offline_event - times.served_event
        event, created = timestamp_columns(view)
        shown = _examples(codes, log, offline, column, event, created, examples, keys)
    found: dict[str, Any] = {
        "codes": codes,
        "matched": values.matched,
        "online_null": values.online_null,
        "offline_null": values.offline_null,
        "request": request,
        "served_event": served_event,
        "lag": lag,
        "ex": shown,
    }
    if values.online_number is not None:
        found["online_number"] = values.online_number
        found["offline_number"] = values.offline_number
    return found


def _times(log: pa.Table, offline: pa.Table, column: str, view: str, kind: FeatureKind) -> RowTimes:
    """The rules' inputs for one plain or aggregated feature column (``classes.RowTimes``)."""
    event, created = timestamp_columns(view)
    times = RowTimes(
        request=times_us(log["request_ts"]),
        status=status_codes(log[f"{column}__status"]),
        served_event=times_us(log[f"{column}__event_ts"]),
        served_created=times_us(log[f"{column}__created_ts"]),
        offline_event=times_us(offline[event]),
        offline_created=times_us(offline[created]),
    )
    return times.as_aggregated() if kind is FeatureKind.AGGREGATED else times


def _examples(
    codes: np.ndarray,
    log: pa.Table,
    offline: pa.Table,
    column: str,
    event: str,
    created: str,
    limit: int,
    keys: Sequence[str],
) -> dict[str, list[dict[str, Any]]]:
    """The first ``limit`` rows of each class, as served and as replayed."""
    import numpy as np

    out: dict[str, list[dict[str, Any]]] = {}
    for i, name in enumerate(CLASSES):
        for row in np.flatnonzero(codes == i)[:limit].tolist():
            at = functools.partial(_cell, row=row)

            out.setdefault(name, []).append(
                {
                    "request_id": at(log, "request_id"),
                    "request_ts": at(log, "request_ts"),
                    "keys": {k: at(log, k) for k in keys},
                    "served": {
                        "value": at(log, column),
                        "status": at(log, f"{column}__status"),
                        "event_ts": at(log, f"{column}__event_ts"),
                        "created_ts": at(log, f"{column}__created_ts"),
                    },
                    "offline": {
                        "value": at(offline, column),
                        "event_ts": at(offline, event),
                        "created_ts": at(offline, created),
                    },
                }
            )
    return out


def _transformed_examples(
    codes: np.ndarray,
    by: np.ndarray,
    log: pa.Table,
    offline: pa.Table,
    column: str,
    part: dict[str, Any],
    input_codes: list[np.ndarray],
    limit: int,
    keys: Sequence[str],
) -> dict[str, list[dict[str, Any]]]:
    """A transformed feature's first ``limit`` rows of each class: served and replayed
    values (the times shown are those of the input that gave the class, ``classed_by``),
    the request fields and every input on both sides with its own class."""
    import numpy as np

    inputs: Sequence[InputSpec] = part["inputs"]
    out: dict[str, list[dict[str, Any]]] = {}
    for i, name in enumerate(CLASSES):
        for row in np.flatnonzero(codes == i)[:limit].tolist():
            at = functools.partial(_cell, row=row)

            j = int(by[row])
            decided = inputs[j] if j >= 0 else None
            event = timestamp_columns(decided.view)[0] if decided else None
            aggregated = decided is not None and decided.kind is FeatureKind.AGGREGATED
            out.setdefault(name, []).append(
                {
                    "request_id": at(log, "request_id"),
                    "request_ts": at(log, "request_ts"),
                    "keys": {k: at(log, k) for k in keys},
                    "request": {f: at(log, f) for f in part["request_fields"]},
                    "classed_by": decided.column if decided else None,
                    "served": {
                        "value": at(log, column),
                        "status": at(log, f"{column}__status"),
                        "event_ts": at(log, f"{decided.column}__event_ts") if decided else None,
                        "created_ts": None,
                    },
                    "offline": {
                        "value": at(offline, column),
                        # an aggregated input's offline window ends at the request time
                        "event_ts": at(log, "request_ts")
                        if aggregated
                        else (at(offline, event) if event else None),
                        "created_ts": None,
                    },
                    "inputs": {
                        spec.column: {
                            "served": at(log, spec.column),
                            "status": at(log, f"{spec.column}__status"),
                            "offline": at(offline, spec.column),
                            "class": CLASSES[c[row]] if c[row] != MATCHED else None,
                        }
                        for spec, c in zip(inputs, input_codes, strict=True)
                    },
                }
            )
    return out


def _hourly(request: np.ndarray, matched: np.ndarray, codes: np.ndarray) -> tuple[HourBucket, ...]:
    import numpy as np

    hours, index = np.unique(request // US_PER_HOUR, return_inverse=True)
    compared = np.bincount(index, minlength=hours.size)
    good = np.bincount(index, weights=matched, minlength=hours.size)
    per_class = {
        name: np.bincount(index[codes == i], minlength=hours.size) for i, name in enumerate(CLASSES)
    }
    return tuple(
        HourBucket(
            hour=datetime.fromtimestamp(int(h) * 3600, UTC),
            compared=int(compared[j]),
            matched=int(good[j]),
            classes={name: int(c[j]) for name, c in per_class.items() if c[j]},
        )
        for j, h in enumerate(hours.tolist())
    )


def _judge(
    matched: int, compared: int, classes: list[ClassSummary], thresholds: Thresholds
) -> tuple[Level, list[str]]:
    rate = matched / compared if compared else 1.0
    level = thresholds.level("match_rate", rate)
    reasons = []
    if level is not Level.OK:
        bound = thresholds.bound("match_rate", level)
        reasons.append(f"exact-match rate {rate:.2%} is below match_rate_{level.label} {bound:.2%}")
    for summary in classes:
        if summary.name in ALWAYS_ALERT:
            level = Level.ALERT
            what = "leakage" if summary.name == CLASSES[0] else "a bug or corruption"
            reasons.append(f"{summary.count:,} {summary.name} rows ({what}: always an alert)")
    return level, reasons


def _cell(table: pa.Table, name: str, row: int) -> Any:
    """One cell of an example row, as JSON takes it (times in ISO-8601)."""
    value = table[name][row].as_py()
    return value.isoformat() if isinstance(value, datetime) else value
