"""Aggregation definitions: defaults, names, one-line errors at construction or apply, what
the registry stores and what the fingerprint covers."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import Entity, FeatureService, FeatureView, Field, FileSource
from featurestore.definition_dicts import view_from_dict, view_to_dict
from featurestore.definitions import Aggregation
from featurestore.errors import DefinitionError
from featurestore.registry import Registry
from featurestore.repo import RepoContents
from featurestore.types import Float64, Int64, String

USER = Entity(name="user", join_keys=["user_id"])
SOURCE = FileSource(path="data/txn.parquet", timestamp_field="ts")


def view(*aggregations: Aggregation, schema: list[Field] | None = None) -> FeatureView:
    return FeatureView(
        name="txn",
        entities=[USER],
        source=SOURCE,
        schema=schema or [],
        aggregations=list(aggregations),
    )


def test_defaults_name_and_slide() -> None:
    a = Aggregation(column="amount", function="sum", time_window=timedelta(hours=24))
    assert a.name == "sum_amount_1d" and a.slide_interval == timedelta(hours=1)
    b = Aggregation(column="amount", function="mean", time_window=timedelta(minutes=90))
    assert b.name == "mean_amount_90m" and b.slide_interval == timedelta(minutes=5)
    c = Aggregation(column="amount", function="max", time_window=timedelta(days=30), name="m")
    assert c.name == "m" and c.slide_interval == timedelta(days=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"function": "median"}, "unknown function 'median'"),
        ({"function": "summ"}, "did you mean 'sum'"),
        ({"time_window": timedelta(0)}, "time_window must be a positive timedelta"),
        ({"slide_interval": timedelta(minutes=7)}, "not a multiple of its slide interval"),
        ({"time_window": timedelta(milliseconds=1500)}, "give slide_interval"),
        ({"column": "1x"}, "not a valid name"),
        # a window, not a ttl: no "use ttl=None" advice
        ({"time_window": timedelta(days=219000)}, r"time_window 219000 days, 0:00:00 is longer"),
    ],
)
def test_bad_aggregations_fail_at_construction_naming_them(kwargs: dict, message: str) -> None:
    args = {"column": "amount", "function": "sum", "time_window": timedelta(hours=1), **kwargs}
    with pytest.raises(DefinitionError, match=message):
        Aggregation(**args)


def test_a_view_is_plain_or_aggregated_never_both() -> None:
    agg = Aggregation(column="amount", function="sum", time_window=timedelta(hours=1))
    with pytest.raises(DefinitionError, match="plain or aggregated, never both"):
        view(agg, schema=[Field(name="country", dtype=String)])
    with pytest.raises(DefinitionError, match="sum accepts Int32, Int64, Float32, Float64"):
        view(
            Aggregation(column="country", function="sum", time_window=timedelta(hours=1)),
            schema=[Field(name="country", dtype=String)],
        )
    with pytest.raises(DefinitionError, match="two aggregations are named 'sum_amount_1h'"):
        view(agg, agg)
    with pytest.raises(DefinitionError, match="aggregates the join key"):
        view(Aggregation(column="user_id", function="count", time_window=timedelta(hours=1)))
    with pytest.raises(DefinitionError, match="timestamp column"):
        view(Aggregation(column="ts", function="count", time_window=timedelta(hours=1)))


def test_registry_round_trip_and_dtypes_read_from_the_source_at_apply(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array([1], pa.int64()),
                "ts": pa.array([0], pa.timestamp("us", tz="UTC")),
                "amount": [1.5],
                "qty": pa.array([2], pa.int32()),
                "country": ["FR"],
            }
        ),
        tmp_path / "data" / "txn.parquet",
    )
    aggs = [
        Aggregation(column="amount", function="mean", time_window=timedelta(days=7)),
        Aggregation(column="qty", function="sum", time_window=timedelta(hours=1)),
        Aggregation(column="country", function="last", time_window=timedelta(days=1)),
    ]
    v = view(*aggs)
    service = FeatureService(name="s", features=[v[["sum_qty_1h"]]])
    contents = RepoContents(entities={"user": USER}, views={"txn": v}, services={"s": service})
    state = Registry(tmp_path / "data" / "registry.json", "p").apply(contents, tmp_path).new_state
    applied = state.view("txn")
    assert [(f.name, f.dtype) for f in applied.features] == [
        ("mean_amount_7d", Float64),
        ("sum_qty_1h", Int64),
        ("last_country_1d", String),
    ]
    assert view_from_dict(view_to_dict(applied), {"user": USER}) == applied
    # a bad dtype found only at apply is a one-line error naming the aggregation
    bad = view(Aggregation(column="country", function="mean", time_window=timedelta(hours=1)))
    with pytest.raises(
        DefinitionError,
        match="aggregation 'mean_country_1h' takes mean of column 'country', which is String",
    ):
        Registry(tmp_path / "data" / "r2.json", "p").apply(
            RepoContents(entities={"user": USER}, views={"txn": bad}), tmp_path
        )


def test_the_fingerprint_covers_the_aggregations(tmp_path: Path) -> None:
    from featurestore.fingerprint import view_fingerprint

    base = Aggregation(column="amount", function="sum", time_window=timedelta(hours=1))
    declared = [Field(name="amount", dtype=Float64)]
    fingerprints = {
        view_fingerprint(view(a, schema=declared), {"user_id": Int64})
        for a in (
            base,
            Aggregation(column="amount", function="sum", time_window=timedelta(hours=2)),
            Aggregation(
                column="amount",
                function="sum",
                time_window=timedelta(hours=1),
                slide_interval=timedelta(minutes=1),
            ),
            Aggregation(
                column="amount",
                function="max",
                time_window=timedelta(hours=1),
                name="sum_amount_1h",
            ),
        )
    }
    assert len(fingerprints) == 4


def test_plan_names_a_redefined_aggregation_by_its_parameters() -> None:
    """``plan`` (and serving's refusal of a model) say what changed in the constructor's words:
    ``slide_interval 5m -> 10m``, never the stored ``slide_interval_us``."""
    from featurestore.diff import view_diff

    declared = [Field(name="amount", dtype=Float64)]
    before = view(
        Aggregation(column="amount", function="sum", time_window=timedelta(hours=1)),
        schema=declared,
    )
    after = view(
        Aggregation(
            column="amount",
            function="sum",
            time_window=timedelta(hours=2),
            slide_interval=timedelta(minutes=10),
            name="sum_amount_1h",
        ),
        schema=declared,
    )
    keys = {"user_id": "Int64"}
    assert view_diff(view_to_dict(before), view_to_dict(after), keys, keys) == (
        "aggregations: sum_amount_1h time_window 1h -> 2h, slide_interval 5m -> 10m",
    )
