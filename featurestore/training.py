"""Training sets: the result of a point-in-time join, and the manifest that describes it.

A ``RetrievalJob`` runs its join once, when a result is first asked for, and keeps it.
Its manifest (JSON, ``MANIFEST_SCHEMA_VERSION``) records what the set was built from:
the feature service and its fingerprint (or each projection's fingerprint), the features
in output order with dtypes, ``as_of``, ``full_feature_names``, the row count and entity
time range, a fingerprint of every source file at build time, engine and library
versions, and when it was built. ``to_parquet(path)`` writes it to ``<path>.manifest.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestore.offline.plan import ENTITY_TIMESTAMP, FileSourcePlan, JoinPlan

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

MANIFEST_SCHEMA_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"


def file_source_fingerprints(plan: JoinPlan) -> list[dict[str, Any]]:
    """Path, size, modification time and row count of every Parquet file the plan reads."""
    import pyarrow.parquet as pq

    found = []
    for view in plan.views:
        if not isinstance(view.source, FileSourcePlan):
            continue
        for path in view.source.paths:
            stat = os.stat(path)
            found.append(
                {
                    "view": view.name,
                    "path": path,
                    "size": stat.st_size,
                    "modified_at": datetime.fromtimestamp(stat.st_mtime, UTC).isoformat(),
                    "row_count": pq.ParquetFile(path).metadata.num_rows,
                }
            )
    return found


class RetrievalJob:
    """A training set: ``.to_arrow()``, ``.to_df()``, ``.to_parquet(path)``, ``.manifest``.

    ``.to_arrow()`` is the contract: every entity column and row in the caller's order,
    then one column per feature with its declared Arrow type (nulls where no source row
    qualified). ``.to_df()`` converts it with ``types.to_pandas``.
    """

    def __init__(
        self,
        plan: JoinPlan,
        execute: Callable[[], pa.Table],
        *,
        engine: dict[str, str],
        service: tuple[str, str] | None,
        sources: list[dict[str, Any]],
    ) -> None:
        self.plan = plan
        self._execute = execute
        self._engine = engine
        self._service = service
        self._sources = sources
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
        """Write the training set to ``path`` and its manifest to ``<path>.manifest.json``."""
        import pyarrow.parquet as pq

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.to_arrow(), path)
        manifest_path = path.with_name(path.name + MANIFEST_SUFFIX)
        manifest_path.write_text(json.dumps(self.manifest, indent=2) + "\n")
        return path

    @property
    def manifest(self) -> dict[str, Any]:
        """What this training set was built from (runs the join if it has not run)."""
        import duckdb
        import pyarrow as pa
        import pyarrow.compute as pc

        import featurestore

        table = self.to_arrow()
        times = pc.min_max(table[ENTITY_TIMESTAMP]) if table.num_rows else None

        def iso(value: pa.Scalar | None) -> str | None:
            return None if value is None or not value.is_valid else value.as_py().isoformat()

        return {
            "schema_version": MANIFEST_SCHEMA_VERSION,
            "feature_service": (
                None
                if self._service is None
                else {"name": self._service[0], "fingerprint": self._service[1]}
            ),
            "features": [
                {
                    "ref": f"{view.name}:{feature.name}",
                    "column": feature.output,
                    "dtype": feature.dtype.name,
                    "projection_fingerprint": view.fingerprint,
                }
                for view in self.plan.views
                for feature in view.features
            ],
            "entity_columns": list(self.plan.entity_columns),
            "as_of": self.plan.as_of,
            "full_feature_names": self.plan.full_feature_names,
            "row_count": table.num_rows,
            "entity_time_range": {
                "min": iso(times["min"] if times else None),
                "max": iso(times["max"] if times else None),
            },
            "sources": self._sources,
            "engine": self._engine,
            "versions": {
                "featurestore": featurestore.__version__,
                "pyarrow": pa.__version__,
                "duckdb": duckdb.__version__,
            },
            "created_at": self._built_at,
        }


@dataclass(frozen=True)
class TrainingSetSummary:
    """Shape, per-feature null rates and (optionally) a label's balance."""

    rows: int
    columns: int
    null_rates: dict[str, float]
    label_counts: dict[str, int] | None


def summarize(job: RetrievalJob, label: str | None = None) -> TrainingSetSummary:
    """Summarize a training set: its shape, each feature's null rate, the label's counts."""
    import pyarrow.compute as pc

    from featurestore.errors import RetrievalError

    table = job.to_arrow()
    null_rates = {
        f.output: (table[f.output].null_count / table.num_rows if table.num_rows else 0.0)
        for f in job.plan.feature_columns
    }
    label_counts = None
    if label is not None:
        if label not in table.column_names:
            raise RetrievalError(
                f"label column {label!r} is not in the training set; it has {table.column_names}"
            )
        counts = pc.value_counts(table[label]).to_pylist()
        label_counts = {str(c["values"]): c["counts"] for c in sorted(counts, key=str)}
    return TrainingSetSummary(table.num_rows, table.num_columns, null_rates, label_counts)
