"""The performance report: the model's quality on real prediction traffic, once labels arrive.

``performance_report(config, labels, model=...)`` joins ground truth to the predictions the
feature log recorded (``/predict`` rows with a prediction), then reports AUC, log loss,
base rate, mean prediction, expected calibration error and a calibration table, overall and
per UTC day of the request, against the validation figures in the model's metadata.

Labels (a Parquet or CSV file, a pandas DataFrame or an Arrow table) hold the label column
(``label=``, default: the model's label; 0 and 1, or booleans) and either:

- ``request_id`` (the id ``/predict`` returned): matched to the logged rows of that request,
  also by every join-key column the labels share with the log (a request may score several
  entities); or
- the join keys and ``event_timestamp``: matched to the logged prediction for the same keys
  whose ``request_ts`` is nearest to ``event_timestamp``, at most ``match_within`` away
  (default 1 hour; the later one on a tie).

A label matched to no prediction is counted and left out; when none matches, a
``ReportError`` says what was looked for. Rows with a null label are left out and counted.
With ``model=``, only that model's predictions (its sha256) are used; without it, the log
must hold one model's. Judged overall (days are shown, not judged): validation AUC minus the
served AUC against ``auc_drop_warn``/``auc_drop_alert``, and the served log loss's relative
rise over the validation log loss against ``log_loss_rise_*``; fewer than ``min_rows``
labeled predictions are not judged.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestore.errors import ReportError, RetrievalError
from featurestore.feature_log import META_COLUMNS, PREDICT, PREDICTION
from featurestore.reports.served import Window, feature_columns, read_window
from featurestore.reports.stats import (
    CalibrationBin,
    auc,
    calibration,
    expected_calibration_error,
    log_loss,
)
from featurestore.reports.thresholds import Level, Thresholds

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from featurestore.config import RepoConfig
    from featurestore.models.artifact import ModelArtifact

REQUEST_ID = "request_id"
EVENT_TIMESTAMP = "event_timestamp"


@dataclass(frozen=True)
class Slice:
    """The figures of a set of labeled predictions (a day, or all of them)."""

    name: str
    rows: int
    positives: int
    mean_prediction: float
    auc: float
    log_loss: float
    ece: float

    @property
    def base_rate(self) -> float:
        return self.positives / self.rows if self.rows else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rows": self.rows,
            "positives": self.positives,
            "base_rate": self.base_rate,
            "mean_prediction": self.mean_prediction,
            "auc": self.auc,
            "log_loss": self.log_loss,
            "ece": self.ece,
        }


@dataclass(frozen=True)
class PerformanceReport:
    """The result ``performance_report`` returns; the CLI renders it."""

    model: str
    labels: str
    matched_by: str
    window: Window
    labels_rows: int
    unmatched: int
    null_labels: int
    overall: Slice
    days: tuple[Slice, ...]
    calibration: tuple[CalibrationBin, ...]
    validation: dict[str, float]
    level: Level
    reasons: tuple[str, ...]
    thresholds: Thresholds
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> dict[str, Any]:
        return {
            "report": "performance",
            "created_at": self.created_at.isoformat(),
            "model": self.model,
            "labels": self.labels,
            "matched_by": self.matched_by,
            "window": self.window.to_json(),
            "labels_rows": self.labels_rows,
            "unmatched": self.unmatched,
            "null_labels": self.null_labels,
            "overall": self.overall.to_json(),
            "days": [d.to_json() for d in self.days],
            "calibration": [vars(b) for b in self.calibration],
            "validation": self.validation,
            "level": self.level.label,
            "reasons": list(self.reasons),
            "thresholds": dict(self.thresholds.values),
        }


def performance_report(
    config: RepoConfig,
    labels: str | os.PathLike[str] | Any,
    *,
    model: ModelArtifact | str | os.PathLike[str] | None = None,
    label: str | None = None,
    window: Window | None = None,
    match_within: timedelta = timedelta(hours=1),
) -> PerformanceReport:
    """Join labels to logged predictions and measure the model (module docstring)."""

    from featurestore.models.artifact import load

    window = window or Window()
    thresholds = Thresholds.from_config(config.reports.thresholds)
    artifact = load(model) if isinstance(model, (str, os.PathLike)) else model
    label = label or (artifact.metadata.label if artifact else None)
    if label is None:
        raise ReportError("name the label column (--label), or pass the model (--model)")
    predictions, name = _predictions(config, window, artifact)
    truth, where = _read_labels(labels, label, _string_columns(predictions))
    _check_key_types(truth, predictions, label, where)
    joined, how = _join(truth, predictions, label, match_within)
    if len(joined) == 0:
        span = (
            f"{predictions['request_ts'].min()} .. {predictions['request_ts'].max()}"
            if len(predictions)
            else "none"
        )
        raise ReportError(
            f"none of the {len(truth):,} labels in {where} matches a logged prediction "
            f"({how}); the log's predictions {window.describe()} span {span}: check the ids "
            "or keys, or widen the window"
        )
    null_labels = int(joined["y"].isna().sum())
    joined = joined[joined["y"].notna()]
    y = joined["y"].astype(float).to_numpy()
    p = joined["prediction"].astype(float).to_numpy()
    days = joined["request_ts"].dt.strftime("%Y-%m-%d").to_numpy()
    overall = _slice("overall", y, p)
    validation = {
        k: float(v)
        for k, v in (artifact.metadata.metrics.items() if artifact else ())
        if k in ("valid_auc", "valid_log_loss", "valid_base_rate")
    }
    level, reasons = _judge(overall, validation, thresholds)
    return PerformanceReport(
        model=name,
        labels=where,
        matched_by=how,
        window=window,
        labels_rows=len(truth),
        unmatched=len(truth) - int(joined["__row"].nunique()) - null_labels,
        null_labels=null_labels,
        overall=overall,
        days=tuple(_slice(d, y[days == d], p[days == d]) for d in sorted(set(days.tolist()))),
        calibration=tuple(calibration(y, p)),
        validation=validation,
        level=level,
        reasons=tuple(reasons),
        thresholds=thresholds,
    )


def _read_labels(labels: Any, label: str, strings: list[str]) -> tuple[Any, str]:
    """Labels as pandas with a ``__row`` number, and how to name them in messages; a CSV's
    ``strings`` columns (the log's string keys) are read as text ("007" stays "007")."""
    import pandas as pd
    import pyarrow as pa

    where = "the labels"
    if isinstance(labels, (str, os.PathLike)):
        path = Path(labels)
        where = str(path)
        try:
            frame = (
                pd.read_csv(path, dtype=dict.fromkeys(strings, str))
                if path.suffix.lower() == ".csv"
                else pd.read_parquet(path)
            )
        except (OSError, ValueError) as exc:
            raise ReportError(f"labels {path} cannot be read: {exc}") from None
    elif isinstance(labels, pa.Table):
        frame = labels.to_pandas()
    else:
        frame = pd.DataFrame(labels)
    if label not in frame.columns:
        raise ReportError(
            f"{where} have no label column {label!r} (columns: {', '.join(map(str, frame.columns))}); "
            "pass --label"
        )
    if REQUEST_ID not in frame.columns and EVENT_TIMESTAMP not in frame.columns:
        raise ReportError(
            f"{where} need a {REQUEST_ID!r} column, or the join keys and {EVENT_TIMESTAMP!r}, "
            "to be matched to logged predictions"
        )
    _require_binary(frame[label], label, where)
    if EVENT_TIMESTAMP in frame.columns:
        frame[EVENT_TIMESTAMP] = _label_times(frame[EVENT_TIMESTAMP], where)
    return frame.assign(__row=range(len(frame))), where


def _label_times(column: Any, where: str) -> Any:
    """The labels' times read by the entity rows' rule (``offline/entities.py``: timestamps
    or ISO-8601 strings, naive meaning UTC), as pandas; ``ReportError`` naming a bad row or
    a column of numbers (epoch numbers have no unit to read them by)."""
    import pyarrow as pa
    import pyarrow.types as pt

    from featurestore.offline.entities import normalize_timestamps

    try:
        table = normalize_timestamps(pa.table({EVENT_TIMESTAMP: pa.array(column)}))
    except (RetrievalError, pa.ArrowException) as exc:
        raise ReportError(f"{where}: {exc}") from None
    arrow_type = table.schema.field(EVENT_TIMESTAMP).type
    if not pt.is_timestamp(arrow_type):
        raise ReportError(
            f"{where}: column {EVENT_TIMESTAMP!r} has type {arrow_type}; give timestamps "
            "(or ISO-8601 strings)"
        )
    return table[EVENT_TIMESTAMP].to_pandas()


def _string_columns(predictions: Any) -> list[str]:
    """The logged columns (request id, keys, request fields) that hold strings."""
    import pandas as pd

    return [
        c
        for c in predictions.columns
        if c != PREDICTION and pd.api.types.is_string_dtype(predictions[c])
    ]


def _check_key_types(truth: Any, predictions: Any, label: str, where: str) -> None:
    """``ReportError`` naming a column the labels share with the log (a key the match uses)
    that holds strings on one side and numbers on the other: join keys are typed, ``1`` and
    ``"1"`` are different keys (DuckDB would cast one to the other and match "01" to 1)."""
    import pandas as pd

    strings = set(_string_columns(predictions))
    for column in predictions.columns:
        if column in (*META_COLUMNS, PREDICTION, label) or column not in truth.columns:
            continue
        given = truth[column]
        text = pd.api.types.is_string_dtype(given.dropna()) and given.notna().any()
        if column in strings and not (text or given.isna().all()):
            raise ReportError(
                f"{where}: column {column!r} holds {given.dtype} values but the log's "
                f'{column} is a string key (1 and "1" are different keys): write it as text'
            )
        if column not in strings and text:
            raise ReportError(
                f"{where}: column {column!r} holds strings but the log's {column} is an "
                f'integer key (1 and "1" are different keys): write it as integers'
            )


def _require_binary(labels: Any, label: str, where: str) -> None:
    """``ReportError`` unless every non-null label is 0 or 1 (or a boolean): AUC, log loss
    and the base rate mean nothing for other values (-1/+1 labels would count no positive)."""
    import pandas as pd

    given = labels.dropna()
    numbers = pd.to_numeric(given, errors="coerce")  # "1" reads as 1, as the join's cast does
    bad = given[~numbers.isin([0, 1])].unique()
    if len(bad):
        shown = ", ".join(str(v) for v in sorted(bad, key=str)[:5])
        raise ReportError(
            f"{where}: label column {label!r} must hold 0 and 1 (or booleans), and it also "
            f"holds {shown}{' ...' if len(bad) > 5 else ''}: map negatives to 0, positives to 1"
        )


def _predictions(
    config: RepoConfig, window: Window, artifact: ModelArtifact | None
) -> tuple[Any, str]:
    """The logged /predict rows with a prediction (of ``artifact`` when given), as pandas."""
    import pyarrow.compute as pc

    log = read_window(config.feature_log_path, window)
    log = log.filter(pc.and_(pc.equal(log["endpoint"], PREDICT), pc.is_valid(log[PREDICTION])))
    if artifact is not None:
        sha = artifact.metadata.model_sha256
        ours = log.filter(pc.equal(log["model_sha256"], sha))
        if ours.num_rows == 0:
            raise ReportError(
                f"no prediction of model {artifact.path} (sha256 {sha[:12]}) is logged "
                f"{window.describe()}; logged models: {_models(log)}"
            )
        log, name = ours, f"{artifact.path} (sha256 {sha[:12]})"
    else:
        shas = [s for s in log["model_sha256"].unique().to_pylist() if s is not None]
        if len(shas) != 1:
            raise ReportError(
                f"the log holds predictions of {len(shas)} models {window.describe()} "
                f"({_models(log)}): pass --model to choose one"
            )
        name = f"{log['model'][0].as_py()} (sha256 {shas[0][:12]})"
    keys = [c for c in log.column_names if c not in _not_keys(log.schema)]
    return log.select([*META_COLUMNS, *keys, PREDICTION]).to_pandas(), name


def _not_keys(schema: pa.Schema) -> set[str]:
    features = feature_columns(schema)
    suffixes = ("__status", "__event_ts", "__created_ts")
    return {*META_COLUMNS, PREDICTION, *features, *(f + s for f in features for s in suffixes)}


def _models(log: pa.Table) -> str:
    rows = log.group_by(["model", "model_sha256"]).aggregate([([], "count_all")]).to_pylist()
    return (
        ", ".join(
            f"{r['model']} {str(r['model_sha256'])[:12]} ({r['count_all']:,} rows)" for r in rows
        )
        or "none"
    )


def _join(truth: Any, predictions: Any, label: str, within: timedelta) -> tuple[Any, str]:
    """Each label row with its logged prediction (module docstring), in DuckDB."""
    import duckdb

    keys = [
        c
        for c in predictions.columns
        if c not in (*META_COLUMNS, PREDICTION) and c in truth.columns and c != label
    ]
    con = duckdb.connect()
    con.register("labels", truth)
    con.register("predictions", predictions)
    y = f'l."{label}"'
    if REQUEST_ID in truth.columns:
        on = " AND ".join(f'l."{k}" = p."{k}"' for k in [REQUEST_ID, *keys])
        how = f"by {' + '.join([REQUEST_ID, *keys])}"
        order = "p.request_ts"
    else:
        if not keys:
            raise ReportError(
                "the labels share no join-key column with the logged predictions: they need "
                f"the keys and {EVENT_TIMESTAMP!r}, or {REQUEST_ID!r}"
            )
        seconds = within.total_seconds()
        on = " AND ".join(f'l."{k}" = p."{k}"' for k in keys)
        on += (
            f" AND abs(epoch_us(p.request_ts) - epoch_us(l.{EVENT_TIMESTAMP})) "
            f"<= {int(seconds * 1_000_000)}"
        )
        order = f"abs(epoch_us(p.request_ts) - epoch_us(l.{EVENT_TIMESTAMP})), p.request_ts DESC"
        how = f"by {' + '.join(keys)} and the request time nearest {EVENT_TIMESTAMP} (within {within})"
    # `matches`/`ambiguous`: a label matched to several logged rows whose predictions differ
    # (a request id without the keys of a request that scored several entities) says no
    # more about which prediction it is for than its request does: refused below.
    sql = f"""
        SELECT l.__row, CAST({y} AS DOUBLE) AS y, p.prediction, p.request_ts,
               count(*) OVER w AS matches,
               min(p.prediction) OVER w <> max(p.prediction) OVER w AS ambiguous
        FROM labels l JOIN predictions p ON {on}
        WINDOW w AS (PARTITION BY l.__row)
        QUALIFY row_number() OVER (PARTITION BY l.__row ORDER BY {order}) = 1
        ORDER BY l.__row
    """
    try:
        joined = con.execute(sql).df()
    except duckdb.Error as exc:
        raise ReportError(f"the labels cannot be matched to the log ({how}): {exc}") from None
    finally:
        con.close()
    if REQUEST_ID in truth.columns and joined["ambiguous"].any():
        _refuse_ambiguous(truth, predictions, joined, keys)
    joined["request_ts"] = joined["request_ts"].dt.tz_convert("UTC")
    return joined, how


def _refuse_ambiguous(truth: Any, predictions: Any, joined: Any, keys: list[str]) -> None:
    """``ReportError`` naming the first label row that matches logged predictions of several
    entities (its request scored more than one) and the key columns that would tell them
    apart."""
    first = joined[joined["ambiguous"].astype(bool)].iloc[0]
    row = int(first["__row"])
    missing = [c for c in predictions.columns if c not in (*META_COLUMNS, PREDICTION, *keys)]
    raise ReportError(
        f"label row {row} (request_id {truth[REQUEST_ID].iloc[row]!r}) matches "
        f"{int(first['matches'])} logged predictions of different entities: its request "
        f"scored several; add the join key column(s) {', '.join(missing)} to the labels "
        "to say which entity each label is for"
    )


def _slice(name: str, y: np.ndarray, p: np.ndarray) -> Slice:
    return Slice(
        name=name,
        rows=int(y.size),
        positives=int(y.sum()),
        mean_prediction=float(p.mean()) if p.size else float("nan"),
        auc=auc(y, p),
        log_loss=log_loss(y, p),
        ece=expected_calibration_error(calibration(y, p)),
    )


def _judge(
    overall: Slice, validation: dict[str, float], thresholds: Thresholds
) -> tuple[Level, list[str]]:
    if overall.rows < thresholds.min_rows:
        return Level.OK, [f"{overall.rows:,} labeled predictions (< min_rows): not judged"]
    level, reasons = Level.OK, []
    checks = []
    if "valid_auc" in validation and math.isnan(overall.auc):  # comparisons with NaN: False
        reasons.append(
            f"AUC undefined: the {overall.rows:,} labeled predictions are all of one class "
            f"({overall.positives:,} positive): auc_drop not judged"
        )
    elif "valid_auc" in validation:
        drop = validation["valid_auc"] - overall.auc
        checks.append(
            (
                "auc_drop",
                drop,
                f"AUC {overall.auc:.4f} vs {validation['valid_auc']:.4f} in validation",
            )
        )
    if validation.get("valid_log_loss"):
        rise = overall.log_loss / validation["valid_log_loss"] - 1
        checks.append(
            (
                "log_loss_rise",
                rise,
                f"log loss {overall.log_loss:.4f} vs {validation['valid_log_loss']:.4f} in validation",
            )
        )
    for metric, value, text in checks:
        reached = thresholds.level(metric, value)
        if reached is not Level.OK:
            reasons.append(
                f"{text} ({metric} {value:.3f} >= {thresholds.bound(metric, reached):g})"
            )
            level = max(level, reached)
    return level, reasons
