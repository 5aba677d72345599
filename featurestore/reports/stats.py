"""The reports' statistics, on numpy arrays: binning, PSI, Jensen-Shannon, KS, sMAPE, AUC,
log loss and calibration. Each is defined once here, and tested against scipy or by hand.

Binning (what PSI and JS compare, and what the HTML plots draw):

- numbers: 10 bins cut at the reference's deciles (of its finite non-null values; equal
  deciles merge, so a feature with few distinct values has fewer bins), bin ``i`` holding
  ``edge[i-1] < x <= edge[i]``; the outer bins are open (infinities fall in them). NaN, a
  value and not a null, gets its own bin when either side holds one.
- categories (strings, booleans): the reference's 20 most frequent values, then ``other``
  (every other value, including those the reference never holds). A category's label is
  its value as a quoted JSON string (``"food"``), so a category named ``null`` or ``other``
  (``"null"``) is never taken for the report's own bins, labeled bare.
- always a ``null`` bin, so a change of the null rate moves PSI and JS too.

``psi``: ``sum((s - r) * ln(s / r))`` over the bins' shares, each share at least ``EPSILON``
(0.0001): an empty bin on one side would otherwise make it infinite. ``js_distance``: the
Jensen-Shannon distance in base 2 (0 for the same shares, 1 for disjoint ones), from scipy.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

EPSILON = 1e-4
DECILES = 10
TOP_CATEGORIES = 20
NULL_BIN = "null"
NAN_BIN = "NaN"
OTHER_BIN = "other"


@dataclass(frozen=True)
class Bins:
    """Two samples counted in the same bins: ``labels[i]`` holds ``reference[i]`` and
    ``served[i]`` values."""

    labels: tuple[str, ...]
    reference: tuple[int, ...]
    served: tuple[int, ...]

    def shares(self) -> tuple[np.ndarray, np.ndarray]:
        import numpy as np

        ref, srv = np.asarray(self.reference, float), np.asarray(self.served, float)
        return ref / max(ref.sum(), 1.0), srv / max(srv.sum(), 1.0)


def decile_edges(reference: np.ndarray) -> np.ndarray:
    """The interior bin edges: the reference's deciles, duplicates merged (module docstring)."""
    import numpy as np

    finite = reference[np.isfinite(reference)]
    if finite.size == 0:
        return np.empty(0)
    return np.unique(np.quantile(finite, np.linspace(0, 1, DECILES + 1)[1:-1]))


def numeric_bins(
    reference: np.ndarray,
    reference_nulls: int,
    served: np.ndarray,
    served_nulls: int,
    edges: np.ndarray | None = None,
) -> Bins:
    """Count non-null values (float arrays, NaN allowed) in the bins cut at ``edges``
    (default: the reference's deciles), then NaN (when present) and null."""
    import numpy as np

    if edges is None:
        edges = decile_edges(reference)

    def count(values: np.ndarray) -> np.ndarray:
        numbers = values[~np.isnan(values)]
        return np.bincount(np.searchsorted(edges, numbers, side="left"), minlength=edges.size + 1)

    labels = _interval_labels(edges)
    ref, srv = list(count(reference)), list(count(served))
    ref_nan, srv_nan = int(np.isnan(reference).sum()), int(np.isnan(served).sum())
    if ref_nan or srv_nan:
        labels.append(NAN_BIN)
        ref.append(ref_nan)
        srv.append(srv_nan)
    labels.append(NULL_BIN)
    ref.append(reference_nulls)
    srv.append(served_nulls)
    return Bins(tuple(labels), tuple(int(c) for c in ref), tuple(int(c) for c in srv))


def _interval_labels(edges: np.ndarray) -> list[str]:
    if edges.size == 0:
        return ["all"]
    cuts = [f"{e:.4g}" for e in edges]
    return (
        [f"<= {cuts[0]}"]
        + [f"({lo}, {hi}]" for lo, hi in itertools.pairwise(cuts)]
        + [f"> {cuts[-1]}"]
    )


def category_bins(
    reference: dict[str, int], reference_nulls: int, served: dict[str, int], served_nulls: int
) -> tuple[Bins, int, list[tuple[str, int]]]:
    """Count categories (value -> count, nulls apart) in the reference's top categories
    (labeled as quoted strings), ``other`` and ``null``; also the served values the reference never holds: how many
    there are and the most frequent of them (value, count)."""
    top = sorted(reference, key=lambda v: (-reference[v], v))[:TOP_CATEGORIES]
    labels = [json.dumps(v, ensure_ascii=False) for v in top]  # never a bare bin label
    ref = [reference[v] for v in top]
    srv = [served.get(v, 0) for v in top]
    labels.append(OTHER_BIN)
    ref.append(sum(reference.values()) - sum(ref))
    srv.append(sum(served.values()) - sum(srv))
    labels.append(NULL_BIN)
    ref.append(reference_nulls)
    srv.append(served_nulls)
    unseen = sorted(
        ((v, c) for v, c in served.items() if v not in reference), key=lambda vc: (-vc[1], vc[0])
    )
    return Bins(tuple(labels), tuple(ref), tuple(srv)), sum(c for _, c in unseen), unseen


def psi(bins: Bins) -> float:
    """The population stability index of the served shares against the reference's."""
    import numpy as np

    ref, srv = (np.maximum(share, EPSILON) for share in bins.shares())
    return float(np.sum((srv - ref) * np.log(srv / ref)))


def js_distance(bins: Bins) -> float:
    """The Jensen-Shannon distance (base 2) between the two samples' bin shares."""
    from scipy.spatial.distance import jensenshannon

    ref, srv = bins.shares()
    if ref.sum() == 0 or srv.sum() == 0:
        return float("nan")
    return float(jensenshannon(ref, srv, base=2))


def ks(reference: np.ndarray, served: np.ndarray) -> tuple[float, float]:
    """The two-sample Kolmogorov-Smirnov statistic and p-value (scipy) of the finite values;
    NaN when either side has none."""
    import numpy as np
    from scipy.stats import ks_2samp

    ref, srv = reference[np.isfinite(reference)], served[np.isfinite(served)]
    if ref.size == 0 or srv.size == 0:
        return float("nan"), float("nan")
    result = ks_2samp(ref, srv)
    return float(result.statistic), float(result.pvalue)


def smape(offline: np.ndarray, online: np.ndarray) -> float:
    """Symmetric mean absolute percentage error, ``mean(2|o - s| / (|o| + |s|))`` with
    ``0/0 = 0``, over the pairs where both are finite (NaN when there is none)."""
    import numpy as np

    ok = np.isfinite(offline) & np.isfinite(online)
    o, s = offline[ok], online[ok]
    if o.size == 0:
        return float("nan")
    denominator = np.abs(o) + np.abs(s)
    terms = np.divide(2 * np.abs(o - s), denominator, out=np.zeros_like(o), where=denominator != 0)
    return float(terms.mean())


QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def quantiles(values: np.ndarray) -> dict[str, float]:
    """``p1 .. p99`` of the finite values (empty when there is none)."""
    import numpy as np

    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {}
    found = np.quantile(finite, QUANTILES)
    return {f"p{round(q * 100)}": float(v) for q, v in zip(QUANTILES, found, strict=True)}


def difference_quantiles(offline: np.ndarray, online: np.ndarray) -> dict[str, float]:
    """``quantiles`` of ``offline - online`` over the pairs where both are finite (an
    infinity on either side has no finite difference; subtracting two is no warning)."""
    import numpy as np

    ok = np.isfinite(offline) & np.isfinite(online)
    return quantiles(offline[ok] - online[ok])


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """The area under the ROC curve: the probability that a random positive scores above a
    random negative, ties counting half (Mann-Whitney U over average ranks); NaN unless
    both classes are present."""
    from scipy.stats import rankdata

    positives = labels.astype(bool)
    n_pos = int(positives.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    u = ranks[positives].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


LOG_LOSS_CLIP = 1e-15


def log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean binary cross-entropy, probabilities clipped to ``[1e-15, 1 - 1e-15]``."""
    import numpy as np

    if labels.size == 0:
        return float("nan")
    p = np.clip(probabilities, LOG_LOSS_CLIP, 1 - LOG_LOSS_CLIP)
    y = labels.astype(float)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


@dataclass(frozen=True)
class CalibrationBin:
    """Predictions in ``[low, high)`` (the last bin includes 1): how many, their mean, and
    the share that were positive."""

    low: float
    high: float
    count: int
    mean_prediction: float
    positive_rate: float


CALIBRATION_BINS = 10


def calibration(labels: np.ndarray, probabilities: np.ndarray) -> list[CalibrationBin]:
    """Ten equal-width bins of predicted probability (empty bins left out)."""
    import numpy as np

    index = np.minimum((probabilities * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    out = []
    for b in range(CALIBRATION_BINS):
        inside = index == b
        n = int(inside.sum())
        if n:
            out.append(
                CalibrationBin(
                    b / CALIBRATION_BINS,
                    (b + 1) / CALIBRATION_BINS,
                    n,
                    float(probabilities[inside].mean()),
                    float(labels[inside].mean()),
                )
            )
    return out


def expected_calibration_error(bins: list[CalibrationBin]) -> float:
    """The count-weighted mean of ``|mean prediction - positive rate|`` over the bins."""
    total = sum(b.count for b in bins)
    if total == 0:
        return float("nan")
    return sum(b.count * abs(b.mean_prediction - b.positive_rate) for b in bins) / total
