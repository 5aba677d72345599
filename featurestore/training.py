"""Training sets: the result of a point-in-time join, and the manifest that describes it.

``historical_job`` is the one place a join becomes a ``RetrievalJob``: it reads the entity
rows and plans the join on the configured offline engine (``offline/engine.py``), so a bad
request fails before any join runs. It is also where request-time transformations run
offline (``finish_join``: featurestore/transforms.py, the same function serving calls). A ``RetrievalJob`` runs its join once, when a result is
first asked for, and keeps it. Its manifest (``manifest.TrainingSetManifest``) records
what the set was built from: the feature service and its fingerprint (or each projection's
fingerprint), the features in output order with dtypes, ``as_of``, ``full_feature_names``,
the row count and entity time range, a fingerprint of every source at planning time,
engine and library versions, and when it was built. ``to_parquet(path)`` writes it to
``<path>.manifest.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from featurestore.errors import OutputError, RetrievalError
from featurestore.manifest import (
    EngineInfo,
    ManifestFeature,
    ServiceRef,
    SourceFingerprint,
    TrainingSetManifest,
)
from featurestore.offline.plan import (
    ENTITY_TIMESTAMP,
    AsOf,
    JoinPlan,
    build_join_plan,
    request_key_dtypes,
)
from featurestore.outputs import check_not_read, check_writable

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from featurestore.definitions import FeatureService, FeatureViewProjection
    from featurestore.offline.engine import Entities, OfflineEngine
    from featurestore.offline.entities import EntityInput
    from featurestore.registry_state import RegistryState

MANIFEST_SUFFIX = ".manifest.json"


class RetrievalJob:
    """A training set: ``.to_arrow()``, ``.to_df()``, ``.to_parquet(path)``, ``.manifest``.

    ``.to_arrow()`` is the contract: every entity column and row in the caller's order,
    then the plan's outputs (``plan.output_schema()``: one column per feature with its
    declared Arrow type, nulls where no source row qualified, and with
    ``with_timestamps`` each view's winner's event and created times).
    ``.to_df()`` converts it with ``types.to_pandas``. ``entity_rows`` is the number of
    entity rows (None for an entity query, which runs on the engine).
    """

    def __init__(
        self,
        plan: JoinPlan,
        execute: Callable[[], pa.Table],
        *,
        engine: EngineInfo,
        service: ServiceRef | None,
        sources: Sequence[SourceFingerprint],
        entity_rows: int | None,
        inputs: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.plan = plan
        self.entity_rows = entity_rows
        self._inputs = tuple(inputs)  # what an output must not replace (``read_by_run``)
        self._execute = execute
        self._engine = engine
        self._service = service
        self._sources = tuple(sources)
        self._result: pa.Table | None = None
        self._built_at: str | None = None

    def __repr__(self) -> str:
        state = "built" if self._result is not None else "not run yet"
        views = ", ".join(v.name for v in self.plan.views)
        return f"RetrievalJob(views=[{views}], as_of={self.plan.as_of!r}, {state})"

    def to_arrow(self) -> pa.Table:
        """Run the join (once) and return the training set as Arrow."""
        if self._result is None:
            self._result = self._execute()
            self._built_at = datetime.now(UTC).isoformat()
        return self._result

    def to_df(self) -> pd.DataFrame:
        """The training set as pandas, with nullable dtypes (``types.to_pandas``)."""
        from featurestore.types import to_pandas

        return to_pandas(self.to_arrow())

    def to_parquet(self, path: str | os.PathLike[str]) -> Path:
        """Write the training set to ``path`` and its manifest to ``<path>.manifest.json``.

        ``OutputError`` when ``path`` cannot be written, checked before the join runs.
        """
        import pyarrow.parquet as pq

        path = self.check_output(path)
        manifest_path = check_writable(path.with_name(path.name + MANIFEST_SUFFIX), "manifest")
        table = self.to_arrow()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)
            manifest_path.write_text(json.dumps(self.manifest.to_json(), indent=2) + "\n")
        except OSError as exc:
            raise OutputError(f"cannot write the training set to {path}: {exc}") from None
        return path

    def check_output(self, path: str | os.PathLike[str]) -> Path:
        """``path`` as a Path, or ``OutputError`` when the training set cannot be written
        there: unwritable, or a file the join reads (the entity rows, a view's source)."""
        path = check_writable(path, "training set")
        check_not_read(path, self._inputs, "training set")
        return path

    @property
    def manifest(self) -> TrainingSetManifest:
        """What this training set was built from (runs the join if it has not run)."""
        import duckdb
        import pyarrow as pa
        import pyarrow.compute as pc

        import featurestore

        table = self.to_arrow()
        times = pc.min_max(table[ENTITY_TIMESTAMP]) if table.num_rows else None

        def iso(value: pa.Scalar | None) -> str | None:
            return None if value is None or not value.is_valid else value.as_py().isoformat()

        return TrainingSetManifest(
            feature_service=self._service,
            features=tuple(
                ManifestFeature(
                    ref=f"{view}:{feature.name}",
                    column=feature.output,
                    dtype=feature.dtype.name,
                    projection_fingerprint=fingerprint,
                )
                for view, fingerprint, feature in self.plan.requested_features()
            ),
            entity_columns=self.plan.entity_columns,
            as_of=self.plan.as_of,
            full_feature_names=self.plan.full_feature_names,
            row_count=table.num_rows,
            entity_time_min=iso(times["min"] if times else None),
            entity_time_max=iso(times["max"] if times else None),
            sources=self._sources,
            engine=self._engine,
            versions={
                "featurestore": featurestore.__version__,
                "pyarrow": pa.__version__,
                "duckdb": duckdb.__version__,
            },
            created_at=self._built_at,
        )


def plan_join(
    engine: OfflineEngine,
    state: RegistryState,
    entity_df: EntityInput,
    projections: Sequence[FeatureViewProjection],
    *,
    full_feature_names: bool,
    as_of: AsOf,
    with_timestamps: bool,
    repo_path: Path,
) -> tuple[JoinPlan, Entities]:
    """Read the entity rows on ``engine`` and plan the join; nothing is joined yet.

    Every problem a request can have (entity input, columns, key types, output names, a
    view the engine cannot read) is a ``RetrievalError`` raised here.
    """
    entities = engine.read_entities(entity_df, request_key_dtypes(state, projections))
    plan = build_join_plan(
        state,
        projections,
        entities.schema,
        full_feature_names,
        as_of,
        repo_path,
        with_timestamps=with_timestamps,
    )
    engine.check_sources(plan)
    return plan, entities


def historical_job(
    engine: OfflineEngine,
    state: RegistryState,
    entity_df: EntityInput,
    projections: Sequence[FeatureViewProjection],
    service: FeatureService | None,
    *,
    full_feature_names: bool = False,
    as_of: AsOf = "event",
    with_timestamps: bool = False,
    repo_path: Path,
) -> RetrievalJob:
    """Plan a training set on ``engine`` (``plan_join``); the join runs when the job's
    result is first asked for. ``service``: the feature service the projections came from,
    recorded with its applied fingerprint."""
    plan, entities = plan_join(
        engine,
        state,
        entity_df,
        projections,
        full_feature_names=full_feature_names,
        as_of=as_of,
        with_timestamps=with_timestamps,
        repo_path=repo_path,
    )
    service_ref = None
    if service is not None:
        service_ref = ServiceRef(service.name, state.service_record(service.name).fingerprint)
    return RetrievalJob(
        plan,
        lambda: finish_join(plan, engine.join(plan, entities)),
        engine=engine.describe(),
        service=service_ref,
        sources=engine.source_fingerprints(plan),
        entity_rows=entities.num_rows,
        inputs=read_by_run(state, repo_path, entity_df),
    )


def read_by_run(
    state: RegistryState, repo_path: Path, entity_df: EntityInput
) -> tuple[tuple[str, str], ...]:
    """What a training set or a batch scoring reads, which its output must never replace:
    the entity rows' file or folder, and every applied view's Parquet source (its file,
    folder or glob, and its push folder), as (resolved path or pattern, who reads it)."""
    from featurestore.definitions import FileSource
    from featurestore.offline.entities import is_path
    from featurestore.sources import push_folder, source_path

    found = [(str(Path(entity_df).resolve()), "the entity rows")] if is_path(entity_df) else []
    for name, record in sorted(state.views.items()):
        source = record.view.batch_source
        if isinstance(source, FileSource):
            reader = f"the source of feature view {name!r}"
            path = source_path(source, repo_path)
            glob = any(ch in source.path for ch in "*?[")  # a pattern of file names
            found += [
                (str(path.parent.resolve() / path.name if glob else path.resolve()), reader),
                (str(push_folder(source, repo_path).resolve()), reader),
            ]
    return tuple(found)


def finish_join(plan: JoinPlan, table: pa.Table) -> pa.Table:
    """The join's table with the plan's transformations' outputs appended (the one
    ``transforms.transform``, on the joined inputs and the entity columns' request fields)
    and their hidden inputs dropped."""
    if not plan.transformations:
        return table
    from featurestore.transforms import transform

    columns = {name: table[name] for name in table.column_names}
    outputs = transform(plan.transformations, columns, table.num_rows)
    for name, values in outputs.items():
        table = table.append_column(name, values)
    return table.drop_columns(list(plan.hidden_columns))


@dataclass(frozen=True)
class TrainingSetSummary:
    """Shape, per-feature null rates and (optionally) a label's balance."""

    rows: int
    columns: int
    null_rates: dict[str, float]
    label_counts: dict[str, int] | None


def check_label(job: RetrievalJob, label: str) -> None:
    """``RetrievalError`` unless ``label`` is a column of the training set (checked on its
    plan, before the join runs)."""
    if label not in job.plan.output_columns:
        raise RetrievalError(
            f"label column {label!r} is not in the training set; it has "
            f"{list(job.plan.output_columns)}"
        )


def summarize(job: RetrievalJob, label: str | None = None) -> TrainingSetSummary:
    """Summarize a training set: its shape, each feature's null rate, the label's counts."""
    import pyarrow.compute as pc

    if label is not None:
        check_label(job, label)
    table = job.to_arrow()
    null_rates = {
        f.output: (table[f.output].null_count / table.num_rows if table.num_rows else 0.0)
        for f in job.plan.feature_columns
    }
    label_counts = None
    if label is not None:
        counts = pc.value_counts(table[label]).to_pylist()
        label_counts = {str(c["values"]): c["counts"] for c in sorted(counts, key=str)}
    return TrainingSetSummary(table.num_rows, table.num_columns, null_rates, label_counts)
