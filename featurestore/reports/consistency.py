"""The consistency report: what was served against what training would have seen then.

``consistency_report(store, window)`` reads the feature log's rows in the window, replays
their (entity keys, ``request_ts``) pairs through the offline point-in-time join (one join
per ``as_of``: ``get_historical_features(..., full_feature_names=True, as_of=...,
with_timestamps=True)``, so the winners' event and created times come from the join itself,
not from a side query) and compares every served value with the replayed one, as Chronon
measures it. Per feature: rows compared (rows that served the feature), exact matches (both
null counts as a match), both-null / offline-null / online-null / mismatch counts, for
numbers sMAPE and quantiles of ``offline - online``; the same per UTC hour; and every
mismatch explained by one class of the decision table in ``reports/classes.py`` (first rule
wins: online-newer, stale-online, late-correction, value-differs, missing-online,
ttl-boundary, online-only), with the median and p95 lag of stale-online rows and a few
example rows per class. The overall score is the exact-match rate over all compared values.

``as_of`` of the replay, per logged row: ``as_of=`` when given; for ``/predict`` rows the
``as_of`` the model was trained with (the artifact's metadata when ``model=`` is that model,
else ``featurestore train``'s, ``"created"``); for ``/get-online-features`` rows ``"event"``.
Rows served by a model bound to another fingerprint than the registry's (definitions changed
since), and rows read with view definitions the registry no longer holds (the log's
``definitions``: ``/get-online-features`` rows have no model), are refused: replaying them
through the new definitions would not measure serving.

Levels: a feature's exact-match rate below ``match_rate_warn`` / ``match_rate_alert``
(``reports/thresholds.py``), and any online-newer or value-differs row, which is always an
alert. Features in ``reports.exclude_features`` are left out.

A transformed feature (an on-demand view's) is replayed like the rest: the same join, with
the logged request fields as entity-df columns, runs the same function offline
(``transforms.transform``) on the replayed inputs; its output is compared by value and each
mismatch classed by its inputs (``classes.classify_by_inputs``: the first class any input
feature has on that row, else value-differs), its inputs' classes coming from their own
comparison on the same rows (the log records every input a transformation read, with its
status and times). A transformed feature whose request fields or inputs the log lacks
(logs written before they were logged) is not compared, with a note saying which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestore.errors import ReportError
from featurestore.feature_log import ONLINE_FEATURES, PREDICT
from featurestore.reports.classes import CLASSES, FeatureKind
from featurestore.reports.feature_consistency import (
    FeatureConsistency,
    InputSpec,
    summarize_feature,
)
from featurestore.reports.served import (
    STATUS,
    Window,
    feature_columns,
    log_column,
    other_definitions,
    read_window,
    rows_without,
)
from featurestore.reports.thresholds import Level, Thresholds

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from featurestore.models.artifact import ModelArtifact
    from featurestore.registry_state import RegistryState
    from featurestore.store import FeatureStore

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ReplayGroup:
    """Logged rows replayed with one ``as_of``, and why that one."""

    as_of: str
    rows: int
    reason: str


@dataclass(frozen=True)
class ConsistencyReport:
    """The result ``consistency_report`` returns; the CLI renders it (terminal, JSON, HTML)."""

    log_path: str
    window: Window
    rows: int
    groups: tuple[ReplayGroup, ...]
    features: tuple[FeatureConsistency, ...]
    thresholds: Thresholds
    notes: tuple[str, ...] = ()
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def compared(self) -> int:
        return sum(f.compared for f in self.features)

    @property
    def matched(self) -> int:
        return sum(f.matched for f in self.features)

    @property
    def score(self) -> float:
        """The exact-match rate over every compared value (1.0 when nothing was compared)."""
        return self.matched / self.compared if self.compared else 1.0

    @property
    def level(self) -> Level:
        return max((f.level for f in self.features), default=Level.OK)

    def class_counts(self) -> dict[str, int]:
        """Mismatches per class, over every feature (classes in decision order)."""
        return {c: sum(f.class_count(c) for f in self.features) for c in CLASSES}

    def hourly(self) -> list[tuple[datetime, int, int, dict[str, int]]]:
        """Per UTC hour, over every feature: (hour, compared, matched, mismatches per class)."""
        hours: dict[datetime, list[Any]] = {}
        for feature in self.features:
            for bucket in feature.hourly:
                entry = hours.setdefault(bucket.hour, [0, 0, dict.fromkeys(CLASSES, 0)])
                entry[0] += bucket.compared
                entry[1] += bucket.matched
                for name, count in bucket.classes.items():
                    entry[2][name] += count
        return [(hour, *hours[hour]) for hour in sorted(hours)]

    def to_json(self) -> dict[str, Any]:
        return {
            "report": "consistency",
            "created_at": self.created_at.isoformat(),
            "log_path": self.log_path,
            "window": self.window.to_json(),
            "rows": self.rows,
            "score": self.score,
            "compared": self.compared,
            "matched": self.matched,
            "level": self.level.label,
            "classes": self.class_counts(),
            "replay": [{"as_of": g.as_of, "rows": g.rows, "reason": g.reason} for g in self.groups],
            "features": [f.to_json() for f in self.features],
            "hourly": [
                {"hour": h.isoformat(), "compared": c, "matched": m, "classes": k}
                for h, c, m, k in self.hourly()
            ],
            "thresholds": dict(self.thresholds.values),
            "notes": list(self.notes),
        }


def consistency_report(
    store: FeatureStore,
    window: Window | None = None,
    *,
    model: ModelArtifact | str | Path | None = None,
    as_of: str | None = None,
    examples: int = 3,
    progress: Progress | None = None,
) -> ConsistencyReport:
    """Replay the logged rows of ``window`` offline and compare (module docstring)."""
    import numpy as np

    say = progress or (lambda _: None)
    window = window or Window()
    config = store.config
    thresholds = Thresholds.from_config(config.reports.thresholds)
    state = store.state
    artifact = _artifact(model)
    say("reading the feature log")
    log = read_window(config.feature_log_path, window)
    _check_fingerprints(log, state)
    _check_definitions(log, state)
    refs, notes = _replayable(log, state, config.reports.exclude_features)
    if not refs:
        raise ReportError(
            f"no feature of the log {window.describe()} can be replayed: "
            + ("; ".join(notes) or "it holds no feature columns")
        )
    log = _without_unlogged_fields(config.feature_log_path, log, state, refs, notes)
    groups, row_as_of = _as_of_groups(log, artifact, as_of)
    if artifact is not None and as_of is None:
        sha = artifact.metadata.model_sha256
        if sha not in set(log["model_sha256"].unique().to_pylist()):
            notes.append(
                f"the model given (sha256 {sha[:12]}) served no "
                f"logged row {window.describe()}: its as_of applied to none (another model, "
                "or a retrain, served them)"
            )
    per_feature: dict[str, list[dict[str, Any]]] = {c: [] for c in refs}
    for group in groups:
        in_group = row_as_of == group.as_of
        part = log if in_group.all() else log.take(np.flatnonzero(in_group))
        served = {c: r for c, r in refs.items() if part[f"{c}__status"].null_count < len(part)}
        if not served:
            continue
        say(f"replaying {len(part):,} logged rows through the offline join (as_of={group.as_of})")
        offline = _replay(store, state, part, list(served.values()), group.as_of)
        for i, (column, ref) in enumerate(served.items(), 1):
            say(f"comparing {column} ({i}/{len(served)}, as_of={group.as_of})")
            per_feature[column].append(
                {
                    "log": part,
                    "offline": offline,
                    "ttl_us": _ttl_us(state, ref),
                    "inputs": _inputs(state, ref),
                    "request_fields": _request_fields(state, ref),
                }
            )
    features = tuple(
        summarize_feature(
            column,
            refs[column],
            feature_kind(state, refs[column]),
            parts,
            thresholds,
            examples,
            _key_columns(state, refs[column]),
        )
        for column, parts in per_feature.items()
        if parts
    )
    return ConsistencyReport(
        log_path=str(config.feature_log_path),
        window=window,
        rows=log.num_rows,
        groups=tuple(groups),
        features=features,
        thresholds=thresholds,
        notes=tuple(notes),
    )


def _artifact(model: ModelArtifact | str | Path | None) -> ModelArtifact | None:
    if model is None or not isinstance(model, (str, Path)):
        return model
    from featurestore.models.artifact import load

    return load(model)


def _check_fingerprints(log: pa.Table, state: RegistryState) -> None:
    """Refuse rows served by a model bound to another fingerprint than the registry's."""
    pairs = (
        log.select(["service", "model_fingerprint", "model"])
        .group_by(["service", "model_fingerprint", "model"])
        .aggregate([([], "count_all")])
        .to_pylist()
    )
    for pair in pairs:
        service, fingerprint = pair["service"], pair["model_fingerprint"]
        if fingerprint is None or service is None:
            continue
        record = state.services.get(service)
        current = record.fingerprint if record else None
        if current != fingerprint:
            now = f"is now {current[:12]}" if current else "is no longer applied"
            raise ReportError(
                f"{pair['count_all']:,} logged rows were served by model {pair['model']} "
                f"bound to {service} fingerprint {fingerprint[:12]}, but the registry's "
                f"{service} {now}: replaying them through other definitions would not "
                "measure serving; pass --since after the apply that changed it"
            )


def _check_definitions(log: pa.Table, state: RegistryState) -> None:
    """Refuse rows read with definitions the registry no longer holds
    (``served.other_definitions``: ``/get-online-features`` rows have no model fingerprint
    to tell it)."""
    other = other_definitions(log, state)
    if other.rows:
        raise ReportError(
            f"{other.describe()}: replaying them through other definitions would not "
            "measure serving; pass --since after that apply"
        )


def _replayable(
    log: pa.Table, state: RegistryState, excluded: tuple[str, ...]
) -> tuple[dict[str, str], list[str]]:
    """The log's feature columns that the registry defines -> their refs; notes on the rest."""
    known = {
        f"{name}__{feature}": f"{name}:{feature}"
        for name, record in state.views.items()
        for feature in record.view.feature_names
    }
    computed = {
        f"{name}__{feature}": f"{name}:{feature}"
        for name, r in state.on_demand.items()
        for feature in r.view.feature_names
    }
    present = set(log.schema.names)
    refs, notes = {}, []
    for column in feature_columns(log.schema):
        ref = known.get(column) or computed.get(column)
        lacking = _lacking(state, ref, present) if column in computed else None
        if lacking:
            notes.append(
                f"{column} is computed at request time and not compared: the log has no "
                f"{lacking} to replay it with (rows logged before the log recorded it); "
                "serve again, or pass --since after that change"
            )
        elif ref is None:
            notes.append(f"{column} is not replayed: the registry defines no such feature now")
        elif ref in excluded:
            notes.append(f"{ref} is excluded (reports.exclude_features)")
        else:
            refs[column] = ref
    return refs, notes


def _without_unlogged_fields(
    path: Path, log: pa.Table, state: RegistryState, refs: dict[str, str], notes: list[str]
) -> pa.Table:
    """The log with a transformed feature marked not served (its status null) on rows from
    files written before the log recorded one of its request fields, and a note saying so;
    ``_replayable`` already left out a feature whose fields no file of the log has."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    lacking: dict[str, np.ndarray] = {}
    for column, ref in refs.items():
        fields = _request_fields(state, ref)
        for f in fields:
            if f not in lacking:
                lacking[f] = rows_without(path, log, f)
        old = np.zeros(log.num_rows, bool)
        for f in fields:
            old |= lacking[f]
        status = f"{column}{STATUS}"
        old &= pc.is_valid(log[status]).to_numpy(zero_copy_only=False)
        if old.any():
            names = ", ".join(repr(f) for f in fields if (lacking[f] & old).any())
            notes.append(
                f"{column}: {int(old.sum()):,} logged rows not compared: their log files have "
                f"no request field {names} to replay them with (written before the log "
                "recorded it)"
            )
            kept = pc.if_else(pa.array(old), pa.scalar(None, pa.string()), log[status])
            log = log.set_column(log.schema.get_field_index(status), status, kept)
    return log


def _as_of_groups(
    log: pa.Table, artifact: ModelArtifact | None, as_of: str | None
) -> tuple[list[ReplayGroup], np.ndarray]:
    """Each row's replay ``as_of`` (module docstring), and the groups it makes."""
    import numpy as np
    import pyarrow.compute as pc

    from featurestore.models.training import AS_OF as TRAINED_AS_OF

    n = log.num_rows
    if as_of is not None:
        if as_of not in ("event", "created"):
            raise ReportError(f"as_of must be 'event' or 'created', got {as_of!r}")
        return [ReplayGroup(as_of, n, "as_of given")], np.full(n, as_of, object)

    def where(condition: pa.ChunkedArray) -> np.ndarray:
        return np.asarray(pc.fill_null(condition, False).to_numpy(zero_copy_only=False), bool)

    # each row's kind: 0 an /get-online-features row, 1 a /predict row of another model, 2 of
    # this report's model; each kind's as_of and why
    kinds = [("event", f"{ONLINE_FEATURES} rows")]
    kinds.append((TRAINED_AS_OF, f"{PREDICT} rows of other models: featurestore train's as_of"))
    kind = where(pc.equal(log["endpoint"], PREDICT)).astype(np.int8)
    if artifact is not None:
        sha = artifact.metadata.model_sha256
        kinds.append((artifact.metadata.as_of, f"{PREDICT} rows of model {sha[:12]}: its metadata"))
        kind[(kind == 1) & where(pc.equal(log["model_sha256"], sha))] = 2
    counts = np.bincount(kind, minlength=len(kinds))
    values = np.array([name for name, _ in kinds])[kind]
    groups = []
    for name in sorted({kinds[k][0] for k in range(len(kinds)) if counts[k]}):
        present = [k for k in range(len(kinds)) if counts[k] and kinds[k][0] == name]
        reasons = sorted(f"{kinds[k][1]} ({int(counts[k]):,})" for k in present)
        groups.append(ReplayGroup(name, int(sum(counts[k] for k in present)), "; ".join(reasons)))
    return groups, values


def feature_kind(state: RegistryState, ref: str) -> FeatureKind:
    """How the mismatches of ``ref`` are classed (``classes.py``'s feature kinds): an
    on-demand view's features are TRANSFORMED (classed by their inputs), an aggregated
    view's AGGREGATED (the log carries the view's covered end as their event time), others
    PLAIN."""
    name = ref.split(":")[0]
    if name in state.on_demand:
        return FeatureKind.TRANSFORMED
    view = state.view(name)  # an unknown view is an error here, not a wrong class
    return FeatureKind.AGGREGATED if view.is_aggregated else FeatureKind.PLAIN


def _input_refs(state: RegistryState, ref: str) -> list[str]:
    """An on-demand feature's input features (``view:feature``); none for other features."""
    record = state.on_demand.get(ref.split(":")[0])
    if record is None:
        return []
    return [f"{p.view.name}:{f}" for p in record.view.source_projections for f in p.features]


def _request_fields(state: RegistryState, ref: str) -> tuple[str, ...]:
    """An on-demand feature's request fields (log columns of those names); none otherwise."""
    record = state.on_demand.get(ref.split(":")[0])
    return tuple(f.name for f in record.view.request_fields) if record else ()


def _inputs(state: RegistryState, ref: str) -> tuple[InputSpec, ...]:
    """What a transformed feature's mismatches are classed by: each input feature's log
    column, how it is classed and its view's ttl (``classes.py``)."""
    return tuple(
        InputSpec(
            column=log_column(i),
            view=i.split(":")[0],
            kind=feature_kind(state, i),
            ttl_us=_ttl_us(state, i),
        )
        for i in _input_refs(state, ref)
    )


def _ttl_us(state: RegistryState, ref: str) -> int | None:
    name = ref.split(":")[0]
    return None if name in state.on_demand else state.view(name).ttl_microseconds


def _lacking(state: RegistryState, ref: str | None, present: set[str]) -> str | None:
    """What a transformed feature's replay needs that the log lacks, said in words."""
    if ref is None:
        return None
    fields = [f for f in _request_fields(state, ref) if f not in present]
    if fields:
        return "request field " + ", ".join(repr(f) for f in fields)
    statuses = [log_column(i) for i in _input_refs(state, ref)]
    inputs = [c for c in statuses if f"{c}{STATUS}" not in present]
    return "input " + ", ".join(repr(c) for c in inputs) if inputs else None


def _key_columns(state: RegistryState, ref: str) -> tuple[str, ...]:
    """The join keys of ``ref``'s view (an on-demand view: its sources', in order)."""
    keys: list[str] = []
    for view in [i.split(":")[0] for i in _input_refs(state, ref)] or [ref.split(":")[0]]:
        keys += [k for k in state.view(view).join_keys if k not in keys]
    return tuple(keys)


def _replay(
    store: FeatureStore, state: RegistryState, part: pa.Table, refs: list[str], as_of: str
) -> pa.Table:
    """The offline join for the logged rows of ``part`` at their request times (one join)."""
    import pyarrow as pa

    from featurestore.offline.plan import ENTITY_TIMESTAMP

    keys: list[str] = []
    joined: list[str] = []
    for ref in refs:
        keys += [k for k in _key_columns(state, ref) if k not in keys]
        keys += [f for f in _request_fields(state, ref) if f not in keys]
        # a transformed feature's inputs are joined too: their winners' times class it
        joined += [r for r in (ref, *_input_refs(state, ref)) if r not in joined]
    entities = pa.table(
        {**{k: part[k] for k in keys}, ENTITY_TIMESTAMP: part["request_ts"]},
    )
    job = store.get_historical_features(
        entities,
        joined,
        full_feature_names=True,
        as_of=as_of,  # type: ignore[arg-type]  # checked: "event" or "created"
        with_timestamps=True,
    )
    return job.to_arrow()
