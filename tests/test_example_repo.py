"""The example repo: its generator writes what the definitions declare, honestly, with signal.

The generator runs as a script (as ``make demo`` runs it) at a small scale into a copy of
``feature_repo/``; the copy is applied and its data checked by brute force.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore

EXAMPLE = Path(__file__).parents[1] / "feature_repo"
SCALE = "0.1"  # 300 users, 30 merchants, ~35,000 transactions
END = "2026-03-01T13:00:00+00:00"  # a fixed last hour: the same seed and end give the same data
# One xdist worker runs the module, so the example data is generated once per test run.
pytestmark = pytest.mark.xdist_group("example-repo")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("example")
    for file in [*EXAMPLE.glob("*.py"), EXAMPLE / "featurestore.yaml"]:
        shutil.copy(file, root)
    subprocess.run(
        [
            sys.executable,
            str(root / "generate.py"),
            "--scale",
            SCALE,
            "--out",
            str(root / "data"),
            "--end",
            END,
        ],
        check=True,
        capture_output=True,
    )
    FeatureStore(root).apply()
    return root


def read(repo: Path, name: str) -> pd.DataFrame:
    return pq.read_table(repo / "data" / f"{name}.parquet").to_pandas()


def test_the_repo_applies_with_three_views_and_a_service(repo: Path) -> None:
    state = FeatureStore(repo).state
    assert set(state.views) == {"user_profile", "merchant_stats", "user_activity"}
    assert len({r.view.ttl for r in state.views.values()}) == 3
    assert len(state.service("fraud_v1").refs) == 14
    assert state.view("user_activity").is_aggregated


def test_importing_the_generator_is_cheap_and_does_nothing(repo: Path) -> None:
    code = (
        "import importlib.util, sys; "
        f"spec = importlib.util.spec_from_file_location('generate', {str(repo / 'generate.py')!r}); "
        "module = importlib.util.module_from_spec(spec); sys.modules['generate'] = module; "
        "spec.loader.exec_module(module); "
        "print(','.join(m for m in ('numpy', 'pyarrow', 'pandas') if m in sys.modules))"
    )
    before = sorted(p.name for p in (repo / "data").iterdir())
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    assert sorted(p.name for p in (repo / "data").iterdir()) == before


def test_the_same_seed_gives_the_same_data(repo: Path, tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            str(repo / "generate.py"),
            "--scale",
            SCALE,
            "--out",
            str(tmp_path),
            "--end",
            END,
        ],
        check=True,
        capture_output=True,
    )
    for name in ("transactions", "user_profile", "merchant_stats"):
        again = pq.read_table(tmp_path / f"{name}.parquet")
        assert again.equals(pq.read_table(repo / "data" / f"{name}.parquet")), name


def test_the_data_ends_at_the_given_hour_and_nothing_is_created_after_it(repo: Path) -> None:
    end = pd.Timestamp(END)
    tx = read(repo, "transactions")
    assert end - pd.Timedelta("2h") < tx["event_timestamp"].max() <= end
    for name, event in (("user_profile", "snapshot_ts"), ("merchant_stats", "event_ts")):
        table = read(repo, name)
        assert table["created_ts"].max() <= end, name
        assert table[event].max() == end.normalize(), name  # the day's snapshot exists


def test_by_default_the_data_ends_at_the_current_hour(tmp_path: Path) -> None:
    before = pd.Timestamp.now(tz="UTC").floor("h")
    subprocess.run(
        [
            sys.executable,
            str(EXAMPLE / "generate.py"),
            "--scale",
            "0.05",
            "--out",
            str(tmp_path / "data"),
        ],
        check=True,
        capture_output=True,
    )
    after = pd.Timestamp.now(tz="UTC").floor("h")
    last = read(tmp_path, "transactions")["event_timestamp"].max()
    assert before - pd.Timedelta("6h") < last <= after
    snapshots = read(tmp_path, "user_profile")["snapshot_ts"].max()
    assert snapshots >= before.normalize() - pd.Timedelta("1D")


def test_timestamps_are_utc_microseconds(repo: Path) -> None:
    for name in ("transactions", "user_profile", "merchant_stats"):
        schema = pq.read_schema(repo / "data" / f"{name}.parquet")
        stamps = [f for f in schema if str(f.type).startswith("timestamp")]
        assert stamps and all(str(f.type) == "timestamp[us, tz=UTC]" for f in stamps), name


def test_user_activity_aggregates_only_earlier_transactions(repo: Path) -> None:
    """Brute force on the raw transactions: windows [floor(t - w, slide), t)."""
    tx = read(repo, "transactions")
    rng = np.random.default_rng(0)
    users = rng.choice(tx["user_id"].unique(), 20, replace=False)
    sample = tx[tx["user_id"].isin(users)].sample(300, random_state=0)
    frame = (
        FeatureStore(repo)
        .get_historical_features(sample[["user_id", "event_timestamp"]], features=_activity(repo))
        .to_df()
    )
    for row, got in zip(sample.itertuples(), frame.itertuples(), strict=True):
        mine = tx[tx["user_id"] == row.user_id]

        t = row.event_timestamp
        hour, day, week = (
            _window(mine, t, length, slide)
            for length, slide in (("1h", "5min"), ("24h", "1h"), ("7D", "1h"))
        )
        assert got.tx_count_1h == len(hour)
        assert got.tx_count_24h == len(day)
        assert got.amount_sum_24h == pytest.approx(day.sum(), rel=1e-12)
        assert (pd.isna(got.amount_max_7d) and week.empty) or got.amount_max_7d == week.max()
        if len(week) >= 2:
            assert got.stddev_amount_7d == pytest.approx(week.std(), rel=1e-9)


def _window(mine: pd.DataFrame, t: pd.Timestamp, length: str, slide: str) -> pd.Series:
    start = (t - pd.Timedelta(length)).floor(slide)
    inside = (mine["event_timestamp"] >= start) & (mine["event_timestamp"] < t)
    return mine.loc[inside, "amount"]


def _activity(repo: Path) -> list[str]:
    return [
        f"user_activity:{n}" for n in FeatureStore(repo).state.view("user_activity").feature_names
    ]


def test_merchant_stats_count_the_week_before_and_carry_late_corrections(repo: Path) -> None:
    tx = read(repo, "transactions")
    stats = read(repo, "merchant_stats")
    first = stats.sort_values("created_ts").drop_duplicates(["merchant_id", "event_ts"])
    sample = first.sample(40, random_state=0)
    for row in sample.itertuples():
        ts = tx["event_timestamp"]
        week = tx[
            (tx["merchant_id"] == row.merchant_id)
            & (ts >= row.event_ts - pd.Timedelta("7D"))
            & (ts < row.event_ts)
        ]
        assert row.n_tx_7d == len(week)
        assert row.created_ts > row.event_ts
    corrections = stats[stats.duplicated(["merchant_id", "event_ts"], keep=False)]
    assert len(corrections) > 0
    for _, group in corrections.groupby(["merchant_id", "event_ts"]):
        early, late = group.sort_values("created_ts").iloc[[0, -1]].itertuples()
        assert late.created_ts > early.created_ts
        assert late.fraud_rate_7d > early.fraud_rate_7d  # more frauds known later


def test_the_label_is_learnable_from_fraud_v1(repo: Path) -> None:
    """A small LightGBM model on the service's point-in-time features beats chance clearly."""
    import lightgbm as lgb
    from scipy.stats import rankdata

    tx = read(repo, "transactions")
    assert 0.01 < tx["is_fraud"].mean() < 0.06
    frame = FeatureStore(repo).get_historical_features(tx, feature_service="fraud_v1").to_df()
    features = frame.drop(
        columns=[
            "transaction_id",
            "user_id",
            "merchant_id",
            "event_timestamp",
            "amount",
            "is_fraud",
        ]
    )
    for column in features:
        kind = features[column].dtype
        features[column] = (
            features[column].astype("category")
            if kind == "string"
            else features[column].astype("float64")
        )
    label = frame["is_fraud"].astype(int).to_numpy()
    train = (frame["event_timestamp"] < frame["event_timestamp"].quantile(0.7)).to_numpy()
    params = {"objective": "binary", "verbose": -1, "num_threads": 1, "seed": 0}
    model = lgb.train(params, lgb.Dataset(features[train], label[train]), num_boost_round=100)
    scores, truth = model.predict(features[~train]), label[~train]
    ranks = rankdata(scores)
    positives = truth.sum()
    auc = (ranks[truth == 1].sum() - positives * (positives + 1) / 2) / (
        positives * (len(truth) - positives)
    )
    print(f"validation AUC {auc:.3f}")
    assert auc > 0.75, auc
