"""What a Feast repo may use here, and what fails at construction naming the Feast feature.

(The whole quickstart repository, against Feast itself: tests/feast_quickstart/.)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

import featurestore as fs
from featurestore import DefinitionError, PushError, PushMode
from featurestore.push_mode import push_mode
from featurestore.types import Array, Float32, Int64, Json, Map, String, Struct

USER = fs.Entity(name="user", join_keys=["user_id"])
SOURCE = fs.FileSource(path="data/x.parquet", timestamp_field="ts")
FIELDS = [fs.Field(name="x", dtype=Float32)]


def view(**kwargs: Any) -> fs.FeatureView:
    return fs.FeatureView(name="v", entities=[USER], schema=FIELDS, source=SOURCE, **kwargs)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: fs.Project(name="qs", description="d"), r"Project is not supported.*'project:'"),
        (lambda: fs.LabelView(name="labels"), r"LabelView is not supported.*entity_df columns"),
        (
            lambda: fs.LoggingConfig(destination=None),
            r"LoggingConfig is not supported.*feature_log",
        ),
        (lambda: fs.FileLoggingDestination(path="data"), r"FileLoggingDestination is not supp"),
        (lambda: fs.Field(name="m", dtype=Map), r"field 'm': unsupported dtype Map"),
        (lambda: fs.Field(name="j", dtype=Json), r"field 'j': unsupported dtype Json"),
        (lambda: fs.Field(name="a", dtype=Array(Int64)), r"unsupported dtype Array\(\.\.\.\)"),
        (
            lambda: fs.Field(name="s", dtype=Struct({"name": String})),
            r"unsupported dtype Struct\(\.\.\.\)",
        ),
        (lambda: view(enable_validation=True), r"'v': enable_validation= .* is not supported"),
        (lambda: view(enable_validation=False), r"'v': enable_validation= .* is not supported"),
        (lambda: view(version="latest"), r"'v': version= \(the registry versions"),
        (
            lambda: fs.FileSource(path="d.parquet", timestamp_field="t", field_mapping={"a": "b"}),
            r"FileSource 'd.parquet': field_mapping= \(renaming source columns: name each Field",
        ),
        (
            lambda: fs.BigQuerySource(table="p.d.t", timestamp_field="t", field_mapping={"a": "b"}),
            r"BigQuerySource 'p.d.t': field_mapping= .* is not supported; remove field_mapping=",
        ),
        (
            lambda: fs.FeatureService(name="s", features=[view()], logging_config=object()),
            r"'s': logging_config= \(logging destinations",
        ),
        (
            lambda: fs.on_demand_feature_view(
                sources=[view()], schema=FIELDS, write_to_online_store=True
            ),
            r"write_to_online_store: transformations run at request time",
        ),
        (
            lambda: fs.on_demand_feature_view(sources=[view()], schema=FIELDS, entities=[USER]),
            r"entities \(Feast's write_to_online_store\)",
        ),
        (
            lambda: fs.on_demand_feature_view(sources=[view()], schema=FIELDS, singleton=True),
            r"singleton is not supported; remove singleton=",
        ),
        (
            lambda: fs.on_demand_feature_view(sources=[view()], schema=FIELDS, version="v2"),
            r"version= .* is not supported",
        ),
        (
            lambda: fs.PushSource(
                name="p", batch_source=fs.FileSource(path="d/*.parquet", timestamp_field="t")
            ),
            r"push source 'p': batch_source path 'd/\*.parquet' is a glob",
        ),
    ],
)
def test_unsupported_feast_features_fail_at_construction_naming_them(
    make: Any, message: str
) -> None:
    with pytest.raises(DefinitionError, match=message):
        make()


def _identity(inputs: Any) -> Any:
    return inputs


def test_feasts_defaults_are_accepted() -> None:
    decorate = fs.on_demand_feature_view(
        sources=[view()], schema=FIELDS, write_to_online_store=False, singleton=False
    )
    assert decorate(_identity).name == "_identity"
    assert fs.FileSource(path="data/x.parquet", timestamp_field="ts", field_mapping={}) == SOURCE
    assert fs.ConflictPolicy.LAST_WRITE_WINS.value == "last_write_wins"  # importable only


def test_push_modes_are_feasts_enum_or_their_names() -> None:
    assert push_mode(PushMode.ONLINE_AND_OFFLINE) is PushMode.ONLINE_AND_OFFLINE
    assert push_mode("offline") is PushMode.OFFLINE
    with pytest.raises(PushError, match=r"to='both' is not a push mode"):
        push_mode("both")


def test_a_view_over_a_push_source_reads_and_fingerprints_its_batch_source() -> None:
    from featurestore.fingerprint import view_fingerprint

    push_source = fs.PushSource(name="p", batch_source=SOURCE)
    pushed = fs.FeatureView(name="v", entities=[USER], schema=FIELDS, source=push_source)
    assert pushed.batch_source is SOURCE
    assert pushed.push_source is not None and pushed.push_source.name == "p"
    plain = view()
    dtypes = {"user_id": Int64}
    assert view_fingerprint(pushed, dtypes) == view_fingerprint(plain, dtypes)


def test_materialize_takes_feasts_keywords(tmp_path: Any) -> None:
    from tests.transform_repo import T0, write_repo

    store = write_repo(tmp_path)
    store.apply()
    report = store.materialize(start_date=datetime(2000, 1, 1, tzinfo=UTC), end_date=T0)
    assert [r.view for r in report.runs] == ["stats"]
    assert (
        store.materialize_incremental(end_date=T0, feature_views=["stats"]).runs[0].rows_read == 0
    )
    with pytest.raises(fs.MaterializationError, match="pass end once"):
        store.materialize_incremental(T0, end_date=T0)


def test_the_registry_reads_as_feasts_sdk_reads_it(tmp_path: Any) -> None:
    """Feast's accessors over what was applied (compared with Feast itself on the quickstart
    repo: tests/feast_quickstart/); an unnamed file source goes by its path, and an unknown
    name is an error naming close matches or the other kind of view."""
    from tests.transform_repo import write_repo

    store = write_repo(tmp_path)
    store.apply()
    assert [e.name for e in store.list_entities()] == ["user"]
    assert store.get_entity("user").join_keys == ("user_id",)
    assert [v.name for v in store.list_feature_views()] == ["stats"]
    assert [v.name for v in store.list_on_demand_feature_views()] == ["scored"]
    assert [v.name for v in store.list_all_feature_views()] == ["stats", "scored"]
    assert store.get_on_demand_feature_view("scored").feature_names == ("ratio", "r32")
    assert [s.name for s in store.list_feature_services()] == ["svc"]
    sources = store.list_data_sources()
    assert [type(s).__name__ for s in sources] == ["FileSource", "PushSource", "RequestSource"]
    assert store.get_data_source("data/stats") == sources[0]
    assert store.get_data_source("stats_push").batch_source == sources[0]
    assert store.list_feature_views(tags={"team": "any"}) == []
    with pytest.raises(fs.UnknownFeatureError, match=r"no entity 'usr'.*did you mean 'user'"):
        store.get_entity("usr")
    with pytest.raises(fs.UnknownFeatureError, match=r"'scored' is an on-demand feature view"):
        store.get_feature_view("scored")
    with pytest.raises(fs.UnknownFeatureError, match=r"'stats' is a feature view"):
        store.get_on_demand_feature_view("stats")
    with pytest.raises(fs.UnknownFeatureError, match=r"no data source 'stats_pus'.*'stats_push'"):
        store.get_data_source("stats_pus")
    store.close()


def test_feasts_direct_writes_are_refused_naming_the_push_to_use(tmp_path: Any) -> None:
    from tests.transform_repo import write_repo

    store = write_repo(tmp_path)
    store.apply()
    with pytest.raises(PushError, match=r"write_to_online_store is not supported.*'stats'.*"):
        store.write_to_online_store("stats", {"user_id": [1]})
    with pytest.raises(PushError, match=r"store.push\('stats_push', df, to=...\)"):
        store.write_to_offline_store("stats", {"user_id": [1]})
    with pytest.raises(fs.UnknownFeatureError, match="did you mean 'stats'"):
        store.write_to_online_store("stat", {})
    store.close()


def test_an_entitys_value_type_declares_its_keys_dtype_as_in_feast() -> None:
    """Feast's ``Entity(value_type=ValueType.INT64)``: the join key's dtype when no schema
    ``Field`` declares it; a ``Field`` that disagrees, a value type no key can have, or one
    value type for several keys is refused naming it."""
    typed = fs.Entity(name="user", join_keys=["user_id"], value_type=fs.ValueType.INT64)
    plain = fs.FeatureView(name="v", entities=[typed], schema=FIELDS, source=SOURCE)
    assert plain.declared_key_dtypes == {"user_id": Int64}
    unknown = fs.Entity(name="user", join_keys=["user_id"], value_type=fs.ValueType.UNKNOWN)
    assert fs.FeatureView(name="v", entities=[unknown], schema=FIELDS, source=SOURCE)
    with pytest.raises(DefinitionError, match=r"'user_id' is declared String but entity 'user'"):
        fs.FeatureView(
            name="v",
            entities=[typed],
            schema=[*FIELDS, fs.Field(name="user_id", dtype=String)],
            source=SOURCE,
        )
    with pytest.raises(DefinitionError, match=r"ValueType.DOUBLE cannot type a join key"):
        fs.Entity(name="e", value_type=fs.ValueType.DOUBLE)
    with pytest.raises(DefinitionError, match=r"value_type types one join key"):
        fs.Entity(name="e", join_keys=["a", "b"], value_type=fs.ValueType.STRING)
    with pytest.raises(DefinitionError, match=r"value_type must be a ValueType, got 'INT64'"):
        fs.Entity(name="e", value_type="INT64")  # type: ignore[arg-type]


def test_apply_checks_a_value_type_against_the_source_and_keeps_it(tmp_path: Any) -> None:
    from tests.transform_repo import BASE, ODFV, SERVICE, write_repo

    def definitions(value_type: str) -> str:
        return "from featurestore import ValueType\n" + BASE.replace(
            'join_keys=["user_id"])', f'join_keys=["user_id"], value_type=ValueType.{value_type})'
        )

    store = write_repo(tmp_path)
    (tmp_path / "definitions.py").write_text(definitions("STRING") + ODFV + SERVICE)
    with pytest.raises(fs.SchemaMismatchError, match=r"user_id"):
        store.apply()
    (tmp_path / "definitions.py").write_text(definitions("INT64") + ODFV + SERVICE)
    store.apply()
    store.close()
    again = fs.FeatureStore(tmp_path)  # read back from the registry
    assert again.get_entity("user").value_type is fs.ValueType.INT64
    assert again.state.views["stats"].key_dtypes == {"user_id": Int64}
    again.close()


def test_an_empty_created_timestamp_column_means_none_as_in_feast() -> None:
    """Feast's default ``created_timestamp_column=""``: no created column (it was refused as
    an invalid column name); the same source and fingerprint as leaving it out."""
    from featurestore.fingerprint import view_fingerprint

    empty = fs.FileSource(path="data/x.parquet", timestamp_field="ts", created_timestamp_column="")
    assert empty.created_timestamp_column is None and empty == SOURCE
    bigquery = fs.BigQuerySource(table="p.d.t", timestamp_field="ts", created_timestamp_column="")
    assert bigquery.created_timestamp_column is None
    with_empty = fs.FeatureView(name="v", entities=[USER], schema=FIELDS, source=empty)
    dtypes = {"user_id": Int64}
    assert view_fingerprint(with_empty, dtypes) == view_fingerprint(view(), dtypes)


def test_feasts_store_habits_in_a_notebook(tmp_path: Any) -> None:
    """``store.project``, ``store.refresh_registry()``, ``materialize(start, end, views)``
    positionally as Feast's ``(start_date, end_date, feature_views)``; ``apply(objects)``
    is refused naming the repo's files (it raised TypeError)."""
    from tests.transform_repo import T0, write_repo

    store = write_repo(tmp_path)
    store.apply()
    assert store.project == "transforms"
    assert store.refresh_registry() is None
    report = store.materialize(datetime(2000, 1, 1, tzinfo=UTC), T0, ["stats"])
    assert [r.view for r in report.runs] == ["stats"]
    assert store.materialize_incremental(T0, ["stats"]).runs[0].rows_read == 0
    with pytest.raises(DefinitionError, match=r"apply\(objects\) is not supported.*\.py file"):
        store.apply([USER])
    with pytest.raises(DefinitionError, match=r"delete it from the files"):
        store.apply(objects_to_delete=[USER], partial=False)
    store.close()
