"""Output column names and the clash check: one rule (featurestore/columns.py), refused alike
by the offline join plan and the online read plan, before any data is read."""

from __future__ import annotations

import pyarrow as pa
import pytest

from featurestore import FeatureStore, RetrievalError
from tests.reference import RefView, SourceRow
from tests.strategies import Scenario, ViewCase, build_repo, minute


def _case(name: str, entity: str, dtypes: dict[str, str], key: dict[str, object]) -> ViewCase:
    keys = {"user": ["user_id"], "merchant": ["merchant"]}[entity]
    values = {f: 1.0 for f in dtypes}
    rows = [SourceRow(key, minute(0), minute(0), values)]
    ref = RefView(name, keys, None, list(dtypes), [rows])
    return ViewCase(
        ref, entity, dtypes, int32_keys=False, timestamp_unit="us", naive_timestamps=False
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    """Views a and b both have ``score``; c (keyed by user) has a feature named ``merchant``,
    the join key of view m."""
    user, merchant = {"user_id": 1}, {"merchant": "1"}
    views = [
        _case("a", "user", {"score": "Float64"}, user),
        _case("b", "user", {"score": "Float64"}, user),
        _case("c", "user", {"merchant": "Float64"}, user),
        _case("m", "merchant", {"rating": "Float64"}, merchant),
    ]
    return build_repo(Scenario(views, [], "event", False), tmp_path_factory.mktemp("columns"))


def _entities() -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array([1], pa.int64()),
            "merchant": pa.array(["1"]),
            "event_timestamp": pa.array([minute(1)], pa.timestamp("us", tz="UTC")),
        }
    )


def _errors(store: FeatureStore, refs: list[str], **options: bool) -> tuple[str, str]:
    with pytest.raises(RetrievalError) as offline:
        store.get_historical_features(_entities(), refs, **options)
    with pytest.raises(RetrievalError) as online:
        store.get_online_features(refs, [{"user_id": 1, "merchant": "1"}], **options)
    return str(offline.value), str(online.value)


def test_two_features_with_one_name_are_refused_with_one_message_on_both_paths(
    store: FeatureStore,
) -> None:
    offline, online = _errors(store, ["a:score", "b:score"])
    assert (
        offline
        == online
        == (
            "feature 'a:score' and feature 'b:score' would both be output as column 'score'; "
            "pass full_feature_names=True to name feature columns 'view__feature'"
        )
    )
    got = store.get_historical_features(
        _entities(), ["a:score", "b:score"], full_feature_names=True
    )
    assert got.to_arrow().column_names[-2:] == ["a__score", "b__score"]


def test_a_feature_named_like_a_join_key_is_refused_on_both_paths(store: FeatureStore) -> None:
    """Online, the response holds the join keys beside the features: a feature ``merchant``
    would silently replace the key column, so it is refused as offline is."""
    offline, online = _errors(store, ["m:rating", "c:merchant"])
    suffix = (
        " and feature 'c:merchant' would both be output as column 'merchant'; "
        "pass full_feature_names=True to name feature columns 'view__feature'"
    )
    assert offline == "entity_df column 'merchant'" + suffix
    assert online == "join key 'merchant'" + suffix


def test_the_winner_timestamp_columns_are_view_prefixed_and_checked(store: FeatureStore) -> None:
    job = store.get_historical_features(
        _entities(), ["a:score", "b:score"], full_feature_names=True, with_timestamps=True
    )
    assert job.plan.output_columns[-6:] == (
        "a__score", "a__event_ts", "a__created_ts", "b__score", "b__event_ts", "b__created_ts",
    )  # fmt: skip
    row = job.to_arrow().to_pylist()[0]
    assert row["a__event_ts"] == row["b__created_ts"] == minute(0)
    # An entity column may not take a winner-timestamp column's name either.
    entities = _entities().append_column("a__event_ts", pa.array([1]))
    with pytest.raises(
        RetrievalError,
        match=r"entity_df column 'a__event_ts' and the event time of view 'a''s winner would "
        r"both be output as column 'a__event_ts'",
    ):
        store.get_historical_features(entities, ["a:score"], with_timestamps=True)
