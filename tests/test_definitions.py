"""Definitions validate on construction and every error names the definition at fault."""

from __future__ import annotations

from datetime import timedelta

import pytest

from featurestore import (
    Aggregation,
    BigQuerySource,
    DefinitionError,
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
)
from featurestore.types import Bool, Float32, Float64, Int64, String

driver = Entity(name="driver", join_keys=["driver_id"])
source = FileSource(path="data/stats.parquet", timestamp_field="event_ts")


def view(**overrides: object) -> FeatureView:
    attrs: dict[str, object] = {
        "name": "stats",
        "entities": [driver],
        "schema": [Field(name="conv_rate", dtype=Float32), Field(name="trips", dtype=Int64)],
        "source": source,
        "ttl": timedelta(days=1),
    }
    return FeatureView(**{**attrs, **overrides})  # type: ignore[arg-type]


def test_a_valid_view_exposes_keys_features_and_ttl() -> None:
    v = view(schema=[Field(name="driver_id", dtype=Int64), Field(name="conv_rate", dtype=Float32)])
    assert v.join_keys == ("driver_id",)
    assert v.feature_names == ("conv_rate",)  # a field named like a key is not a feature
    assert v.declared_key_dtypes == {"driver_id": Int64}
    assert v.ttl_microseconds == 86_400_000_000


@pytest.mark.parametrize("ttl", [None, timedelta(0)])
def test_no_ttl_is_none_or_zero(ttl: timedelta | None) -> None:
    assert view(ttl=ttl).ttl_microseconds is None


@pytest.mark.parametrize(
    ("make", "culprits"),
    [
        pytest.param(
            lambda: view(
                schema=[Field(name="trips", dtype=Int64), Field(name="trips", dtype=Float64)]
            ),
            ["'stats'", "'trips'", "twice"],
            id="feature twice in one view",
        ),
        pytest.param(
            lambda: Field(name="amount", dtype="float"),
            ["'amount'", "unsupported dtype", "'float'", "Float64"],
            id="unsupported dtype (string)",
        ),
        pytest.param(
            lambda: Field(name="amount", dtype=float),
            ["'amount'", "unsupported dtype"],
            id="unsupported dtype (python type)",
        ),
        pytest.param(
            lambda: view(ttl=timedelta(hours=-1)),
            ["'stats'", "ttl", "negative"],
            id="negative ttl",
        ),
        pytest.param(
            lambda: view(ttl=3600), ["'stats'", "ttl", "timedelta"], id="ttl not a timedelta"
        ),
        pytest.param(
            lambda: view(ttl=timedelta.max),
            ["'stats'", "ttl", "longer than the maximum", "ttl=None"],
            id="ttl beyond the accepted time range",
        ),
        pytest.param(
            lambda: view(
                schema=[Field(name="driver_id", dtype=Float64), Field(name="trips", dtype=Int64)]
            ),
            ["'stats'", "join key 'driver_id'", "Float64", "Int32, Int64, String"],
            id="float join key",
        ),
        pytest.param(
            lambda: view(
                schema=[Field(name="driver_id", dtype=Bool), Field(name="trips", dtype=Int64)]
            ),
            ["'stats'", "join key 'driver_id'", "Bool"],
            id="bool join key",
        ),
        pytest.param(
            lambda: view(name="x; DROP TABLE y"),
            ["feature view", "'x; DROP TABLE y'", "not a valid name"],
            id="invalid view name",
        ),
        pytest.param(
            lambda: Entity(name="user", join_keys=["id; DROP TABLE y"]),
            ["'user'", "'id; DROP TABLE y'", "not a valid name"],
            id="invalid join key",
        ),
        pytest.param(
            lambda: Field(name="a b", dtype=Int64), ["field", "'a b'"], id="invalid field name"
        ),
        pytest.param(
            lambda: FeatureService(name="1service", features=[view()]),
            ["feature service", "'1service'"],
            id="invalid service name",
        ),
        pytest.param(
            lambda: FileSource(path="x.parquet", timestamp_field='ts"; --'),
            ["'x.parquet'", "timestamp_field", "not a valid name"],
            id="invalid timestamp column",
        ),
        pytest.param(
            lambda: view()[["conv_rate", "nope"]],
            ["'stats'", "'nope'"],
            id="projection of an unknown feature",
        ),
        pytest.param(
            lambda: view()[["conv_rat"]], ["'conv_rat'", "did you mean 'conv_rate'"], id="typo"
        ),
        pytest.param(lambda: view(entities=[]), ["'stats'", "at least one entity"], id="no entity"),
        pytest.param(
            lambda: view(entities=["driver"]), ["'stats'", "Entity"], id="entity not an Entity"
        ),
        pytest.param(
            lambda: view(schema=[Field(name="driver_id", dtype=Int64)]),
            ["'stats'", "no features"],
            id="only a key field",
        ),
        pytest.param(
            lambda: view(schema=[Field(name="event_ts", dtype=Int64)]),
            ["'stats'", "'event_ts'", "timestamp"],
            id="timestamp column declared as a feature",
        ),
        pytest.param(
            lambda: view(source="data/stats.parquet"),
            ["'stats'", "FileSource"],
            id="source not a source",
        ),
        pytest.param(
            lambda: FeatureService(name="svc", features=[view(), view()[["trips"]]]),
            ["'svc'", "view listed twice"],
            id="service lists a view twice",
        ),
        pytest.param(
            lambda: FeatureService(name="svc", features=["stats:trips"]),
            ["'svc'", "projections"],
            id="service feature not a view",
        ),
        pytest.param(
            lambda: BigQuerySource(table="t", query="select 1", timestamp_field="ts"),
            ["exactly one of table= or query="],
            id="bigquery table and query",
        ),
        pytest.param(
            lambda: BigQuerySource(table="a.b; drop", timestamp_field="ts"),
            ["'a.b; drop'", "project.dataset.table"],
            id="bigquery table name",
        ),
        # Everything the registry stores is checked here, so apply can always store it.
        pytest.param(
            lambda: view(tags={"team": timedelta(1)}),
            ["'stats'", "tag 'team'", "timedelta", "string"],
            id="tag value not a string",
        ),
        pytest.param(lambda: view(tags={1: "x"}), ["'stats'", "tag 1"], id="tag key not a string"),
        pytest.param(lambda: view(tags=["a"]), ["'stats'", "tags must be a mapping"], id="tags"),
        pytest.param(
            lambda: view(description=3), ["'stats'", "description must be a string"], id="descr"
        ),
        pytest.param(lambda: view(owner=None), ["'stats'", "owner must be a string"], id="owner"),
        pytest.param(
            lambda: view(online="yes"), ["'stats'", "online must be True or False"], id="online"
        ),
        pytest.param(
            lambda: view(entities=driver), ["'stats'", "entities must be a list"], id="entities"
        ),
        pytest.param(lambda: view(schema=None), ["'stats'", "schema must be a list"], id="schema"),
        pytest.param(
            lambda: Entity(name="user", tags={"a": 1}),
            ["entity 'user'", "tag 'a'"],
            id="entity tag",
        ),
        pytest.param(
            lambda: Entity(name="user", join_keys=5),
            ["'user'", "join_keys must be a list"],
            id="keys",
        ),
        pytest.param(
            lambda: Field(name="trips", dtype=Int64, description=b"x"),
            ["field 'trips'", "description"],
            id="field description",
        ),
        pytest.param(
            lambda: FileSource(path="x.parquet", timestamp_field="ts", owner=1),
            ["source 'x.parquet'", "owner"],
            id="source owner",
        ),
        pytest.param(
            lambda: FileSource(path="x.parquet", timestamp_field="ts", name=1),
            ["FileSource", "name"],
            id="source name",
        ),
        pytest.param(
            lambda: BigQuerySource(query=1, timestamp_field="ts"), ["query", "SQL"], id="bq query"
        ),
        pytest.param(
            lambda: BigQuerySource(table="p.d.t", timestamp_field="ts", tags={"a": None}),
            ["BigQuerySource p.d.t", "tag 'a'"],
            id="bq tags",
        ),
        pytest.param(
            lambda: FeatureService(name="svc", features=[view()], tags={"v": 2}),
            ["feature service 'svc'", "tag 'v'"],
            id="service tags",
        ),
        pytest.param(
            lambda: FeatureService(name="svc", features=view()),
            ["feature service 'svc'", "features must be a list"],
            id="service features",
        ),
        pytest.param(
            lambda: Field(name="__fs_row", dtype=Int64),
            ["field name '__fs_row'", "reserved prefix '__fs_'"],
            id="reserved field name",
        ),
        pytest.param(
            lambda: Entity(name="e", join_keys=["__fs_t"]),
            ["join key name '__fs_t'", "reserved prefix '__fs_'"],
            id="reserved join key",
        ),
        pytest.param(
            lambda: Aggregation(
                column="x", function="sum", time_window=timedelta(hours=1), name="__fs_s"
            ),
            ["name '__fs_s'", "reserved prefix '__fs_'"],
            id="reserved aggregation name",
        ),
    ],
)
def test_invalid_definitions_name_the_culprit(make, culprits: list[str]) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DefinitionError) as info:
        make()
    message = str(info.value)
    for culprit in culprits:
        assert culprit in message, f"{culprit!r} not in {message!r}"


def test_definitions_are_frozen_and_keyword_only() -> None:
    v = view()
    with pytest.raises(AttributeError):
        v.ttl = None  # type: ignore[misc]
    with pytest.raises(TypeError):
        Entity("driver", ["driver_id"])  # type: ignore[misc]


def test_a_projection_keeps_the_requested_order() -> None:
    v = view()
    service = FeatureService(name="svc", features=[v[["trips", "conv_rate"]]])
    assert service.refs == ["stats:trips", "stats:conv_rate"]
    assert FeatureService(name="all", features=[v]).refs == ["stats:conv_rate", "stats:trips"]


def test_entity_join_keys_default_to_its_name() -> None:
    assert Entity(name="user").join_keys == ("user",)


def test_string_key_fields_are_declared_with_string() -> None:
    v = view(
        entities=[Entity(name="city", join_keys=["city"])],
        schema=[Field(name="city", dtype=String), Field(name="trips", dtype=Int64)],
    )
    assert v.declared_key_dtypes == {"city": String}


def test_lists_may_be_any_iterable_and_are_stored_as_tuples() -> None:
    v = view(entities=(e for e in [driver]), schema=iter(view().schema))
    assert v.entities == (driver,) and len(v.schema) == 2
    assert v[(f for f in ["trips"])].features == ("trips",)


@pytest.mark.parametrize("key", ["event_timestamp", "Event_Timestamp"])
def test_a_join_key_named_like_the_entity_rows_time_column_is_refused(key: str) -> None:
    # It applied, materialized and served online, but no training set could read it: the
    # entity rows' event_timestamp column is each row's time, never a key.
    with pytest.raises(DefinitionError, match=f"join key '{key}' is named like the entity rows'"):
        Entity(name="moment", join_keys=[key])
    with pytest.raises(DefinitionError, match="join key 'event_timestamp'"):
        Entity(name="event_timestamp")
