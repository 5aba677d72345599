"""A JoinPlan rendered as DuckDB SQL: the point-in-time join and "latest row per key".

Both share one definition of a view's source rows and one ordering key, so the training-set
join and materialization break ties identically:

    winner = greatest (event_ts, created_ts with NULL as -infinity, file index, row in file)

The join, per view (``render_view_join``): an ASOF JOIN on the event time alone finds each
entity row's latest event time within the window, then ``arg_max`` over the order key picks
the winner among the source rows at exactly that (keys, event time); ``as_of="created"``
is a range join instead. Everything here returns SQL text; ``offline/duckdb.py`` runs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from featurestore.columns import CREATED_TS, EVENT_TS
from featurestore.errors import RetrievalError
from featurestore.offline.plan import FileSourcePlan, JoinPlan, TileEventsPlan, ViewJoin
from featurestore.types import DType, Float32, Float64, as_utc

ENTITIES = "__fs_entities"  # the registered Arrow table: __fs_row, join keys, __fs_t
ROW = "__fs_row"
T = "__fs_t"
EVENT = "__fs_event_ts"
CREATED = "__fs_created_ts"
ORDER = "__fs_order"
LATEST = "__fs_latest_ts"
LATEST_TABLE = "__fs_latest"


def quote(name: str) -> str:
    """A DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A DuckDB string literal."""
    return "'" + text.replace("'", "''") + "'"


def join_type(dtype: DType) -> str:
    """The type keys are compared as: every integer width as BIGINT (1 == 1), strings as is."""
    return "BIGINT" if dtype.name in ("Int32", "Int64") else dtype.duckdb


def feature_alias(view_index: int, feature_index: int) -> str:
    return f"__fs_v{view_index}_f{feature_index}"


def order_key(view: ViewJoin, event: str, created: str, position: str) -> str:
    """One comparable value ordering a view's rows by (event, created, position): the
    winner among candidates is the greatest. Without a created column ``c`` is left out."""
    fields = [f"e := {event}"]
    if file_source(view).created_column:
        fields.append(f"c := {created}")
    fields.append(f"p := {position}")
    return f"struct_pack({', '.join(fields)})"


def position(source: FileSourcePlan) -> str:
    """A row's place in the source: file index, then row in file (a later one wins a tie).

    Assumes fewer than 2**40 rows per file and 2**23 files.
    """
    if len(source.paths) == 1:
        return "file_row_number"
    return "(CAST(file_index AS BIGINT) << 40) + file_row_number"


def read_files(source: FileSourcePlan, options: str = "") -> str:
    """DuckDB's scan of the source's files as one table (``options``: more read_parquet
    options).

    ``union_by_name`` makes each column's type the widest of its files' types. Without it,
    DuckDB casts every file to the first file's types: a float64 file added after a float32
    one (both may back a Float64 feature) was read as float32 (0.1 became 0.10000000149 on
    both paths, without a word), a timestamp file after a date one lost its time of day,
    and an int32 value above 32767 after an int16 file failed the read. ``check_files``
    checks every file's columns against the declared dtypes first, so the widest type is one
    the declared dtype reads.
    """
    paths = ", ".join(literal(p) for p in source.paths)
    return f"read_parquet([{paths}], union_by_name = true{', ' if options else ''}{options})"


def file_source(view: ViewJoin) -> FileSourcePlan:
    """The view's Parquet source; DuckDB does not read BigQuery tables."""
    if not isinstance(view.source, FileSourcePlan):
        raise RetrievalError(
            f"feature view {view.name!r} reads BigQuery: set offline_store type bigquery "
            "in featurestore.yaml to build training sets from it"
        )
    return view.source


def source_rows(
    view: ViewJoin,
    view_index: int,
    where: str = "TRUE",
    columns: Sequence[tuple[str, DType]] | None = None,
) -> str:
    """The view's usable source rows: typed keys, event/created time, order key, features
    (or ``columns``, e.g. an aggregated view's source columns).

    Rows with a null key or null event time are dropped here (the caller counts them).
    ``where`` may refer to EVENT and CREATED (e.g. a materialization window).
    """
    source = file_source(view)
    created = (
        f"CAST({quote(source.created_column)} AS TIMESTAMPTZ)"
        if source.created_column
        else "CAST(NULL AS TIMESTAMPTZ)"
    )
    keys = [f"CAST({quote(k.name)} AS {join_type(k.dtype)}) AS {quote(k.name)}" for k in view.keys]
    read = [(f.name, f.dtype) for f in view.features] if columns is None else list(columns)
    features = [
        f"CAST({quote(name)} AS {dtype.duckdb}) AS {feature_alias(view_index, j)}"
        for j, (name, dtype) in enumerate(read)
    ]
    not_null = " AND ".join(
        [f"{quote(k.name)} IS NOT NULL" for k in view.keys]
        + [f"{quote(source.timestamp_column)} IS NOT NULL"]
    )
    # Step 1: read only the needed columns, plus DuckDB's file index and row number, which
    # break complete ties (a later file, then a later row, wins).
    inner = f"""
        SELECT {", ".join(keys)},
               CAST({quote(source.timestamp_column)} AS TIMESTAMPTZ) AS {EVENT},
               {created} AS {CREATED},
               {", ".join([f"{position(source)} AS __fs_position", *features])}
        FROM {read_files(source, "file_row_number = true")}
        WHERE {not_null}"""
    # Step 2: fold the tie-break into one ordering key (a missing created time sorts oldest).
    order = order_key(
        view, EVENT, f"coalesce({CREATED}, '-infinity'::TIMESTAMPTZ)", "__fs_position"
    )
    return f"""
      SELECT * EXCLUDE (__fs_position), {order} AS {ORDER}
      FROM ({inner}
      ) WHERE {where}"""


def _ttl_condition(view: ViewJoin, alias: str) -> str:
    if view.ttl_us is None:
        return "TRUE"
    return f"{alias}.{EVENT} >= e.{T} - to_microseconds({view.ttl_us})"


def time_literal(value: datetime) -> str:
    """A TIMESTAMPTZ literal; a naive datetime is read as UTC."""
    return f"CAST({literal(as_utc(value).isoformat())} AS TIMESTAMPTZ)"


def prune(view: ViewJoin, t_min: datetime | None, t_max: datetime | None) -> str:
    """The source rows that can matter to entity times within [t_min, t_max].

    Nothing after ``t_max`` can be a candidate, nor (with a ttl) anything before
    ``t_min - ttl``; the condition reaches the Parquet scan, which skips row groups.
    (Entity times lie in the accepted range and a ttl is at most ``types.MAX_TTL``, so
    ``t_min - ttl`` stays far from year 1.)
    """
    if t_min is None or t_max is None:
        return "FALSE"  # no entity row has a time: nothing can match
    bounds = [f"{EVENT} <= {time_literal(t_max)}"]
    if view.ttl_us is not None:
        bounds.append(f"{EVENT} >= {time_literal(t_min - timedelta(microseconds=view.ttl_us))}")
    return " AND ".join(bounds)


def render_view_join(
    plan: JoinPlan, index: int, t_min: datetime | None, t_max: datetime | None
) -> list[str]:
    """The point-in-time join of view ``index``: SQL statements to run in order, the last
    returning ``__fs_row`` and the view's features, in any row order.

    The entity table ``__fs_entities`` holds ``__fs_row`` (the caller's row position: row
    identity is the position, never the keys), the join keys (typed as ``join_type``) and
    ``__fs_t`` (TIMESTAMPTZ), whose non-null values lie within [t_min, t_max]. Every entity
    row appears once; no candidate gives nulls.
    """
    view = plan.views[index]
    # Steps 1-2 (source_rows), keeping only rows that can matter to these entity times.
    source = source_rows(view, index, prune(view, t_min, t_max))
    outputs = _Outputs(view, index, plan.with_timestamps)
    if plan.as_of == "event" or view.source.created_column is None:
        return _join_by_event(view, outputs, source)
    return [_join_known_by_t(view, outputs, source)]


# DuckDB's arg_max over a STRUCT keeps its fields in the form it sorts by, which makes a
# float's -0.0 a 0.0 (duckdb/duckdb#25417 is the same for ORDER BY): a float field also
# carries its sign bit (``<field>__neg``), and a zero read back gets it again. The cost is
# nothing measurable; one arg_max per field instead took 2.5 times as long.
NEGATIVE = "__neg"


def winner_struct(fields: Sequence[tuple[str, DType | None]], source: str = "") -> str:
    """``struct_pack`` of ``fields`` (name, dtype; None: not a float) read from ``source``
    (an alias with its dot, or nothing), each float with its sign bit."""
    packed = []
    for name, dtype in fields:
        packed.append(f"{name} := {source}{name}")
        if dtype in (Float32, Float64):
            packed.append(f"{name}{NEGATIVE} := signbit({source}{name})")
    return f"struct_pack({', '.join(packed)})"


def winner_field(struct: str, name: str, dtype: DType | None) -> str:
    """Field ``name`` of a ``winner_struct``, a float's zero with its sign again."""
    value = f"{struct}.{name}"
    if dtype not in (Float32, Float64):
        return value
    return f"CASE WHEN {struct}.{name}{NEGATIVE} AND {value} = 0 THEN -{value} ELSE {value} END"


class _Outputs:
    """What the winner carries: the view's features, and (``with_timestamps``) its event
    and created times, packed in one struct so ``arg_max`` picks them together."""

    def __init__(self, view: ViewJoin, index: int, with_timestamps: bool) -> None:
        self.fields: list[tuple[str, str, DType | None]] = [
            (feature_alias(index, j), f.output, f.dtype) for j, f in enumerate(view.features)
        ]
        if with_timestamps:
            event, created = view.timestamp_columns
            self.fields += [(EVENT, event, None), (CREATED, created, None)]

    def struct(self) -> str:
        """The winner's struct, read from the source rows aliased ``s``."""
        return winner_struct([(name, dtype) for name, _, dtype in self.fields], "s.")

    def columns(self, struct: str) -> str:
        """The output columns, read from the winner's struct."""
        return ", ".join(
            f"{winner_field(struct, name, dtype)} AS {quote(output)}"
            for name, output, dtype in self.fields
        )


def _join_by_event(view: ViewJoin, outputs: _Outputs, source: str) -> list[str]:
    """as_of="event", in two passes: an ASOF JOIN sorting the whole source by a compound
    (event, created, position) key costs about twice the time and memory of one sorting by
    the event time alone, and only the rows at the winning event time need the rest."""
    keys = [quote(k) for k in view.key_names]
    on_keys = " AND ".join(f"e.{k} = s.{k}" for k in keys)
    in_window = f"CASE WHEN {_ttl_condition(view, 's')} THEN s.{EVENT} END"
    # Step 3a: ASOF JOIN on the event time alone: per entity row, the latest event_ts <= t
    # of its keys (ties do not matter yet: they share that time). The ttl nulls it when it
    # is older than t - ttl (then so is every other candidate). A statement of its own:
    # run in one query with step 3b, DuckDB holds both steps' memory at once.
    latest = f"""
    CREATE OR REPLACE TEMP TABLE {LATEST_TABLE} AS
      SELECT e.{ROW}, {", ".join(f"e.{k}" for k in keys)},
             {in_window if view.ttl_us is not None else f"s.{EVENT}"} AS {LATEST}
      FROM (SELECT {ROW}, {", ".join(keys)}, {T} FROM {ENTITIES}) e
      ASOF LEFT JOIN (SELECT {", ".join(keys)}, {EVENT} FROM ({source})) s
        ON {on_keys} AND e.{T} >= s.{EVENT}"""
    # Step 3b: only source rows at exactly such a (keys, event_ts) can win (a semi join
    # streams the source past the small table of 3a); arg_max over the order key breaks
    # their ties by created time, then file and row.
    pick = f"""
    WITH won AS (
      SELECT {", ".join(f"s.{k}" for k in keys)}, s.{EVENT} AS {LATEST},
             arg_max({outputs.struct()}, s.{ORDER}) AS w
      FROM ({source}) s SEMI JOIN {LATEST_TABLE} l
        ON {" AND ".join(f"s.{k} = l.{k}" for k in keys)} AND s.{EVENT} = l.{LATEST}
      GROUP BY ALL
    )
    SELECT l.{ROW}, {outputs.columns("won.w")}
    FROM {LATEST_TABLE} l LEFT JOIN won
      ON {" AND ".join(f"l.{k} = won.{k}" for k in keys)} AND l.{LATEST} = won.{LATEST}"""
    return [latest, pick]


def _join_known_by_t(view: ViewJoin, outputs: _Outputs, source: str) -> str:
    """as_of="created": also ``created_ts <= t``, a second inequality ASOF cannot take."""
    on_keys = " AND ".join(f"e.{quote(k)} = s.{quote(k)}" for k in view.key_names)
    window = " AND ".join(
        [
            f"s.{EVENT} <= e.{T}",
            _ttl_condition(view, "s"),
            f"coalesce(s.{CREATED}, '-infinity'::TIMESTAMPTZ) <= e.{T}",
        ]
    )
    # Step 3: a range join keeps every candidate in the window that was known by t, and
    # arg_max picks the greatest order key per entity row; rows without a candidate get
    # nulls through the LEFT JOIN. (Filtering an as_of="event" result instead would give
    # null where an older-created row exists.)
    return f"""
    WITH won AS (
      SELECT e.{ROW}, arg_max({outputs.struct()}, s.{ORDER}) AS w
      FROM {ENTITIES} e JOIN ({source}) s ON {on_keys} AND {window}
      GROUP BY e.{ROW}
    )
    SELECT e.{ROW}, {outputs.columns("won.w")}
    FROM {ENTITIES} e LEFT JOIN won ON won.{ROW} = e.{ROW}"""


def render_latest(view: ViewJoin, where: str) -> str:
    """One row per entity key: the winner by the order key among rows matching ``where``.

    Columns: the join keys, the features under their own names, the event and created
    times (``columns.EVENT_TS``, ``columns.CREATED_TS``).
    """
    keys = ", ".join(quote(k) for k in view.key_names)
    features = [(feature_alias(0, j), f.dtype) for j, f in enumerate(view.features)]
    struct = winner_struct([*features, (EVENT, None), (CREATED, None)])
    outputs = [
        f"{winner_field('w', name, dtype)} AS {quote(f.name)}"
        for (name, dtype), f in zip(features, view.features, strict=True)
    ]
    return f"""
    SELECT {keys}, {", ".join(outputs)}, w.{EVENT} AS {quote(EVENT_TS)}, w.{CREATED} AS {quote(CREATED_TS)}
    FROM (
      SELECT {keys}, arg_max({struct}, {ORDER}) AS w
      FROM ({source_rows(view, 0, where)})
      GROUP BY {keys}
    )"""


def render_skipped_count(view: ViewJoin) -> str:
    """How many of the view's source rows have a null key or a null event time."""
    source = file_source(view)
    null = " OR ".join(
        [f"{quote(k.name)} IS NULL" for k in view.keys]
        + [f"{quote(source.timestamp_column)} IS NULL"]
    )
    return f"SELECT count(*) FROM {read_files(source)} WHERE {null}"


# --- windowed aggregations: the events, sorted, for featurestore/aggregations/ ------------

AGG_KEYS = "__fs_agg_keys"  # distinct entity keys, numbered: __fs_code
CODE = "__fs_code"
PACKED = "__fs_packed"  # code and event time in one BIGINT (render_agg_events)


def render_agg_keys(view: ViewJoin) -> str:
    """Number the entity rows' distinct non-null keys (``__fs_code``, from 0)."""
    keys = ", ".join(quote(k) for k in view.key_names)
    not_null = " AND ".join(f"{quote(k)} IS NOT NULL" for k in view.key_names)
    return f"""
    CREATE OR REPLACE TEMP TABLE {AGG_KEYS} AS
      SELECT {keys}, CAST(row_number() OVER () - 1 AS BIGINT) AS {CODE}
      FROM (SELECT DISTINCT {keys} FROM {ENTITIES} WHERE {not_null})"""


def render_agg_rows(view: ViewJoin) -> str:
    """Every entity row's position, key code (-1: a null key) and time in µs (or NULL)."""
    on = " AND ".join(f"e.{quote(k)} = k.{quote(k)}" for k in view.key_names)
    return f"""
    SELECT e.{ROW}, coalesce(k.{CODE}, -1) AS {CODE}, epoch_us(e.{T}) AS {T}
    FROM {ENTITIES} e LEFT JOIN {AGG_KEYS} k ON {on}"""


def render_agg_events(view: ViewJoin, where: str, packed: tuple[int, int] | None = None) -> str:
    """The view's events of the numbered keys matching ``where``, sorted by (key code, the
    join's order key): key code, event and created time in µs (a missing created time as
    the smallest BIGINT; no column when the source has none), the aggregated columns under
    their own names. A statement of its
    own, so the sort is DuckDB's (parallel, spilling), never done in Python.

    ``packed``: (oldest event µs, bits of the time span) when the code and the time fit in
    one BIGINT together: the events are sorted by that one integer (then the rest of the
    order key), and it comes back in place of the code and the time, as ``__fs_packed``
    (``code << bits | event µs - oldest``). Sorting by one integer rather than a struct is
    about a third faster, and carrying two columns fewer through the sort saves a fifth."""
    columns = view.aggregated_columns
    on = " AND ".join(f"s.{quote(k)} = k.{quote(k)}" for k in view.key_names)
    values = [f"s.{feature_alias(0, j)} AS {quote(name)}" for j, (name, _) in enumerate(columns)]
    created = f"coalesce(epoch_us(s.{CREATED}), -9223372036854775808)"
    if packed is None:
        selected = [f"k.{CODE}", f"epoch_us(s.{EVENT}) AS __fs_ts"]
        order = f"k.{CODE}, s.{ORDER}"
    else:
        oldest, bits = packed
        selected = [f"(k.{CODE} << {bits}) + (epoch_us(s.{EVENT}) - {oldest}) AS {PACKED}"]
        # the packed key holds the event time: the rest of the order key as plain columns
        # (sorting by them, not by the struct, saves a quarter of the sort's time and memory)
        rest = ["c", "p"] if file_source(view).created_column else ["p"]
        order = ", ".join([PACKED] + [f"s.{ORDER}.{field}" for field in rest])
    if view.source.created_column is not None:  # as_of="created" reads it
        selected.append(f"{created} AS __fs_created")
    return f"""
    SELECT {", ".join(selected + values)}
    FROM ({source_rows(view, 0, where, columns)}) s JOIN {AGG_KEYS} k ON {on}
    ORDER BY {order}"""


def agg_prune(view: ViewJoin, t_min: datetime | None, t_max: datetime | None) -> str:
    """The events any entity time in [t_min, t_max] can aggregate: ``event_ts < t_max`` and
    no older than the longest window (plus its slide) before ``t_min``."""
    assert view.aggregations is not None
    if t_min is None or t_max is None:
        return "FALSE"
    oldest = t_min - timedelta(microseconds=view.aggregations.longest_us)
    return f"{EVENT} < {time_literal(t_max)} AND {EVENT} >= {time_literal(oldest)}"


def floor_us(value: str, size: int) -> str:
    """``value`` (BIGINT µs) rounded down to a multiple of ``size`` (DuckDB's ``//``
    truncates toward zero, so negative times, before 1970, take the other branch)."""
    return (
        f"CASE WHEN {value} >= 0 THEN {value} // {size} * {size} "
        f"ELSE -((-{value} + {size} - 1) // {size}) * {size} END"
    )


def render_tile_events(plan: TileEventsPlan) -> str:
    """Materialization's events of an aggregated view (``plan.TileEventsPlan``)."""
    view = plan.view
    columns = view.aggregated_columns
    keys = [quote(k) for k in view.key_names]
    oldest = min(bound for _, bound in plan.bounds)
    where = f"{EVENT} < {time_literal(plan.end)} AND epoch_us({EVENT}) >= {oldest}"
    lower = "TRUE" if plan.start is None else f"{EVENT} >= {time_literal(plan.start)}"
    late = (
        "FALSE"
        if plan.created_after is None or view.source.created_column is None
        else f"{CREATED} > {time_literal(plan.created_after)}"
    )
    starts = [f"greatest({floor_us('first', level)}, {bound})" for level, bound in plan.bounds]
    on = " AND ".join(f"s.{k} = l.{k}" for k in keys)
    values = [f"s.{feature_alias(0, j)} AS {quote(name)}" for j, (name, _) in enumerate(columns)]
    created = f"coalesce(epoch_us(s.{CREATED}), -9223372036854775808)"
    # Step 1: the source rows that can still matter (before the end, not older than any
    # tile kept). Step 2: per key, its first candidate (new in this run, or late). Step 3:
    # every event of those keys from the earliest tile start holding that candidate, so
    # each tile written is recomputed whole; sorted by keys, then the join's order.
    return f"""
    WITH src AS ({source_rows(view, 0, where, columns)}),
    first AS (
      SELECT {", ".join(keys)}, min(epoch_us({EVENT})) AS first
      FROM src WHERE {lower} OR {late} GROUP BY ALL
    ),
    low AS (SELECT {", ".join(keys)}, least({", ".join(starts)}) AS lower FROM first)
    SELECT {", ".join(f"s.{k}" for k in keys)}, epoch_us(s.{EVENT}) AS __fs_ts,
           {created} AS __fs_created, l.lower AS __fs_lower, {", ".join(values) or "NULL AS __fs_none"}
    FROM src s JOIN low l ON {on}
    WHERE epoch_us(s.{EVENT}) >= l.lower
    ORDER BY {", ".join(f"s.{k}" for k in keys)}, s.{ORDER}"""
