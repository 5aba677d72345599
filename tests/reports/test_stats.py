"""The reports' statistics against independent computations: by hand, brute force, scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from featurestore.reports.stats import (
    EPSILON,
    Bins,
    auc,
    calibration,
    category_bins,
    decile_edges,
    difference_quantiles,
    expected_calibration_error,
    js_distance,
    ks,
    log_loss,
    numeric_bins,
    psi,
    quantiles,
    smape,
)


def test_psi_by_hand_on_a_small_case() -> None:
    # shares: reference 0.5 / 0.3 / 0.2 / 0 (null), served 0.25 / 0.25 / 0.25 / 0.25
    bins = Bins(("a", "b", "c", "null"), (50, 30, 20, 0), (25, 25, 25, 25))
    expected = (
        (0.25 - 0.5) * math.log(0.25 / 0.5)
        + (0.25 - 0.3) * math.log(0.25 / 0.3)
        + (0.25 - 0.2) * math.log(0.25 / 0.2)
        + (0.25 - EPSILON) * math.log(0.25 / EPSILON)  # the empty bin counts as EPSILON
    )
    assert psi(bins) == pytest.approx(expected, rel=1e-12)
    assert psi(Bins(("a", "b"), (10, 30), (1, 3))) == pytest.approx(0.0, abs=1e-15)


def test_js_distance_is_the_square_root_of_the_divergence_in_bits() -> None:
    bins = Bins(("a", "b", "c"), (50, 30, 20), (20, 30, 50))
    p, q = np.array([0.5, 0.3, 0.2]), np.array([0.2, 0.3, 0.5])
    m = (p + q) / 2
    divergence = 0.5 * np.sum(p * np.log2(p / m)) + 0.5 * np.sum(q * np.log2(q / m))
    assert js_distance(bins) == pytest.approx(math.sqrt(divergence), rel=1e-12)
    assert js_distance(Bins(("a", "b"), (1, 0), (0, 1))) == pytest.approx(1.0)
    assert math.isnan(js_distance(Bins(("a",), (0,), (3,))))


def test_ks_is_the_largest_gap_between_the_two_ecdfs() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=300), rng.normal(0.3, size=200)
    grid = np.sort(np.concatenate([a, b]))
    gap = np.max(
        np.abs(
            np.searchsorted(np.sort(a), grid, side="right") / a.size
            - np.searchsorted(np.sort(b), grid, side="right") / b.size
        )
    )
    statistic, pvalue = ks(np.append(a, [np.nan, np.inf]), b)  # non-finite values left out
    assert statistic == pytest.approx(gap)
    assert pvalue == pytest.approx(scipy_stats.ks_2samp(a, b).pvalue)
    assert all(math.isnan(v) for v in ks(np.array([np.nan]), b))


def test_deciles_cut_ten_bins_and_merge_equal_edges() -> None:
    values = np.arange(1, 101, dtype=float)
    edges = decile_edges(values)
    assert edges.size == 9
    bins = numeric_bins(values, 5, values, 0)
    assert bins.reference[:10] == (10,) * 10  # each bin holds a tenth
    assert bins.labels[-1] == "null" and bins.reference[-1] == 5
    assert bins.labels[0].startswith("<=") and bins.labels[9].startswith(">")
    few = np.array([0.0] * 50 + [1.0] * 50)
    assert decile_edges(few).tolist() == [0.0, 0.5, 1.0]  # merged: 4 bins, not 10
    # a value equal to an edge falls in the bin the edge closes; NaN has its own bin
    bins = numeric_bins(few, 0, np.array([0.0, 0.5, 0.75, 1.0, 2.0, np.nan]), 1)
    assert bins.labels == ("<= 0", "(0, 0.5]", "(0.5, 1]", "> 1", "NaN", "null")
    assert bins.served == (1, 1, 2, 1, 1, 1)


def test_categories_keep_the_top_ones_then_other_and_list_unseen_values() -> None:
    reference = {f"c{i:02d}": 100 - i for i in range(25)}  # c00 most frequent
    served = {"c00": 5, "c24": 2, "new": 3, "newer": 1}
    bins, unseen, listing = category_bins(reference, 7, served, 1)
    assert bins.labels[:20] == tuple(f'"c{i:02d}"' for i in range(20))
    assert bins.labels[20:] == ("other", "null")
    assert bins.reference[20] == sum(100 - i for i in range(20, 25))
    assert bins.served[0] == 5 and bins.served[20] == 2 + 3 + 1 and bins.served[21] == 1
    assert unseen == 4 and listing == [("new", 3), ("newer", 1)]


def test_smape_and_quantiles_by_hand() -> None:
    offline = np.array([1.0, 0.0, -2.0, np.nan, 4.0])
    online = np.array([3.0, 0.0, 2.0, 1.0, np.inf])
    # pairs: (1, 3): 2*2/4 = 1; (0, 0): 0; (-2, 2): 2*4/4 = 2; the others are not finite
    assert smape(offline, online) == pytest.approx((1 + 0 + 2) / 3)
    assert math.isnan(smape(np.array([np.nan]), np.array([1.0])))
    found = quantiles(np.array([np.nan, *range(101)]))
    assert found["p50"] == 50 and found["p5"] == 5 and found["p99"] == 99
    assert quantiles(np.array([np.nan])) == {}


def test_auc_counts_ordered_pairs_ties_half() -> None:
    rng = np.random.default_rng(5)
    y = rng.random(400) < 0.3
    scores = np.round(rng.random(400) + 0.3 * y, 1)  # rounded: many ties
    pos, neg = scores[y], scores[~y]
    brute = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (
        pos.size * neg.size
    )
    assert auc(y.astype(int), scores) == pytest.approx(brute, rel=1e-12)
    assert math.isnan(auc(np.ones(3), np.array([0.1, 0.2, 0.3])))


def test_log_loss_and_calibration_by_hand() -> None:
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.2, 0.55, 0.0])  # 0.0 is clipped, not infinite
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.55) + math.log(1 - 1e-15)) / 4
    assert log_loss(y, p) == pytest.approx(expected)
    bins = calibration(y.astype(float), np.array([0.05, 0.15, 0.95, 1.0]))
    assert [(b.low, b.count, b.positive_rate) for b in bins] == [
        (0.0, 1, 1.0),
        (0.1, 1, 0.0),
        (0.9, 2, 0.5),  # 1.0 falls in the last bin
    ]
    assert expected_calibration_error(bins) == pytest.approx(
        (abs(0.05 - 1) + abs(0.15 - 0) + 2 * abs(0.975 - 0.5)) / 4
    )


def test_categories_named_like_the_reports_own_bins_keep_apart_labels() -> None:
    """Defect: a category "null" or "other" was labeled as the null and other bins were, so
    a plot or the JSON showed two bars "null" (numbers right, labels ambiguous); a category
    is now labeled as a quoted string, the report's own bins bare."""
    reference = {"null": 5, "other": 4, 'say "hi"': 1}
    bins, _, _ = category_bins(reference, 2, {"null": 1, "x": 1}, 3)
    assert bins.labels == ('"null"', '"other"', '"say \\"hi\\""', "other", "null")
    assert len(set(bins.labels)) == len(bins.labels)
    assert bins.reference == (5, 4, 1, 0, 2) and bins.served == (1, 0, 0, 1, 3)


def test_difference_quantiles_skip_pairs_not_both_finite_without_a_warning() -> None:
    """Defect: the consistency report subtracted infinities (a served Infinity replayed as
    Infinity) and numpy printed 'RuntimeWarning: invalid value encountered in subtract' on
    the user's terminal; the pairs not both finite are left out before subtracting."""
    import warnings

    offline = np.array([1.0, np.inf, -np.inf, np.nan, 5.0])
    online = np.array([0.5, np.inf, 1.0, 2.0, 5.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = difference_quantiles(offline, online)
    assert found == quantiles(np.array([0.5, 0.0]))
    assert difference_quantiles(np.array([np.inf]), np.array([np.inf])) == {}
