"""A JoinPlan rendered as BigQuery (GoogleSQL): the point-in-time join and "latest row per key".

The same plan ``offline/duckdb_sql.py`` renders for DuckDB, written for BigQuery rather
than transpiled: an inequality join on the keys and ``t - ttl <= event_ts <= t``, and
``QUALIFY ROW_NUMBER() ... = 1`` to keep each entity row's winner. Both queries here share
one ordering, so the training-set join and materialization break ties identically:

    winner = greatest (event_ts, created_ts with NULL oldest, the view's feature values)

BigQuery tables have no row order, so the DuckDB engine's last tie-break (later file, then
later row) has no analogue here: rows tied on event and created time are ordered by the
values of every feature of the view, in schema order (NULL oldest, NaN above numbers).
That makes the choice deterministic and the same offline and in materialization, at the
price of reading every feature column of a requested view.

Every identifier is validated (``definitions.check_name``) and quoted with backticks;
timestamps are rendered as literals so that BigQuery can prune partitions. With
``with_timestamps`` each view's winner also gives its event and created times. Entity times
lie in the accepted range (``types.MIN_TIME`` .. ``MAX_TIME``, checked before a join runs)
and a ttl is at most ``types.MAX_TTL``, so ``t - ttl`` never leaves BigQuery's TIMESTAMP
range (years 1 to 9999) and needs no guard. Everything here returns SQL text;
``offline/bigquery/join.py`` and ``offline/bigquery/engine.py`` run it.

The tests run this SQL on DuckDB through sqlglot's transpiler, so it is written to mean the
same in both dialects rather than relying on their defaults: NULLS LAST is explicit, NaN
is ordered by an explicit IS_NAN term (BigQuery sorts NaN below every number, DuckDB
above), and every QUALIFY sits beside a WHERE (which BigQuery requires).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from featurestore.columns import CREATED_TS, EVENT_TS
from featurestore.definitions import check_name
from featurestore.errors import RetrievalError
from featurestore.offline.plan import (
    BigQuerySourcePlan,
    JoinPlan,
    LatestPlan,
    TileEventsPlan,
    ViewJoin,
)
from featurestore.types import DType, as_utc

ROW = "__fs_row"  # the entity row's identity: its position, numbered on upload
T = "__fs_t"  # the entity row's time, TIMESTAMP
EVENT = "__fs_event_ts"
CREATED = "__fs_created_ts"
_TABLE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){1,2}$")


def quote(name: str) -> str:
    """A validated identifier in backticks: a name ``check_name`` rejects never reaches SQL."""
    check_name(name, "column")
    return f"`{name}`"


def quote_any(name: str) -> str:
    """Any column name (e.g. an entity_df column) in backticks, escaped as BigQuery reads it."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def table_ref(table: str) -> str:
    """``project.dataset.table`` (or ``dataset.table``), validated, each part in backticks."""
    if not isinstance(table, str) or not _TABLE.match(table):
        raise RetrievalError(
            f"BigQuery table {table!r} is not of the form project.dataset.table or dataset.table"
        )
    return ".".join(f"`{part}`" for part in table.split("."))


def timestamp_literal(value: datetime) -> str:
    """A TIMESTAMP literal (naive datetimes are UTC), microsecond precision."""
    return f"TIMESTAMP '{as_utc(value).isoformat(sep=' ', timespec='microseconds')}'"


def bigquery_type(dtype: DType) -> str:
    """The BigQuery type a dtype is read as (Int32 -> INT64, Float32 -> FLOAT64: no narrower)."""
    return dtype.bigquery


def feature_alias(view_index: int, feature_index: int) -> str:
    return f"__fs_v{view_index}_f{feature_index}"


@dataclass(frozen=True)
class TimeRange:
    """The entity rows' times, known before rendering: literals prune partitions.

    ``None`` bounds mean every entity time is null (no row can match anything).
    """

    earliest: datetime | None
    latest: datetime | None


def bigquery_source(view: ViewJoin) -> BigQuerySourcePlan:
    """The view's BigQuery source; the BigQuery engine does not read Parquet files."""
    if not isinstance(view.source, BigQuerySourcePlan):
        raise RetrievalError(
            f"feature view {view.name!r} reads Parquet files: the BigQuery engine reads "
            "BigQuerySource views only; use offline_store type duckdb for file sources"
        )
    return view.source


def source_relation(view: ViewJoin) -> str:
    """The view's BigQuery table (quoted) or query (as a subquery)."""
    source = bigquery_source(view)
    if source.table is not None:
        return table_ref(source.table)
    return f"(\n{source.query}\n)"


def _earliest_candidate(view: ViewJoin, times: TimeRange) -> datetime | None:
    """min(t) - ttl, or None when the view has no ttl (or no entity row has a time)."""
    if view.ttl_us is None or times.earliest is None:
        return None
    return times.earliest - timedelta(microseconds=view.ttl_us)


def _index(view: ViewJoin, name: str) -> int:
    """A feature's position among all the view's features (its alias in ``source_rows``)."""
    return [n for n, _ in view.all_features].index(name)


def source_rows(
    view: ViewJoin,
    view_index: int,
    where: str,
    columns: Sequence[tuple[str, DType]] | None = None,
) -> str:
    """The view's usable source rows: typed keys, event/created time, every feature (or
    ``columns``: an aggregated view's source columns).

    Rows with a null key or a null event time are dropped (they can never be candidates).
    ``where`` filters on the *raw* timestamp columns so that BigQuery prunes partitions.
    """
    source = bigquery_source(view)
    created = (
        f"CAST({quote(source.created_column)} AS TIMESTAMP)"
        if source.created_column
        else "CAST(NULL AS TIMESTAMP)"
    )
    selected = [
        f"CAST({quote(k.name)} AS {bigquery_type(k.dtype)}) AS {quote(k.name)}" for k in view.keys
    ]
    selected += [
        f"CAST({quote(source.timestamp_column)} AS TIMESTAMP) AS {EVENT}",
        f"{created} AS {CREATED}",
    ]
    selected += [
        f"CAST({quote(name)} AS {bigquery_type(dtype)}) AS {feature_alias(view_index, j)}"
        for j, (name, dtype) in enumerate(view.all_features if columns is None else columns)
    ]
    not_null = [f"{quote(k.name)} IS NOT NULL" for k in view.keys]
    not_null.append(f"{quote(source.timestamp_column)} IS NOT NULL")
    return (
        "SELECT\n      "
        + ",\n      ".join(selected)
        + f"\n    FROM {source_relation(view)}"
        + "\n    WHERE "
        + "\n      AND ".join([*not_null, where])
    )


def winner_order(view: ViewJoin, view_index: int, alias: str) -> str:
    """ORDER BY of the winner first: event time, created time, then the feature values.

    Written so BigQuery and DuckDB order alike: NULL last in DESC in both; NaN is put
    above every number explicitly (BigQuery sorts NaN lowest, DuckDB highest).
    """
    terms = [f"{alias}.{EVENT} DESC", f"{alias}.{CREATED} DESC NULLS LAST"]
    for j, (_, dtype) in enumerate(view.all_features):
        value = f"{alias}.{feature_alias(view_index, j)}"
        if dtype.name in ("Float32", "Float64"):
            terms.append(f"IF(IS_NAN({value}), 1, 0) DESC NULLS LAST")
        terms.append(f"{value} DESC NULLS LAST")
    return ", ".join(terms)


def _window(view: ViewJoin, as_of: str) -> list[str]:
    """The candidate conditions of the join, beyond equal keys."""
    conditions = [f"s.{EVENT} <= e.{T}"]
    if view.ttl_us is not None:
        conditions.append(f"s.{EVENT} >= TIMESTAMP_SUB(e.{T}, INTERVAL {view.ttl_us} MICROSECOND)")
    if as_of == "created":
        # A missing created time counts as known (it sorts oldest, as in the tie-break).
        conditions.append(f"(s.{CREATED} IS NULL OR s.{CREATED} <= e.{T})")
    return conditions


def _pruning(view: ViewJoin, times: TimeRange) -> str:
    """Restrict the source scan to [min(t) - ttl, max(t)]: nothing outside can win."""
    if times.latest is None:
        return "FALSE"
    column = quote(bigquery_source(view).timestamp_column)
    bounds = [f"{column} <= {timestamp_literal(times.latest)}"]
    earliest = _earliest_candidate(view, times)
    if earliest is not None:
        bounds.insert(0, f"{column} >= {timestamp_literal(earliest)}")
    return " AND ".join(bounds)


def render_join(
    plan: JoinPlan,
    entities: str,
    times: TimeRange,
    *,
    entity_columns: bool = False,
) -> str:
    """The point-in-time join as one BigQuery query, ordered by ``__fs_row``.

    ``entities`` is a table (or subquery) with ``__fs_row`` (INT64, unique), the join keys
    (INT64 or STRING) and ``__fs_t`` (TIMESTAMP). Output: ``__fs_row``, then (with
    ``entity_columns``) every other column of ``entities`` but ``__fs_t``, then the plan's
    outputs under their names, in its order (``JoinPlan.output_schema``).
    """
    ctes = []
    joins = []
    selects = [f"e.{ROW}"]
    if entity_columns:
        selects.append(f"e.* EXCEPT ({ROW}, {T})")
    for i, view in enumerate(plan.views):
        alias = f"v{i}"
        ctes.append(
            f"-- Step 1, view {view.name}: its usable source rows (non-null keys and event time),\n"
            f"  -- read only within [min(t) - ttl, max(t)], the window any entity row can see.\n"
            f"  {alias} AS (\n    {source_rows(view, i, _pruning(view, times))}\n  )"
        )
        keys_equal = " AND ".join(f"e.{quote(k)} = s.{quote(k)}" for k in view.key_names)
        carried = [(feature_alias(i, _index(view, f.name)), f.output) for f in view.features]
        if plan.with_timestamps:
            carried += list(zip((EVENT, CREATED), view.timestamp_columns, strict=True))
        requested = [f"s.{name}" for name, _ in carried]
        ctes.append(
            f"-- Step 2, view {view.name}: per entity row, every candidate (same keys,\n"
            f"  -- t - ttl <= event_ts <= t{', created_ts <= t' if plan.as_of == 'created' else ''});"
            " the latest wins.\n"
            f"  {alias}_won AS (\n"
            f"    SELECT e.{ROW}, {', '.join(requested)}\n"
            f"    FROM {entities} AS e\n"
            f"    JOIN {alias} AS s\n"
            f"      ON {keys_equal}\n"
            # (BigQuery takes QUALIFY only beside a WHERE, GROUP BY or HAVING clause.)
            f"    WHERE {' AND '.join(_window(view, plan.as_of))}\n"
            f"    QUALIFY ROW_NUMBER() OVER (\n"
            f"      PARTITION BY e.{ROW} ORDER BY {winner_order(view, i, 's')}) = 1\n"
            "  )"
        )
        joins.append(f"LEFT JOIN {alias}_won ON {alias}_won.{ROW} = e.{ROW}")
        selects += [f"{alias}_won.{name} AS {quote(output)}" for name, output in carried]
    return (
        "WITH\n  "
        + ",\n  ".join(ctes)
        + "\n-- Step 3: every entity row, with each view's winner (NULL when none), in order.\n"
        + f"SELECT {', '.join(selects)}\nFROM {entities} AS e\n"
        + "\n".join(joins)
        + f"\nORDER BY e.{ROW}"
    )


def render_latest(plan: LatestPlan) -> str:
    """One row per entity key: the winner among rows with ``event_ts <= end`` and
    (``event_ts >= start`` or ``created_ts > created_after``).

    Columns: the join keys, every feature under its own name, the event and created times
    (``columns.EVENT_TS``, ``columns.CREATED_TS``).
    """
    view = plan.view
    source = bigquery_source(view)
    event = quote(source.timestamp_column)
    lower = "TRUE" if plan.start is None else f"{event} >= {timestamp_literal(plan.start)}"
    late = (
        "FALSE"
        if plan.created_after is None or source.created_column is None
        else f"{quote(source.created_column)} > {timestamp_literal(plan.created_after)}"
    )
    where = f"{event} <= {timestamp_literal(plan.end)} AND ({lower} OR {late})"
    keys = ", ".join(f"s.{quote(k)}" for k in view.key_names)
    features = [
        f"s.{feature_alias(0, j)} AS {quote(name)}" for j, (name, _) in enumerate(view.all_features)
    ]
    return (
        "-- The view's usable source rows in the materialization window; per entity key the\n"
        "-- greatest (event_ts, created_ts, feature values) wins, as in the training-set join.\n"
        f"WITH s AS (\n    {source_rows(view, 0, where)}\n)\n"
        f"SELECT {keys}, {', '.join(features)}, s.{EVENT} AS {EVENT_TS}, s.{CREATED} AS {CREATED_TS}\n"
        "FROM s\n"
        "WHERE TRUE  -- BigQuery takes QUALIFY only beside a WHERE, GROUP BY or HAVING clause\n"
        f"QUALIFY ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY {winner_order(view, 0, 's')}) = 1"
    )


def render_entity_table(query: str, timestamp_column: str) -> str:
    """An entity SQL query, numbered: every column, ``__fs_t`` and ``__fs_row``.

    Run once into a table (ROW_NUMBER() OVER () is not stable between evaluations, so the
    join must read stored numbers). A query has no inherent order: the numbering is the
    row order of the result.
    """
    return (
        f"SELECT q.*, CAST(q.{quote_any(timestamp_column)} AS TIMESTAMP) AS {T},\n"
        f"  ROW_NUMBER() OVER () - 1 AS {ROW}\n"
        f"FROM (\n{query}\n) AS q"
    )


# --- windowed aggregations: the events, sorted, for featurestore/aggregations/ ------------


def event_order(view: ViewJoin, alias: str) -> str:
    """ORDER BY of an aggregated view's events, earliest first: keys, event time, created
    time (NULL first: it sorts oldest), then the aggregated columns' values (NULL first,
    NaN last): the join's order, values standing in for DuckDB's file and row."""
    terms = [f"{alias}.{quote(k)}" for k in view.key_names]
    terms += [f"{alias}.{EVENT}", f"{alias}.{CREATED} NULLS FIRST"]
    for j, (_, dtype) in enumerate(view.aggregated_columns):
        value = f"{alias}.{feature_alias(0, j)}"
        if dtype.name in ("Float32", "Float64"):
            terms.append(f"IF(IS_NAN({value}), 1, 0) NULLS FIRST")
        terms.append(f"{value} NULLS FIRST")
    return ", ".join(terms)


def _agg_outputs(view: ViewJoin, alias: str) -> list[str]:
    created = f"IFNULL(UNIX_MICROS({alias}.{CREATED}), -9223372036854775807 - 1)"
    return [
        *(f"{alias}.{quote(k)}" for k in view.key_names),
        f"UNIX_MICROS({alias}.{EVENT}) AS __fs_ts",
        f"{created} AS __fs_created",
        *(
            f"{alias}.{feature_alias(0, j)} AS {quote(name)}"
            for j, (name, _) in enumerate(view.aggregated_columns)
        ),
    ]


def render_agg_events(view: ViewJoin, entities: str, times: TimeRange) -> str:
    """An aggregated view's events of the entity rows' keys (``entities`` holds them), the
    ones any entity time can aggregate (before the latest time, no older than the longest
    window before the earliest), sorted by ``event_order``: join keys, ``__fs_ts`` and
    ``__fs_created`` (µs; a missing created time as the smallest INT64), the columns."""
    assert view.aggregations is not None
    column = quote(bigquery_source(view).timestamp_column)
    if times.earliest is None or times.latest is None:
        where = "FALSE"
    else:
        oldest = times.earliest - timedelta(microseconds=view.aggregations.longest_us)
        where = f"{column} >= {timestamp_literal(oldest)} AND {column} < {timestamp_literal(times.latest)}"
    keys_equal = " AND ".join(f"e.{quote(k)} = s.{quote(k)}" for k in view.key_names)
    return (
        "-- An aggregated view's events of the requested keys, in the join's order; the\n"
        "-- aggregations themselves are computed from them by featurestore/aggregations/.\n"
        f"WITH s AS (\n    {source_rows(view, 0, where, view.aggregated_columns)}\n)\n"
        f"SELECT {', '.join(_agg_outputs(view, 's'))}\nFROM s\n"
        f"WHERE EXISTS (SELECT 1 FROM {entities} AS e WHERE {keys_equal})\n"
        f"ORDER BY {event_order(view, 's')}"
    )


def _floor_us(value: str, size: int) -> str:
    """``value`` (INT64 µs) down to a multiple of ``size`` (DIV truncates toward zero)."""
    return (
        f"IF({value} >= 0, DIV({value}, {size}) * {size}, "
        f"-DIV(-{value} + {size} - 1, {size}) * {size})"
    )


def render_tile_events(plan: TileEventsPlan) -> str:
    """Materialization's events of an aggregated view (``plan.TileEventsPlan``), as the
    DuckDB engine reads them (offline/duckdb_sql.py ``render_tile_events``), plus
    ``__fs_lower``, sorted by ``event_order``."""
    view = plan.view
    source = bigquery_source(view)
    event = quote(source.timestamp_column)
    keys = [quote(k) for k in view.key_names]
    oldest = min(bound for _, bound in plan.bounds)
    where = f"{event} < {timestamp_literal(plan.end)} AND {event} >= TIMESTAMP_MICROS({oldest})"
    lower = "TRUE" if plan.start is None else f"s.{EVENT} >= {timestamp_literal(plan.start)}"
    late = (
        "FALSE"
        if plan.created_after is None or source.created_column is None
        else f"s.{CREATED} > {timestamp_literal(plan.created_after)}"
    )
    starts = [f"GREATEST({_floor_us('f.first', level)}, {bound})" for level, bound in plan.bounds]
    first = starts[0] if len(starts) == 1 else f"LEAST({', '.join(starts)})"
    on = " AND ".join(f"s.{k} = l.{k}" for k in keys)
    # Step 1: the source rows that can still matter. Step 2: per key, its first candidate
    # (new in this run, or late). Step 3: every event of those keys from the earliest tile
    # start holding it, so each tile written is recomputed whole; in the join's order.
    return (
        f"WITH s AS (\n    {source_rows(view, 0, where, view.aggregated_columns)}\n),\n"
        f"f AS (SELECT {', '.join(f's.{k}' for k in keys)}, MIN(UNIX_MICROS(s.{EVENT})) AS first\n"
        f"  FROM s WHERE {lower} OR {late} GROUP BY {', '.join(f's.{k}' for k in keys)}),\n"
        f"l AS (SELECT {', '.join(f'f.{k}' for k in keys)}, {first} AS lower FROM f)\n"
        f"SELECT {', '.join(_agg_outputs(view, 's'))}, l.lower AS __fs_lower\n"
        f"FROM s JOIN l ON {on}\n"
        f"WHERE UNIX_MICROS(s.{EVENT}) >= l.lower\n"
        f"ORDER BY {event_order(view, 's')}"
    )
