"""The registry file: round trip, atomic concurrent applies, and schema checks at apply."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tiny_repo import CONFIG, source_table, write_repo

from featurestore import (
    DefinitionError,
    FeatureService,
    FeatureStore,
    RegistryError,
    RetrievalError,
    SchemaMismatchError,
    UnknownFeatureError,
)
from featurestore.registry import Registry
from featurestore.registry_state import RegistryState
from featurestore.types import Float64, Int32, Int64, String

FEATURESTORE = Path(sys.executable).parent / "featurestore"


def test_round_trip_gives_back_equal_definitions(tmp_path: Path) -> None:
    repo = write_repo(
        tmp_path,
        ttl="timedelta(hours=36, microseconds=5)",
        fields=[("driver_id", "Int64"), ("conv_rate", "Float32"), ("trips", "Int64")],
        service_features=["trips", "conv_rate"],
    )
    store = FeatureStore(repo)
    applied = store.apply().new_state
    loaded = Registry(store.config.registry_path, "tiny").require()

    defined = store.load_definitions()
    assert loaded.entities == defined.entities
    assert loaded.view("stats") == defined.views["stats"]
    assert loaded.view("stats").ttl == timedelta(hours=36, microseconds=5)
    assert loaded.service("service") == defined.services["service"]
    assert loaded.service("service").refs == ["stats:trips", "stats:conv_rate"]
    assert loaded.key_dtypes("stats") == {"driver_id": Int64}
    assert loaded.to_json() == applied.to_json()
    assert RegistryState.from_json(json.loads(json.dumps(loaded.to_json()))).to_json() == (
        loaded.to_json()
    )


def test_key_dtype_comes_from_the_source_when_not_declared(tmp_path: Path) -> None:
    store = FeatureStore(write_repo(tmp_path))
    store.apply()
    assert store.state.key_dtypes("stats") == {"driver_id": Int32}  # the file holds int32
    write_repo(tmp_path, join_keys=["driver_key"])
    store.apply()
    assert store.state.key_dtypes("stats") == {"driver_key": String}


def test_resolve_turns_refs_and_services_into_projections(tmp_path: Path) -> None:
    store = FeatureStore(write_repo(tmp_path))
    store.apply()
    state = store.state
    projections, service = state.resolve(["stats:trips", "stats:conv_rate"])
    assert service is None
    assert [(p.view.name, p.features) for p in projections] == [("stats", ("trips", "conv_rate"))]
    projections, service = state.resolve("service")
    assert isinstance(service, FeatureService) and projections[0].features == ("conv_rate",)
    with pytest.raises(UnknownFeatureError, match="did you mean 'stats:trips'"):
        state.resolve(["stats:trip"])
    with pytest.raises(UnknownFeatureError, match="'nope'"):
        state.resolve("nope")


def test_a_service_object_that_differs_from_the_applied_one_is_refused(tmp_path: Path) -> None:
    store = FeatureStore(write_repo(tmp_path))
    store.apply()
    write_repo(tmp_path, service_features=["conv_rate", "trips"])  # edited, not applied
    edited = store.load_definitions().services["service"]
    with pytest.raises(RetrievalError, match=r"'service'.*run 'featurestore apply' first"):
        store.state.resolve(edited)
    write_repo(tmp_path, description="Only the description changed.")
    unchanged = store.load_definitions().services["service"]
    assert store.state.resolve(unchanged)[0][0].features == ("conv_rate",)


def test_removing_definitions_is_planned_and_resets_the_view(tmp_path: Path) -> None:
    store = FeatureStore(write_repo(tmp_path))
    store.apply()
    (tmp_path / "definitions.py").write_text(
        "from featurestore import Entity\ndriver = Entity(name='driver', join_keys=['driver_id'])\n"
    )
    plan = store.apply()
    assert [(c.kind, c.name, c.action) for c in plan.changes] == [
        ("feature view", "stats", "removed"),
        ("feature service", "service", "removed"),
    ]
    assert plan.views_to_reset() == ["stats"]
    assert not store.state.views and not store.state.services
    assert list(store.state.entities) == ["driver"]


def test_nothing_applied_is_a_clear_error(tmp_path: Path) -> None:
    store = FeatureStore(write_repo(tmp_path))
    with pytest.raises(RegistryError, match="featurestore apply"):
        store.state  # noqa: B018


def test_concurrent_applies_leave_a_valid_registry(tmp_path: Path) -> None:
    """Several `featurestore apply` processes at once: one valid file, one version each."""
    repo = write_repo(tmp_path / "repo")
    runs = [
        subprocess.Popen(
            [str(FEATURESTORE), "apply", "--repo", str(repo)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [(run.wait(timeout=120), *run.communicate()) for run in runs]
    assert all(code == 0 for code, _, _ in results), results
    # Exactly one run registered the definitions; the others found nothing to change.
    assert sum("(added)" in out for _, out, _ in results) == 1, results
    registry = repo / "data" / "registry.json"
    state = RegistryState.from_json(json.loads(registry.read_text()))
    assert [v.version for v in state.views["stats"].versions] == [1]
    assert not list(registry.parent.glob("*.tmp"))


def _table_with(**columns: pa.Array) -> pa.Table:
    table = source_table()
    for name, values in columns.items():
        index = table.schema.get_field_index(name)
        table = (
            table.remove_column(index) if values is None else table.set_column(index, name, values)
        )
    return table


@pytest.mark.parametrize(
    ("table", "overrides", "culprits"),
    [
        pytest.param(
            _table_with(trips=None), {}, ["'stats'", "'trips'", "missing"], id="missing column"
        ),
        pytest.param(
            _table_with(trips=pa.array(["1", "2", "3", "4"])),
            {},
            ["'stats'", "'trips'", "declared Int64", "string"],
            id="wrong type",
        ),
        pytest.param(
            _table_with(conv_rate=pa.array([1.0, 2.0, 3.0, 4.0], pa.float64())),
            {},
            ["'conv_rate'", "declared Float32", "double"],
            id="narrowing float",
        ),
        pytest.param(
            _table_with(event_ts=None),
            {},
            ["'stats'", "timestamp column 'event_ts'", "missing"],
            id="missing timestamp column",
        ),
        pytest.param(
            _table_with(created_ts=None),
            {},
            ["created timestamp column 'created_ts'", "missing"],
            id="missing created column",
        ),
        pytest.param(
            _table_with(event_ts=pa.array(["a", "b", "c", "d"])),
            {},
            ["'event_ts'", "should be a timestamp", "string"],
            id="timestamp column not a timestamp",
        ),
        pytest.param(
            _table_with(driver_id=None),
            {},
            ["'stats'", "join key column 'driver_id'", "missing"],
            id="missing join key",
        ),
        pytest.param(
            _table_with(driver_id=pa.array([1.0, 2.0, 1.0, 2.0])),
            {},
            ["'driver_id'", "a join key must be one of Int32, Int64, String"],
            id="float join key",
        ),
        pytest.param(
            _table_with(trips=pa.array([1, 2**63, 3, 4], pa.uint64())),
            {},
            ["'stats'", "'trips'", "declared Int64", "uint64"],
            id="uint64 column (2**63 is not an Int64)",
        ),
        pytest.param(
            _table_with(driver_id=pa.array([1, 2, 1, 2**64 - 1], pa.uint64())),
            {},
            ["'stats'", "join key 'driver_id'", "uint64"],
            id="uint64 join key",
        ),
        pytest.param(
            None,
            {"path": "data/nowhere.parquet"},
            ["'data/nowhere.parquet'", "no Parquet file"],
            id="missing file",
        ),
    ],
)
def test_apply_rejects_a_source_whose_schema_does_not_match(
    tmp_path: Path, table: pa.Table | None, overrides: dict, culprits: list[str]
) -> None:
    store = FeatureStore(write_repo(tmp_path, table=table, **overrides))
    with pytest.raises(SchemaMismatchError) as info:
        store.apply()
    for culprit in culprits:
        assert culprit in str(info.value), f"{culprit!r} not in {info.value}"
    assert not store.config.registry_path.exists()  # nothing was written


def test_every_file_of_a_folder_source_is_checked(tmp_path: Path) -> None:
    repo = write_repo(tmp_path, path="data/parts")
    parts = repo / "data" / "parts"
    parts.mkdir()
    table = source_table()
    pq.write_table(table, parts / "a.parquet")
    # Narrower ints of the same dtype and an extra column are fine in a later file.
    later = table.set_column(0, "driver_id", table["driver_id"].cast(pa.int16()))
    pq.write_table(later.append_column("more", pa.array([1, 2, 3, 4])), parts / "b.parquet")
    FeatureStore(repo).apply()

    pq.write_table(table.drop_columns(["trips"]), parts / "c.parquet")
    with pytest.raises(SchemaMismatchError) as info:
        FeatureStore(repo).apply()
    assert "'trips'" in str(info.value) and "c.parquet" in str(info.value)
    assert "missing" in str(info.value)

    stringly = table.set_column(7, "trips", pa.array(["1", "2", "3", "4"]))
    pq.write_table(stringly, parts / "c.parquet")
    with pytest.raises(SchemaMismatchError, match=r"'trips' is int64 in a.parquet but string"):
        FeatureStore(repo).apply()


def test_hidden_and_underscored_files_in_a_folder_source_are_not_its_data(
    tmp_path: Path,
) -> None:
    repo = write_repo(tmp_path, path="data/parts")
    parts = repo / "data" / "parts"
    (parts / "_temporary" / "0").mkdir(parents=True)
    table = source_table()
    pq.write_table(table, parts / "a.parquet")
    (parts / ".b.parquet").write_bytes(b"PAR1 half written")  # a writer's temporary file
    other = table.set_column(7, "trips", pa.array([9, 9, 9, 9]))  # Spark's uncommitted output
    pq.write_table(other, parts / "_temporary" / "0" / "part-0.parquet")
    store = FeatureStore(repo)
    store.apply()
    entities = pa.table(
        {"driver_id": [1, 2], "event_timestamp": pa.array([datetime(2026, 1, 1, 3)] * 2)}
    )
    trips = store.get_historical_features(entities, ["stats:trips"]).to_arrow()["trips"]
    assert trips.to_pylist() == [3, 4]
    store.materialize(datetime(2025, 1, 1), datetime(2026, 1, 1, 3))
    rows = [{"driver_id": 1}, {"driver_id": 2}]
    online = store.get_online_features(["stats:trips"], rows, now=datetime(2026, 1, 1, 3))
    assert online.to_dict()["trips"] == [3, 4]


def test_join_keys_differing_only_in_case_are_not_read_together(tmp_path: Path) -> None:
    # DuckDB binds names case-insensitively: offline would join driver_id's values for
    # DRIVER_ID while online reads each, so the two paths would disagree
    (tmp_path / "data").mkdir()
    (tmp_path / "featurestore.yaml").write_text(CONFIG)
    at = pa.array([datetime(2026, 1, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC"))
    definitions = ["from featurestore import Entity, FeatureView, Field, FileSource"]
    definitions.append("from featurestore.types import Float64")
    for key in ("driver_id", "DRIVER_ID"):
        pq.write_table(
            pa.table({key: [1], "event_ts": at, f"{key}_rate": [0.5]}),
            tmp_path / "data" / f"{key}.parquet",
        )
        definitions.append(
            f"e_{key} = Entity(name='e_{key}', join_keys=['{key}'])\n"
            f"v_{key} = FeatureView(name='v_{key}', entities=[e_{key}], "
            f"schema=[Field(name='{key}_rate', dtype=Float64)], "
            f"source=FileSource(path='data/{key}.parquet', timestamp_field='event_ts'))"
        )
    (tmp_path / "definitions.py").write_text("\n".join(definitions) + "\n")
    store = FeatureStore(tmp_path)
    store.apply()
    refs = ["v_driver_id:driver_id_rate", "v_DRIVER_ID:DRIVER_ID_rate"]
    clash = r"join keys 'driver_id' \(feature view 'v_driver_id'\) and 'DRIVER_ID' .* only in case"
    entities = pa.table({"driver_id": [1], "DRIVER_ID": [2], "event_timestamp": _entity_times(1)})
    with pytest.raises(RetrievalError, match=clash):
        store.get_historical_features(entities, refs)
    with pytest.raises(RetrievalError, match=clash):
        store.get_online_features(refs, [{"driver_id": 1, "DRIVER_ID": 2}])


def test_a_source_column_with_a_twin_differing_only_in_case_is_refused(tmp_path: Path) -> None:
    # DuckDB binds column names case-insensitively: it would read TRIPS for trips
    table = source_table()
    twin = table.add_column(0, "TRIPS", pa.array([9, 9, 9, 9]))
    repo = write_repo(tmp_path, table=twin)
    twins = r"source columns \['TRIPS', 'trips'\] differ only in case"
    with pytest.raises(SchemaMismatchError, match=twins):
        FeatureStore(repo).apply()
    repo = write_repo(tmp_path, table=table)
    store = FeatureStore(repo)
    store.apply()
    pq.write_table(twin, repo / "data" / "stats.parquet")  # changed after apply
    entities = pa.table({"driver_id": [1], "event_timestamp": pa.array([datetime(2026, 1, 1, 3)])})
    with pytest.raises(SchemaMismatchError, match=twins):
        store.get_historical_features(entities, ["stats:trips"]).to_arrow()


def test_widening_types_are_accepted(tmp_path: Path) -> None:
    table = _table_with(trips=pa.array([1, 2, 3, 2**32 - 1], pa.uint32()))
    store = FeatureStore(
        write_repo(tmp_path, table=table, fields=[("conv_rate", "Float64"), ("trips", "Int64")])
    )
    store.apply()
    assert [f.dtype for f in store.state.view("stats").features] == [Float64, Int64]


NOW = datetime(2026, 1, 1, 3, tzinfo=UTC)


def _materialized(repo: Path) -> FeatureStore:
    store = FeatureStore(repo)
    store.apply()
    store.materialize(datetime(2026, 1, 1), datetime(2026, 1, 2))
    return store


def _trips_status(repo: Path) -> str:
    with closing(FeatureStore(repo)) as store:
        response = store.get_online_features(["stats:trips"], [{"driver_id": 1}], now=NOW)
        return response.statuses["trips"][0]


def test_a_tag_the_registry_cannot_store_is_refused_before_anything_is_dropped(
    tmp_path: Path,
) -> None:
    """Defect: a timedelta tag passed validation, then apply dropped the view's online data
    and crashed writing the registry, so every key read NOT_FOUND from then on."""
    repo = write_repo(tmp_path)
    _materialized(repo).close()
    before = (repo / "data" / "registry.json").read_text()
    definitions = repo / "definitions.py"
    definitions.write_text(
        definitions.read_text().replace("tags={'team': 'rides'}", "tags={'team': timedelta(1)}")
    )
    with pytest.raises(DefinitionError, match=r"definitions.py.*'stats'.*tag 'team'"):
        FeatureStore(repo).apply()
    assert (repo / "data" / "registry.json").read_text() == before
    assert _trips_status(repo) == "PRESENT"


def test_apply_stages_the_registry_before_the_online_drop(tmp_path: Path) -> None:
    """Whatever the reason a new state cannot be written, ``before_write`` (the online drop)
    does not run: the registry is serialized and staged first."""
    store = FeatureStore(write_repo(tmp_path))
    store.apply()
    before = store.config.registry_path.read_text()
    write_repo(tmp_path, ttl="timedelta(days=2)")  # a change that resets the view
    contents = store.load_definitions()
    # Stands for any state json cannot encode (construction refuses such definitions now).
    object.__setattr__(contents.views["stats"], "tags", {"team": timedelta(1)})
    dropped: list[list[str]] = []
    with pytest.raises(TypeError, match="timedelta is not JSON serializable"):
        store.registry.apply(
            contents, store.repo_path, lambda plan: dropped.append(plan.views_to_reset())
        )
    assert dropped == []
    assert store.config.registry_path.read_text() == before
    assert not list(store.config.registry_path.parent.glob("*.tmp"))


def test_a_no_change_apply_works_in_a_read_only_repo(
    tmp_path: Path, as_unprivileged: list[str]
) -> None:
    repo = write_repo(tmp_path / "repo")
    _materialized(repo).close()
    (repo / "data" / "registry.json.lock").unlink(missing_ok=True)
    apply = [*as_unprivileged, str(FEATURESTORE), "apply", "--repo", str(repo)]
    for folder in (repo / "data", repo):
        folder.chmod(0o555)
    for path in (repo / "data").iterdir():
        path.chmod(0o444)
    try:
        result = subprocess.run(apply, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "No changes" in result.stdout

        write_repo_definitions = (repo / "definitions.py").read_text().replace("days=1", "days=2")
        (repo / "definitions.py").chmod(0o644)
        (repo / "definitions.py").write_text(write_repo_definitions)
        result = subprocess.run(apply, capture_output=True, text=True, timeout=120)
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert "cannot write the registry" in result.stderr and "writable" in result.stderr
    finally:
        for folder in (repo, repo / "data"):
            folder.chmod(0o755)
        for path in (repo / "data").iterdir():
            path.chmod(0o644)
    assert _trips_status(repo) == "PRESENT"  # nothing was dropped


KEY_CLASH = """\
from featurestore import Entity, FeatureService, FeatureView, Field, FileSource
from featurestore.types import Float32, Int32, Int64, String

driver = Entity(name="driver", join_keys=["driver_id"])


def view(name, path, key_dtype):
    return FeatureView(
        name=name,
        entities=[driver],
        schema=[Field(name="driver_id", dtype=key_dtype), Field(name=name + "_rate", dtype=Float32)],
        source=FileSource(path=path, timestamp_field="event_ts"),
    )


narrow = view("narrow", "data/narrow.parquet", Int32)
wide = view("wide", "data/wide.parquet", Int64)
named = view("named", "data/named.parquet", String)
{service}
"""


def _key_clash_repo(root: Path, service: str = "") -> FeatureStore:
    """Three views of one entity whose key ``driver_id`` is Int32, Int64 and String."""
    (root / "data").mkdir(parents=True)
    (root / "featurestore.yaml").write_text(CONFIG)
    (root / "definitions.py").write_text(KEY_CLASH.format(service=service))
    at = pa.array([datetime(2026, 1, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC"))
    for name, key in (
        ("narrow", pa.array([7], pa.int32())),
        ("wide", pa.array([2**40])),
        ("named", pa.array(["7"])),
    ):
        rate = pa.array([0.5], pa.float32())
        pq.write_table(
            pa.table({"driver_id": key, "event_ts": at, f"{name}_rate": rate}),
            root / "data" / f"{name}.parquet",
        )
    return FeatureStore(root)


def _entity_times(n: int) -> pa.Array:
    return pa.array([datetime(2026, 1, 2, tzinfo=UTC)] * n, pa.timestamp("us", tz="UTC"))


def test_views_declaring_one_key_as_string_and_integer_are_refused_together(
    tmp_path: Path,
) -> None:
    store = _key_clash_repo(tmp_path)
    store.apply()
    store.materialize(datetime(2025, 1, 1), datetime(2026, 1, 2))
    refs = ["wide:wide_rate", "named:named_rate"]
    clash = (
        r"join key 'driver_id' is Int64 in feature view 'wide' but String in feature view 'named'"
    )
    with pytest.raises(RetrievalError, match=clash):
        store.get_online_features(refs, [{"driver_id": 7}])
    entities = pa.table({"driver_id": [7], "event_timestamp": _entity_times(1)})
    with pytest.raises(RetrievalError, match=clash):
        store.get_historical_features(entities, refs)


def test_int32_and_int64_declarations_of_one_key_are_read_together(tmp_path: Path) -> None:
    store = _key_clash_repo(tmp_path)
    store.apply()
    store.materialize(datetime(2025, 1, 1), datetime(2026, 1, 2))
    refs = ["narrow:narrow_rate", "wide:wide_rate"]
    online = store.get_online_features(refs, [{"driver_id": 2**40}, {"driver_id": 7}])
    assert online.to_dict()["wide_rate"] == [0.5, None]
    assert online.to_dict()["narrow_rate"] == [None, 0.5]
    entities = pa.table({"driver_id": [2**40, 7], "event_timestamp": _entity_times(2)})
    offline = store.get_historical_features(entities, refs).to_arrow()
    assert offline["wide_rate"].to_pylist() == [0.5, None]
    assert offline["narrow_rate"].to_pylist() == [None, 0.5]


def test_a_service_reading_one_key_as_string_and_integer_is_refused_at_apply(
    tmp_path: Path,
) -> None:
    store = _key_clash_repo(tmp_path, 'both = FeatureService(name="both", features=[wide, named])')
    with pytest.raises(
        DefinitionError,
        match=r"feature service 'both': join key 'driver_id' is Int64 in feature view 'wide' "
        r"but String in feature view 'named'",
    ):
        store.apply()
    assert not store.config.registry_path.exists()
