"""get_historical_features on a small hand-made repo: inputs, outputs, errors, manifest.

The random property tests prove the values; these pin down the interface around them.
"""

from __future__ import annotations

import json
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore, RetrievalError, UnknownFeatureError
from featurestore.columns import CREATED_TS
from featurestore.errors import SkippedRowsWarning
from featurestore.manifest import ServiceRef, TrainingSetManifest
from featurestore.offline.plan import plan_latest
from featurestore.types import MAX_TTL
from tests.reference import RefView, SourceRow
from tests.strategies import Scenario, ViewCase, build_repo, entity_table, minute

UTC_US = pa.timestamp("us", tz="UTC")
pytestmark = pytest.mark.filterwarnings("ignore::featurestore.errors.SkippedRowsWarning")


def _view(
    name: str, entity: str, ttl: timedelta | None, rows: list[SourceRow], dtypes: dict[str, str]
) -> ViewCase:
    keys = {"user": ["user_id"], "merchant": ["merchant"], "pair": ["merchant", "region"]}[entity]
    ref = RefView(name, keys, ttl, list(dtypes), [rows])
    return ViewCase(
        ref, entity, dtypes, int32_keys=False, timestamp_unit="us", naive_timestamps=False
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    """user_stats (int key, ttl 5 min; a late correction and a row without created time),
    merchant_stats (string key, no ttl), and a null-key row plus a null-time row."""
    user_rows = [
        SourceRow({"user_id": 1}, minute(0), minute(0), {"clicks": 10, "spend": 1.5}),
        SourceRow({"user_id": 1}, minute(0), minute(9), {"clicks": 11, "spend": 2.5}),  # late fix
        SourceRow({"user_id": 1}, minute(4), None, {"clicks": 12, "spend": None}),
        SourceRow({"user_id": 2}, minute(1), minute(1), {"clicks": 20, "spend": float("nan")}),
        SourceRow({"user_id": None}, minute(1), minute(1), {"clicks": 99, "spend": 9.0}),
        SourceRow({"user_id": 2}, None, minute(1), {"clicks": 98, "spend": 9.0}),
    ]
    merchant_rows = [
        SourceRow({"merchant": "1"}, minute(2), minute(2), {"category": "food"}),
        SourceRow({"merchant": "12"}, minute(3), minute(3), {"category": "travel"}),
    ]
    scenario = Scenario(
        views=[
            _view(
                "user_stats",
                "user",
                timedelta(minutes=5),
                user_rows,
                {"clicks": "Int64", "spend": "Float64"},
            ),
            _view("merchant_stats", "merchant", None, merchant_rows, {"category": "String"}),
        ],
        entity_rows=[],
        as_of="event",
        full_feature_names=False,
    )
    return build_repo(scenario, tmp_path_factory.mktemp("repo"))


def _entities(*rows: tuple[Any, Any, int | None]) -> pa.Table:
    return entity_table(
        [
            {
                "user_id": u,
                "merchant": m,
                "region": "",
                "event_timestamp": None if t is None else minute(t),
                "extra": i,
            }
            for i, (u, m, t) in enumerate(rows)
        ]
    )


REFS = ["user_stats:clicks", "user_stats:spend", "merchant_stats:category"]


def _get(store: FeatureStore, entity_df: Any, refs: Any = REFS, **kwargs: Any) -> pa.Table:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedRowsWarning)
        return store.get_historical_features(entity_df, refs, **kwargs).to_arrow()


def test_values_order_duplicates_and_extra_columns(store: FeatureStore) -> None:
    entities = _entities(
        (1, "12", 5), (2, "1", 1), (1, "12", 5), (3, "zz", 5), (1, "1", -1), (1, "1", 10)
    )
    got = _get(store, entities)
    assert got.column_names == [*entities.column_names, "clicks", "spend", "category"]
    assert got.select(entities.column_names).equals(entities)  # caller's rows, in order
    assert got["clicks"].to_pylist() == [12, 20, 12, None, None, None]
    spend = got["spend"].to_pylist()
    assert spend[0] is None and pd.isna(spend[1]) and spend[1] is not None  # NaN stays NaN
    assert got["category"].to_pylist() == ["travel", None, "travel", None, None, "food"]
    assert got.schema.field("clicks").type == pa.int64()
    assert got.schema.field("category").type == pa.string()
    assert got.schema.field("event_timestamp").type == UTC_US


def test_ttl_window_is_inclusive_at_both_ends(store: FeatureStore) -> None:
    # user 2's only row is at minute 1, ttl 5 minutes: visible from 1 to 6 inclusive.
    got = _get(store, _entities(*[(2, "1", t) for t in (0, 1, 6, 7)]), ["user_stats:clicks"])
    assert got["clicks"].to_pylist() == [None, 20, 20, None]


def test_as_of_created_falls_back_to_the_row_known_at_t(store: FeatureStore) -> None:
    """At minute 3 the correction (created at 9) is not known yet: the original row is.

    Filtering an ASOF result after the join would give null here.
    """
    entities = _entities((1, "1", 3), (1, "1", 9))
    by_event = _get(store, entities, ["user_stats:clicks"])
    by_created = _get(store, entities, ["user_stats:clicks"], as_of="created")
    assert by_event["clicks"].to_pylist() == [11, 12]
    assert by_created["clicks"].to_pylist() == [10, 12]


def test_null_keys_and_event_times_are_skipped_with_a_count(store: FeatureStore) -> None:
    with pytest.warns(SkippedRowsWarning, match=r"user_stats.*skipped 2 source row"):
        store.get_historical_features(_entities((1, "1", 3)), REFS).to_arrow()


@pytest.mark.parametrize("kind", ["pandas", "arrow", "parquet", "sql"])
def test_entity_df_forms_give_the_same_result(
    store: FeatureStore, kind: str, tmp_path: Path
) -> None:
    entities = _entities((1, "12", 5), (2, "1", 1))
    expected = _get(store, entities)
    if kind == "pandas":
        given: Any = entities.to_pandas()
    elif kind == "arrow":
        given = entities
    elif kind == "parquet":
        given = str(tmp_path / "entities.parquet")
        pq.write_table(entities, given)
    else:
        path = tmp_path / "entities.parquet"
        pq.write_table(entities, path)
        given = f"SELECT * FROM read_parquet('{path}') ORDER BY extra"
    got = _get(store, given)
    columns = ["clicks", "spend", "category"]
    # repr: NaN equals NaN
    assert repr(got.select(columns).to_pylist()) == repr(expected.select(columns).to_pylist())


def test_naive_and_string_timestamps_are_utc(store: FeatureStore) -> None:
    naive = pd.DataFrame(
        {"user_id": [2], "merchant": ["1"], "event_timestamp": [pd.Timestamp("2024-01-01 00:01")]}
    )
    strings = pd.DataFrame(
        {"user_id": [2], "merchant": ["1"], "event_timestamp": ["2024-01-01T01:01:00+01:00"]}
    )
    for frame in (naive, strings):
        got = _get(store, frame)
        assert got["clicks"].to_pylist() == [20]
        assert got["event_timestamp"].to_pylist() == [minute(1)]


def test_time_zones_become_utc_in_arrow_and_pandas(store: FeatureStore) -> None:
    paris = pd.DataFrame(
        {
            "user_id": [2],
            "merchant": ["1"],
            "event_timestamp": [pd.Timestamp("2024-01-01 01:01", tz="Europe/Paris")],
        }
    )
    job = store.get_historical_features(paris, REFS)
    assert job.to_arrow()["event_timestamp"].to_pylist() == [minute(1)]
    frame = job.to_df()
    assert str(frame["event_timestamp"].dtype) == "datetime64[us, UTC]"
    assert frame["clicks"].tolist() == [20]


def test_int_key_widths_are_interchangeable(store: FeatureStore) -> None:
    entities = pa.table(
        {
            "user_id": pa.array([2], pa.int32()),
            "merchant": ["1"],
            "event_timestamp": pa.array([minute(1)], UTC_US),
        }
    )
    assert _get(store, entities)["clicks"].to_pylist() == [20]


def test_empty_entity_df_gives_empty_typed_result(store: FeatureStore) -> None:
    got = _get(store, _entities().slice(0, 0))
    assert got.num_rows == 0
    assert got.schema.field("clicks").type == pa.int64()
    assert got.schema.field("spend").type == pa.float64()
    assert got.schema.field("category").type == pa.string()
    frame = store.get_historical_features(
        pd.DataFrame(
            {
                "user_id": pd.Series([], dtype="Int64"),
                "merchant": pd.Series([], dtype="string"),
                "event_timestamp": pd.Series([], dtype="datetime64[us, UTC]"),
            }
        ),
        REFS,
    ).to_df()
    assert list(frame.columns) == [
        "user_id",
        "merchant",
        "event_timestamp",
        "clicks",
        "spend",
        "category",
    ]
    assert str(frame["clicks"].dtype) == "Int64"


def test_to_df_uses_nullable_dtypes(store: FeatureStore) -> None:
    frame = store.get_historical_features(_entities((3, "zz", 5), (1, "12", 5)), REFS).to_df()
    assert str(frame["clicks"].dtype) == "Int64"
    assert frame["clicks"].isna().tolist() == [True, False]
    assert str(frame["spend"].dtype) == "Float64"
    assert frame["category"].dtype == pd.StringDtype()


def test_full_feature_names_and_collisions(store: FeatureStore) -> None:
    entities = _entities((1, "12", 5))
    got = _get(store, entities, full_feature_names=True)
    assert got.column_names[-3:] == [
        "user_stats__clicks",
        "user_stats__spend",
        "merchant_stats__category",
    ]
    clashing = entities.append_column("clicks", pa.array([0]))
    with pytest.raises(
        RetrievalError, match=r"user_stats:clicks.*'clicks'.*full_feature_names=True"
    ):
        store.get_historical_features(clashing, REFS)


def test_missing_columns_name_the_view(store: FeatureStore) -> None:
    entities = _entities((1, "12", 5))
    with pytest.raises(RetrievalError, match=r"no column 'merchant'.*merchant_stats"):
        store.get_historical_features(entities.drop_columns(["merchant"]), REFS)
    with pytest.raises(RetrievalError, match=r"'event_timestamp'.*user_stats, merchant_stats"):
        store.get_historical_features(entities.drop_columns(["event_timestamp"]), REFS)


def test_a_lone_time_column_of_another_name_is_named_in_the_error(store: FeatureStore) -> None:
    """Feast takes an entity_df's only timestamp column as the rows' time whatever its name;
    here the time is read only from 'event_timestamp', and the error names the rename."""
    entities = _entities((1, "12", 5)).rename_columns(
        ["user_id", "merchant", "region", "ts", "extra"]
    )
    with pytest.raises(RetrievalError, match=r"; rename 'ts' to 'event_timestamp' if it holds"):
        store.get_historical_features(entities, REFS)
    no_time = entities.drop_columns(["ts"])
    with pytest.raises(
        RetrievalError, match=r"it has \['user_id', 'merchant', 'region', 'extra'\]$"
    ):
        store.get_historical_features(no_time, REFS)


def test_wrong_key_type_names_view_key_and_both_types(store: FeatureStore) -> None:
    entities = _entities((1, "12", 5)).set_column(0, "user_id", pa.array(["1"]))
    with pytest.raises(RetrievalError, match=r"user_stats.*'user_id' is Int64.*string"):
        store.get_historical_features(entities, REFS)
    floats = pd.DataFrame(
        {"user_id": [1.0, None], "merchant": ["1", "1"], "event_timestamp": [minute(1)] * 2}
    )
    with pytest.raises(RetrievalError, match=r"float64.*'Int64'"):
        store.get_historical_features(floats, REFS)


def test_unknown_feature_suggests_close_names(store: FeatureStore) -> None:
    with pytest.raises(UnknownFeatureError, match=r"user_stats:clicks"):
        store.get_historical_features(_entities((1, "1", 1)), ["user_stats:click"])


def test_unparseable_timestamp_names_the_row(store: FeatureStore) -> None:
    frame = pd.DataFrame(
        {
            "user_id": [1, 2],
            "merchant": ["1", "1"],
            "event_timestamp": ["2024-01-01T00:00:00Z", "yesterday"],
        }
    )
    with pytest.raises(RetrievalError, match=r"row 1 holds 'yesterday'"):
        store.get_historical_features(frame, REFS)


def test_to_parquet_writes_the_manifest_beside_it(store: FeatureStore, tmp_path: Path) -> None:
    entities = _entities((1, "12", 5), (2, "1", 1))
    job = store.get_historical_features(entities, REFS)
    path = job.to_parquet(tmp_path / "train.parquet")
    assert repr(pq.read_table(path).to_pylist()) == repr(job.to_arrow().to_pylist())
    manifest = json.loads((tmp_path / "train.parquet.manifest.json").read_text())
    assert manifest == job.manifest.to_json()
    assert TrainingSetManifest.from_json(manifest) == job.manifest  # typed, round trip
    assert manifest["schema_version"] == 1
    assert manifest["row_count"] == 2
    assert manifest["feature_service"] is None
    assert [f["column"] for f in manifest["features"]] == ["clicks", "spend", "category"]
    assert [f["dtype"] for f in manifest["features"]] == ["Int64", "Float64", "String"]
    fingerprint = store.state.projection_fingerprint(
        store.state.view("user_stats")[["clicks", "spend"]]
    )
    assert manifest["features"][0]["projection_fingerprint"] == fingerprint
    assert manifest["entity_time_range"] == {
        "min": minute(1).isoformat(),
        "max": minute(5).isoformat(),
    }
    assert {s["view"] for s in manifest["sources"]} == {"user_stats", "merchant_stats"}
    assert all(s["size"] > 0 and s["row_count"] > 0 for s in manifest["sources"])
    assert manifest["as_of"] == "event" and manifest["engine"]["name"] == "duckdb"


def test_feature_service_by_name_object_or_features_argument(store: FeatureStore) -> None:
    entities = _entities((1, "12", 5), (2, "1", 1))
    expected = _get(store, entities)
    service = store.state.service("everything")
    for job in (
        store.get_historical_features(entities, feature_service="everything"),
        store.get_historical_features(entities, feature_service=service),
        store.get_historical_features(entities, service),
    ):
        assert repr(job.to_arrow().to_pylist()) == repr(expected.to_pylist())
        fingerprint = store.state.service_record("everything").fingerprint
        assert job.manifest.feature_service == ServiceRef("everything", fingerprint)
    with pytest.raises(RetrievalError, match="exactly one"):
        store.get_historical_features(entities, REFS, feature_service="everything")
    with pytest.raises(UnknownFeatureError, match="everything"):
        store.get_historical_features(entities, feature_service="everythin")


def test_two_views_with_one_feature_name_need_full_feature_names(tmp_path: Path) -> None:
    rows = [SourceRow({"user_id": 1}, minute(0), minute(0), {"score": 1.0})]
    scenario = Scenario(
        views=[
            _view("a", "user", None, rows, {"score": "Float64"}),
            _view("b", "user", None, rows, {"score": "Float64"}),
        ],
        entity_rows=[],
        as_of="event",
        full_feature_names=False,
    )
    store = build_repo(scenario, tmp_path)
    entities = _entities((1, "1", 1))
    with pytest.raises(
        RetrievalError,
        match=r"feature 'a:score' and feature 'b:score' would both be output as column 'score'; "
        r"pass full_feature_names=True",
    ):
        store.get_historical_features(entities, ["a:score", "b:score"])
    got = _get(store, entities, ["a:score", "b:score"], full_feature_names=True)
    assert got["a__score"].to_pylist() == got["b__score"].to_pylist() == [1.0]


def test_read_latest_counts_skipped_rows(store: FeatureStore) -> None:
    state = store.state
    plan = plan_latest(
        state.view("user_stats"),
        state.key_dtypes("user_stats"),
        repo_path=store.repo_path,
        end=minute(10),
    )
    with pytest.warns(SkippedRowsWarning, match=r"user_stats.*skipped 2 source row"):
        batches = list(store.offline_engine().read_latest(plan))
    rows = sorted((r for b in batches for r in b.to_pylist()), key=lambda r: r["user_id"])
    assert [(r["user_id"], r["clicks"]) for r in rows] == [(1, 12), (2, 20)]
    assert rows[0][CREATED_TS] is None and rows[1][CREATED_TS] == minute(1)


def test_the_longest_ttl_accepted_bounds_nothing(tmp_path: Path) -> None:
    """The maximum ttl (types.MAX_TTL, ~584 years) is valid: it prunes without overflowing."""
    rows = [SourceRow({"user_id": 1}, minute(0), minute(0), {"clicks": 7})]
    scenario = Scenario(
        views=[_view("huge", "user", MAX_TTL, rows, {"clicks": "Int64"})],
        entity_rows=[],
        as_of="event",
        full_feature_names=False,
    )
    huge = build_repo(scenario, tmp_path)
    for as_of in ("event", "created"):
        got = huge.get_historical_features(
            _entities((1, "1", 3), (1, "1", -1)), ["huge:clicks"], as_of=as_of
        ).to_arrow()
        assert got["clicks"].to_pylist() == [7, None], as_of
