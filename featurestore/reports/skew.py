"""The skew report: the distributions a model was trained on against those it is served.

``skew_report(config, training_set=..., window=...)`` compares a training set (read through
its manifest, which names each column's feature and dtype) with the feature vectors the
feature log holds for the window: per feature, PSI and Jensen-Shannon distance over the
bins of ``reports/stats.py`` (training deciles or top categories, plus a null bin), the
Kolmogorov-Smirnov statistic and p-value (numbers), the null-rate shift, mean and standard
deviation on each side (numbers), and the share and most frequent of the categories training
never held. With ``baseline=Window(...)`` instead of a training set, an earlier window of
served traffic is the reference (for features that trend, such as an account's age, which
drift from any training set).

Served rows: those of the training set's feature service (``service`` column) or, for a
training set of feature references, those that served any of its features. Rows served by a
model bound to another fingerprint than the training set's are left out and reported (all of
them: a ``ReportError``, the features being defined differently). So are rows read with view
definitions the registry no longer holds (the log's ``definitions``; ``/get-online-features``
rows have no model fingerprint), on both sides of a baseline comparison, with a note saying
how many (all of them: a ``ReportError``), by the consistency report's rule
(``served.other_definitions``).

Schema skew (TFDV's): a training feature never served, a served feature the training set
lacks, a logged dtype that is not the manifest's, rows of another fingerprint. Each is a
finding with a level. Alerts come from PSI, JS, null-rate shift and unseen categories
(``reports/thresholds.py``), never from the KS p-value, which flags any difference on large
samples. A feature with fewer than ``min_rows`` values on either side is reported, not judged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestore.errors import ReportError, RetrievalError
from featurestore.registry import Registry
from featurestore.reports.feature_skew import FeatureSkew, feature_skew
from featurestore.reports.served import (
    Window,
    feature_columns,
    log_column,
    other_definitions,
    read_window,
)
from featurestore.reports.thresholds import Level, Thresholds

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.config import RepoConfig
    from featurestore.manifest import TrainingSetManifest
    from featurestore.registry_state import RegistryState

Progress = Callable[[str], None]


@dataclass(frozen=True)
class SchemaFinding:
    """One schema difference between the reference and the served vectors."""

    kind: str  # "missing", "extra", "dtype", "fingerprint"
    feature: str | None
    message: str
    level: Level

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "feature": self.feature,
            "message": self.message,
            "level": self.level.label,
        }


@dataclass(frozen=True)
class SkewReport:
    """The result ``skew_report`` returns; the CLI renders it (terminal, JSON, HTML)."""

    reference: str
    served: str
    reference_rows: int
    served_rows: int
    features: tuple[FeatureSkew, ...]
    schema: tuple[SchemaFinding, ...]
    thresholds: Thresholds
    notes: tuple[str, ...] = ()
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def level(self) -> Level:
        levels = [f.level for f in self.features] + [s.level for s in self.schema]
        return max(levels, default=Level.OK)

    def flagged(self, level: Level = Level.WARN) -> list[str]:
        """The features at ``level`` or worse."""
        return [f.ref for f in self.features if f.level >= level]

    def to_json(self) -> dict[str, Any]:
        return {
            "report": "skew",
            "created_at": self.created_at.isoformat(),
            "reference": self.reference,
            "served": self.served,
            "reference_rows": self.reference_rows,
            "served_rows": self.served_rows,
            "level": self.level.label,
            "features": [f.to_json() for f in self.features],
            "schema": [s.to_json() for s in self.schema],
            "thresholds": dict(self.thresholds.values),
            "notes": list(self.notes),
        }


def skew_report(
    config: RepoConfig,
    training_set: str | Path | None = None,
    window: Window | None = None,
    *,
    baseline: Window | None = None,
    progress: Progress | None = None,
) -> SkewReport:
    """Compare a training set (or a ``baseline`` window) with served vectors (module doc)."""
    say = progress or (lambda _: None)
    window = window or Window()
    if (training_set is None) == (baseline is None):
        raise ReportError("compare the served vectors with a training set or a baseline window")
    thresholds = Thresholds.from_config(config.reports.thresholds)
    excluded = set(config.reports.exclude_features)
    say("reading the feature log")
    state = Registry(config.registry_path, config.project).require()
    left_out: list[str] = []
    log = _current_definitions(
        read_window(config.feature_log_path, window), state, window, left_out
    )
    if training_set is not None:
        report = _against_training_set(
            Path(training_set), log, window, thresholds, excluded, say, state
        )
        return replace(report, notes=(*left_out, *report.notes))
    assert baseline is not None  # one of the two, checked above
    reference = read_window(config.feature_log_path, baseline)
    reference = _current_definitions(reference, state, baseline, left_out, "the baseline")
    refs = {c: c.replace("__", ":", 1) for c in feature_columns(log.schema)}
    refs |= {c: c.replace("__", ":", 1) for c in feature_columns(reference.schema)}
    schema, features = [], []
    for column, ref in refs.items():
        if ref in excluded:
            continue
        sides = [(t, t[f"{column}__status"].null_count < len(t)) if column in t.column_names
                 else (t, False) for t in (reference, log)]  # fmt: skip
        if not all(present for _, present in sides):
            where = "the baseline" if not sides[0][1] else "the window"
            schema.append(
                SchemaFinding("missing", ref, f"{ref} is not served in {where}", Level.ALERT)
            )
            continue
        before, after = (_logged_dtype(t, column) for t in (reference, log))
        if before != after:
            schema.append(
                SchemaFinding(
                    "dtype",
                    ref,
                    f"{ref} is {before} in the baseline but {after} in the window: its "
                    "definition changed in between (compare windows after the change)",
                    Level.ALERT,
                )
            )
            continue
        say(f"comparing {ref}")
        features.append(
            feature_skew(ref, column, _served(reference, column), _served(log, column), thresholds)
        )
    schema += _fingerprint_change(reference, log)
    return SkewReport(
        reference=f"served traffic {baseline.describe()}",
        served=f"served traffic {window.describe()}",
        reference_rows=reference.num_rows,
        served_rows=log.num_rows,
        features=tuple(features),
        schema=tuple(schema),
        thresholds=thresholds,
        notes=(
            *left_out,
            *_overlap(baseline, window),
            *(f"{ref} is excluded (reports.exclude_features)" for ref in sorted(excluded)),
        ),
    )


def _current_definitions(
    log: pa.Table, state: RegistryState, window: Window, notes: list[str], side: str = "the window"
) -> pa.Table:
    """``log`` without the rows read with definitions the registry no longer holds
    (``served.other_definitions``, the consistency report's rule), each left out with a note
    in ``notes``; a ``ReportError`` when no row is left."""
    import pyarrow.compute as pc

    other = other_definitions(log, state)
    if not other.rows:
        return log
    if other.rows == log.num_rows:
        raise ReportError(
            f"{other.describe()}; every row of {side} {window.describe()} is: their values were "
            "computed by other definitions than today's; pass a window after that apply"
        )
    notes.append(
        f"{other.describe()}: they are left out of {side} ({log.num_rows - other.rows:,} rows "
        "remain), their values being computed by other definitions than today's"
    )
    return log.filter(pc.invert(other.mask))


def _overlap(baseline: Window, window: Window) -> list[str]:
    """A note when the two windows share a time: the shared rows sit on both sides and pull
    every statistic towards no skew (a baseline left open at its end holds the window)."""
    if (baseline.since is None or window.until is None or baseline.since < window.until) and (
        window.since is None or baseline.until is None or window.since < baseline.until
    ):
        return [
            f"the baseline overlaps the window (baseline {baseline.describe()}, window "
            f"{window.describe()}): rows in both pull every statistic towards no skew; end "
            "the baseline at or before the window's start (--baseline-until)"
        ]
    return []


def _logged_dtype(table: pa.Table, column: str) -> str:
    """The dtype name a log column holds (its Arrow type when no dtype fits)."""
    from featurestore.types import dtype_from_arrow

    arrow_type = table.schema.field(column).type
    dtype = dtype_from_arrow(arrow_type)
    return dtype.name if dtype else str(arrow_type)


def _served(table: pa.Table, column: str) -> pa.ChunkedArray:
    """The values of the rows that served ``column``."""
    import pyarrow.compute as pc

    return table[column].filter(pc.is_valid(table[f"{column}__status"]))


def read_manifest(path: Path) -> TrainingSetManifest:
    """The manifest beside training set ``path``; ``ReportError`` when missing or unreadable."""
    from featurestore.manifest import TrainingSetManifest
    from featurestore.training import MANIFEST_SUFFIX

    if not path.is_file():
        raise ReportError(f"training set {path} does not exist")
    manifest = path.with_name(path.name + MANIFEST_SUFFIX)
    if not manifest.is_file():
        raise ReportError(
            f"training set {path} has no manifest {manifest.name} beside it: the skew report "
            "reads each column's feature and dtype from it; rebuild the training set with "
            "'featurestore training-set ... --out' (or RetrievalJob.to_parquet)"
        )
    try:
        return TrainingSetManifest.from_json(json.loads(manifest.read_text()))
    except (OSError, ValueError, RetrievalError) as exc:
        raise ReportError(f"{manifest}: {exc}") from None


def _against_training_set(
    path: Path,
    log: pa.Table,
    window: Window,
    thresholds: Thresholds,
    excluded: set[str],
    say: Progress,
    state: RegistryState,
) -> SkewReport:
    import pyarrow.parquet as pq

    manifest = read_manifest(path)
    say(f"reading the training set {path}")
    try:
        training = pq.read_table(path, columns=[f.column for f in manifest.features])
    except (OSError, ValueError, KeyError) as exc:
        raise ReportError(
            f"training set {path} cannot be read as its manifest says: {exc}"
        ) from None
    log, schema = _select_rows(log, manifest, window)
    served_columns = set(feature_columns(log.schema))
    features, notes = [], []
    for spec in manifest.features:
        column = log_column(spec.ref)
        if spec.ref in excluded:
            notes.append(f"{spec.ref} is excluded (reports.exclude_features)")
            continue
        if column not in served_columns or log[f"{column}__status"].null_count == len(log):
            schema.append(
                SchemaFinding(
                    "missing",
                    spec.ref,
                    f"{spec.ref} is in the training set but was never served {window.describe()}",
                    Level.ALERT,
                )
            )
            continue
        logged = _logged_dtype(log, column)
        if logged != spec.dtype:
            schema.append(
                SchemaFinding(
                    "dtype",
                    spec.ref,
                    f"{spec.ref} is {spec.dtype} in the training set but logged as {logged}",
                    Level.ALERT,
                )
            )
            continue
        say(f"comparing {spec.ref}")
        features.append(
            feature_skew(spec.ref, column, training[spec.column], _served(log, column), thresholds)
        )
    trained = {log_column(f.ref) for f in manifest.features} | _transformation_inputs(
        manifest, state
    )
    for column in sorted(served_columns - trained):
        if log[f"{column}__status"].null_count < len(log):
            ref = column.replace("__", ":", 1)
            schema.append(
                SchemaFinding(
                    "extra",
                    ref,
                    f"{ref} is served with the training set's features but the training set "
                    "has no column for it: the model never saw it (retrain, or check the "
                    "feature service)",
                    Level.ALERT,
                )
            )
    return SkewReport(
        reference=f"training set {path} ({training.num_rows:,} rows)",
        served=f"served traffic {window.describe()}",
        reference_rows=training.num_rows,
        served_rows=log.num_rows,
        features=tuple(features),
        schema=tuple(schema),
        thresholds=thresholds,
        notes=tuple(notes),
    )


def _transformation_inputs(manifest: TrainingSetManifest, state: RegistryState) -> set[str]:
    """The log columns of what the training set's on-demand views read: the log holds them
    beside the outputs (so a consistency check can tell which input made a value differ),
    and they are not features the model lacks."""
    views = {f.ref.split(":", 1)[0] for f in manifest.features}
    return {
        log_column(ref)
        for name in views & state.on_demand.keys()
        for projection in state.on_demand[name].view.source_projections
        for ref in projection.refs
    }


def _select_rows(
    log: pa.Table, manifest: TrainingSetManifest, window: Window
) -> tuple[pa.Table, list[SchemaFinding]]:
    """The rows that served the training set's features, less those of another fingerprint."""
    import pyarrow as pa
    import pyarrow.compute as pc

    service = manifest.feature_service
    if service is not None:
        rows = log.filter(pc.equal(log["service"], service.name))
        what = f"feature service {service.name}"
    else:
        columns = set(feature_columns(log.schema))
        mask = pa.array([False] * log.num_rows)
        for f in manifest.features:
            if log_column(f.ref) in columns:
                mask = pc.or_(mask, pc.is_valid(log[f"{log_column(f.ref)}__status"]))
        rows = log.filter(mask)
        what = "any of the training set's features"
    if rows.num_rows == 0:
        held = log.group_by(["service"]).aggregate([([], "count_all")]).to_pylist()
        listing = ", ".join(
            f"{h['service'] or '(a list of features)'}: {h['count_all']:,} rows" for h in held
        )
        raise ReportError(
            f"no logged row {window.describe()} served {what}; the log holds {listing}"
        )
    if service is None:
        return rows, []
    other = pc.fill_null(pc.not_equal(rows["model_fingerprint"], service.fingerprint), False)
    n_other = pc.sum(other).as_py() or 0
    if n_other == 0:
        return rows, []
    others = sorted({f[:12] for f in rows.filter(other)["model_fingerprint"].to_pylist()})
    message = (
        f"{n_other:,} rows were served by a model bound to {service.name} fingerprint "
        f"{', '.join(others)}, not {service.fingerprint[:12]} (the training set's): its features "
        "are defined differently"
    )
    if n_other == rows.num_rows:
        raise ReportError(
            f"{message}; every row {window.describe()} is: pass the training set of the served "
            "model, or build one with the current definitions"
        )
    kept = rows.filter(pc.invert(other))
    return kept, [SchemaFinding("fingerprint", None, message + "; they are left out", Level.WARN)]


def _fingerprint_change(reference: pa.Table, log: pa.Table) -> list[SchemaFinding]:
    def fingerprints(table: pa.Table) -> set[str]:
        return {f for f in table["model_fingerprint"].unique().to_pylist() if f is not None}

    before, after = fingerprints(reference), fingerprints(log)
    if before == after or not before or not after:
        return []
    return [
        SchemaFinding(
            "fingerprint",
            None,
            f"the baseline was served by fingerprints {_short(before)}, the window by "
            f"{_short(after)}: feature definitions changed in between",
            Level.WARN,
        )
    ]


def _short(fingerprints: Sequence[str] | set[str]) -> str:
    return ", ".join(sorted(f[:12] for f in fingerprints))
