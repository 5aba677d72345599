"""apply's schema check of a BigQuery source: the one check (``sources.check_columns``)
under BigQuery's type rule (only 64-bit numbers, TIMESTAMP-only times, no REPEATED)."""

from __future__ import annotations

import pytest
from google.cloud.bigquery import SchemaField

from featurestore import BigQuerySource, Entity, FeatureView, Field, Float32, Int32
from featurestore.errors import SchemaMismatchError
from featurestore.offline.bigquery.schema import check_bigquery_view
from featurestore.types import Int64, String

COLUMNS = {"user_id": "INTEGER", "ts": "TIMESTAMP", "created": "TIMESTAMP", "rate": "FLOAT",
           "clicks": "INT64"}  # fmt: skip


def _view(declare_key: bool = False) -> FeatureView:
    key = [Field(name="user_id", dtype=Int32)] if declare_key else []
    return FeatureView(
        name="stats",
        entities=[Entity(name="user", join_keys=["user_id"])],
        schema=[*key, Field(name="rate", dtype=Float32), Field(name="clicks", dtype=Int32)],
        source=BigQuerySource(
            table="p.ds.stats", timestamp_field="ts", created_timestamp_column="created"
        ),
    )


def _check(view: FeatureView, **changes: str | tuple[str, str] | None) -> dict:
    columns: dict[str, tuple[str, str]] = {n: (t, "NULLABLE") for n, t in COLUMNS.items()}
    for name, change in changes.items():
        if change is None:
            del columns[name]
        else:
            columns[name] = change if isinstance(change, tuple) else (change, "NULLABLE")
    fields = [SchemaField(n, t, mode=m) for n, (t, m) in columns.items()]
    return check_bigquery_view(view, lambda source: fields)


def test_64_bit_columns_back_narrower_dtypes_and_keys_get_their_dtype() -> None:
    assert _check(_view()) == {"user_id": Int64}
    assert _check(_view(), user_id="STRING") == {"user_id": String}
    assert _check(_view(declare_key=True)) == {"user_id": Int32}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ts": "DATETIME"}, "timestamp column 'ts' should be TIMESTAMP but is DATETIME; cast it "
         "in a query= source"),
        ({"created": None}, "created timestamp column 'created' is missing from the source"),
        ({"rate": "STRING"}, "column 'rate' is declared Float32 but the source holds STRING"),
        ({"clicks": ("INT64", "REPEATED")}, "column 'clicks' is REPEATED (an array)"),
        ({"user_id": "FLOAT64"}, "join key 'user_id' has type FLOAT64; a join key must be one of "
         "INT64, STRING"),
        ({"user_id": None}, "join key column 'user_id' is missing"),
    ],
    ids=["datetime time", "no created", "wrong type", "repeated", "float key", "no key"],
)  # fmt: skip
def test_mismatches_name_the_view_source_and_column(changes: dict, message: str) -> None:
    with pytest.raises(SchemaMismatchError) as info:
        _check(_view(), **changes)
    assert str(info.value).startswith("feature view 'stats' (BigQuery source 'p.ds.stats'): ")
    assert message in str(info.value)
