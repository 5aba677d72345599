"""One feature's skew: a reference sample against a served sample (Arrow columns of one dtype).

Numbers (integers, floats, timestamps as µs) are binned at the reference's deciles; strings
and booleans by the reference's top categories (``reports/stats.py``). ``feature_skew``
computes every statistic and judges the feature with the thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from featurestore.reports.stats import Bins, category_bins, js_distance, ks, numeric_bins, psi
from featurestore.reports.thresholds import Level, Thresholds

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

UNSEEN_EXAMPLES = 5


@dataclass(frozen=True)
class FeatureSkew:
    """Every statistic of one feature (module docstring); ``None`` where it does not apply
    (KS, mean and std for categories; unseen for numbers)."""

    ref: str
    column: str
    kind: str  # "numeric" or "categorical"
    reference_rows: int
    served_rows: int
    reference_null_rate: float
    served_null_rate: float
    psi: float
    js: float
    ks_statistic: float | None
    ks_pvalue: float | None
    reference_mean: float | None
    served_mean: float | None
    reference_std: float | None
    served_std: float | None
    unseen_share: float | None
    unseen: tuple[tuple[str, int], ...]
    bins: Bins
    level: Level
    reasons: tuple[str, ...]

    @property
    def null_rate_shift(self) -> float:
        return self.served_null_rate - self.reference_null_rate

    def to_json(self) -> dict[str, Any]:
        return {
            "feature": self.ref,
            "column": self.column,
            "kind": self.kind,
            "reference_rows": self.reference_rows,
            "served_rows": self.served_rows,
            "reference_null_rate": self.reference_null_rate,
            "served_null_rate": self.served_null_rate,
            "null_rate_shift": self.null_rate_shift,
            "psi": self.psi,
            "js_distance": self.js,
            "ks_statistic": self.ks_statistic,
            "ks_pvalue": self.ks_pvalue,
            "reference_mean": self.reference_mean,
            "served_mean": self.served_mean,
            "reference_std": self.reference_std,
            "served_std": self.served_std,
            "unseen_share": self.unseen_share,
            "unseen": [{"value": v, "count": c} for v, c in self.unseen],
            "bins": {
                "labels": list(self.bins.labels),
                "reference": list(self.bins.reference),
                "served": list(self.bins.served),
            },
            "level": self.level.label,
            "reasons": list(self.reasons),
        }


def _numbers(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    import numpy as np
    import pyarrow as pa
    import pyarrow.types as pt

    values = column.drop_null()
    if pt.is_timestamp(values.type):
        values = values.cast(pa.int64())
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)


def _categories(column: pa.ChunkedArray | pa.Array) -> dict[str, int]:
    import pyarrow as pa
    import pyarrow.compute as pc

    counts = pc.value_counts(column.drop_null().cast(pa.string()))
    return dict(
        zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)
    )


def _moments(values: np.ndarray) -> tuple[float | None, float | None]:
    import numpy as np

    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None, None
    return float(finite.mean()), float(finite.std(ddof=1)) if finite.size > 1 else None


def feature_skew(
    ref: str,
    column: str,
    reference: pa.ChunkedArray | pa.Array,
    served: pa.ChunkedArray | pa.Array,
    thresholds: Thresholds,
) -> FeatureSkew:
    """Compare two samples of one feature (module docstring)."""
    import pyarrow.types as pt

    from featurestore.reports.compare import is_number

    ref_nulls, srv_nulls = reference.null_count, served.null_count
    stats: dict[str, Any] = {"unseen": (), "unseen_share": None}
    if is_number(reference.type) or pt.is_timestamp(reference.type):
        ref_values, srv_values = _numbers(reference), _numbers(served)
        bins = numeric_bins(ref_values, ref_nulls, srv_values, srv_nulls)
        stats["kind"] = "numeric"
        stats["ks_statistic"], stats["ks_pvalue"] = ks(ref_values, srv_values)
        stats["reference_mean"], stats["reference_std"] = _moments(ref_values)
        stats["served_mean"], stats["served_std"] = _moments(srv_values)
    else:
        bins, unseen, listing = category_bins(
            _categories(reference), ref_nulls, _categories(served), srv_nulls
        )
        numeric_only = ("ks_statistic", "ks_pvalue", "reference_mean", "reference_std")
        stats |= dict.fromkeys((*numeric_only, "served_mean", "served_std"), None)
        stats["kind"] = "categorical"
        stats["unseen"] = tuple(listing[:UNSEEN_EXAMPLES])
        values = len(served) - srv_nulls  # a share of served values: nulls are no category
        stats["unseen_share"] = unseen / values if values else 0.0
    n_ref, n_srv = len(reference), len(served)
    result = FeatureSkew(
        ref=ref,
        column=column,
        reference_rows=n_ref,
        served_rows=n_srv,
        reference_null_rate=ref_nulls / n_ref if n_ref else 0.0,
        served_null_rate=srv_nulls / n_srv if n_srv else 0.0,
        psi=psi(bins),
        js=js_distance(bins),
        bins=bins,
        level=Level.OK,
        reasons=(),
        **stats,
    )
    level, reasons = judge(result, thresholds)
    return replace(result, level=level, reasons=tuple(reasons))


def judge(skew: FeatureSkew, thresholds: Thresholds) -> tuple[Level, list[str]]:
    """The feature's level and the reasons for it (PSI, JS, null-rate shift, unseen)."""
    fewest = min(skew.reference_rows, skew.served_rows)
    if fewest < thresholds.min_rows:
        return Level.OK, [
            f"{fewest:,} rows on one side (< min_rows {thresholds.min_rows}): not judged"
        ]
    measured = {
        "psi": (skew.psi, f"PSI {skew.psi:.3f}"),
        "js": (skew.js, f"JS distance {skew.js:.3f}"),
        "null_rate": (
            abs(skew.null_rate_shift),
            f"null rate {skew.reference_null_rate:.1%} -> {skew.served_null_rate:.1%}",
        ),
        "unseen": (
            skew.unseen_share,
            f"{skew.unseen_share or 0:.1%} of served values are unseen categories",
        ),
    }
    level, reasons = Level.OK, []
    for metric, (value, text) in measured.items():
        reached = thresholds.level(metric, value)
        if reached is not Level.OK:
            bound = thresholds.bound(metric, reached)
            reasons.append(f"{text} (>= {metric}_{reached.label} {bound:g})")
            level = max(level, reached)
    return level, reasons
