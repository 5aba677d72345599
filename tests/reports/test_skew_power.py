"""Detection power of the skew statistics at the default thresholds.

Two samples of 10,000 rows from one distribution must rarely alert (at most 5% of the
features, measured over many seeds), and one feature shifted among several must be flagged
while the others are not.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pytest

from featurestore.reports import Level, Thresholds, feature_skew

N = 10_000
SEEDS = 40  # x 6 features = 240 judgments of same-distribution samples
CATEGORIES = np.array(["DE", "FR", "IN", "US", "BR", "NG"])
WEIGHTS = np.array([0.3, 0.25, 0.2, 0.15, 0.07, 0.03])

Sampler = Callable[[np.random.Generator, bool], pa.Array]


def _amount(rng: np.random.Generator, shifted: bool) -> pa.Array:
    values = rng.lognormal(3 + (0.6 if shifted else 0), 1, N)
    return pa.array(values, mask=rng.random(N) < 0.05)  # 5% nulls


def _score(rng: np.random.Generator, shifted: bool) -> pa.Array:
    return pa.array(rng.normal(0.75 if shifted else 0, 1, N).astype(np.float32))


def _count(rng: np.random.Generator, shifted: bool) -> pa.Array:
    return pa.array(rng.poisson(3 if shifted else 2, N).astype(np.int32))


def _country(rng: np.random.Generator, shifted: bool) -> pa.Array:
    weights = WEIGHTS[::-1] if shifted else WEIGHTS
    return pa.array(rng.choice(CATEGORIES, N, p=weights))


def _verified(rng: np.random.Generator, shifted: bool) -> pa.Array:
    return pa.array(rng.random(N) < (0.4 if shifted else 0.7))


def _age(rng: np.random.Generator, shifted: bool) -> pa.Array:
    values = rng.integers(0, 3000, N)
    return pa.array(values, mask=rng.random(N) < (0.12 if shifted else 0.02))  # nulls jump


FEATURES: dict[str, Sampler] = {
    "tx:amount": _amount,
    "tx:score": _score,
    "tx:count": _count,
    "user:country": _country,
    "user:verified": _verified,
    "user:age": _age,
}


def _levels(seed: int, shifted: str | None) -> dict[str, Level]:
    rng = np.random.default_rng(seed)
    thresholds = Thresholds.from_config()
    levels = {}
    for ref, sample in FEATURES.items():
        reference, served = sample(rng, False), sample(rng, ref == shifted)
        levels[ref] = feature_skew(ref, ref, reference, served, thresholds).level
    return levels


def test_same_distribution_alerts_on_at_most_5_percent_of_features() -> None:
    judged = [level for seed in range(SEEDS) for level in _levels(seed, None).values()]
    assert len(judged) == SEEDS * len(FEATURES)
    alerts = sum(level is Level.ALERT for level in judged) / len(judged)
    warnings = sum(level >= Level.WARN for level in judged) / len(judged)
    assert alerts <= 0.05, f"{alerts:.1%} of same-distribution features alerted"
    assert warnings <= 0.05, f"{warnings:.1%} of same-distribution features warned"


@pytest.mark.parametrize("shifted", list(FEATURES))
def test_a_shifted_feature_is_flagged_and_no_other(shifted: str) -> None:
    for seed in (101, 102, 103):
        levels = _levels(seed, shifted)
        assert levels[shifted] is Level.ALERT, (shifted, seed, levels)
        assert all(level is Level.OK for ref, level in levels.items() if ref != shifted), levels


def test_unseen_categories_are_flagged_and_listed() -> None:
    rng = np.random.default_rng(7)
    reference = pa.array(rng.choice(CATEGORIES, N, p=WEIGHTS))
    served = pa.array(np.where(rng.random(N) < 0.08, "XX", rng.choice(CATEGORIES, N, p=WEIGHTS)))
    skew = feature_skew(
        "user:country", "user__country", reference, served, Thresholds.from_config()
    )
    assert skew.level is Level.ALERT
    assert skew.unseen[0][0] == "XX" and 0.07 < (skew.unseen_share or 0) < 0.09
    assert any("unseen" in reason for reason in skew.reasons)


def test_small_samples_are_reported_not_judged() -> None:
    thresholds = Thresholds.from_config({"min_rows": 500})
    skew = feature_skew("a:b", "a__b", pa.array([1.0] * 400), pa.array([9.0] * 400), thresholds)
    assert skew.psi > 1 and skew.level is Level.OK
    assert "not judged" in skew.reasons[0]


def test_the_unseen_share_is_of_served_values_not_of_rows_with_nulls() -> None:
    """A sparse feature (90% null on both sides) whose served values are 40% a category
    training never held: the share used to be taken over every row, nulls included (4%,
    under the alert), hiding a shift the null rate does not show."""
    reference = pa.array(["US"] * 50 + ["DE"] * 50 + [None] * 900)
    served = pa.array(["US"] * 30 + ["DE"] * 30 + ["XX"] * 40 + [None] * 900)
    skew = feature_skew("user:coupon", "user__coupon", reference, served, Thresholds.from_config())
    assert skew.unseen_share == pytest.approx(0.4)
    assert any("40.0% of served values are unseen" in reason for reason in skew.reasons)
