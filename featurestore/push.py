"""Pushes: rows from an application or a stream into a push source's views, online and offline.

``FeatureStore.push(name, rows, to=...)`` and ``POST /push`` (Feast's body) both call ``push``.
``to`` is ``"online"``, ``"offline"`` or ``"online_and_offline"`` (or Feast's ``PushMode``).
The push source is found through the applied feature views whose source it is (there may be
several; each gets the rows).

Checked before anything is written, so a refused push writes nothing anywhere
(``PushError``, naming the column or row): every view's join keys (typed as applied: 1 and
"1" are different keys), the batch source's event time, and every view's features must be
columns; a null key or event time, an event or created time outside the accepted range, an
event time after the push time (by more than ``FUTURE_ALLOWANCE``, a minute, for clocks: online
would serve the row before it happens and, never regressing, keep it over every real row until
then), or a value that does not fit its declared dtype (``types.coerce``: the rule
transformations and request fields follow) is refused. The created time is optional: a row
without one (no column, or null) gets the push time, so ties and incremental materialization
treat it as any late row. A string column where a time is expected is read as ISO 8601 (naive
means UTC; ``types.parse_iso_times``, as entity rows are). Other columns of the
batch source's files may be given (else they are null); columns nobody reads are ignored.

Offline, the rows become one new Parquet file (written under a name starting with "." and
renamed, so no reader sees half of it) with the batch source's first file's exact schema, in
the source's push folder (``sources.push_folder``: ``<folder>/_pushed/`` or
``<file>.pushed/``), which ``sources.parquet_files`` reads after the source's own files, in
name order. Names are ``push-<12-digit sequence>-<UTC time>-<host>-<pid>.parquet``; the
sequence is taken under a lock file in that folder (``.push.lock``), so the join's file-order
tie-break follows push order, whatever the clocks. ``compaction.py`` merges runs of these
files, keeping that order. A BigQuery batch source takes online pushes only.

A Float64 feature whose source files hold float32 (a widening ``apply`` accepts) is pushed as
those files store it, rounded to float32, online too: online serves what training reads (and
what materialization would serve), and a value beyond float32's range is refused.

Online, each view gets, per entity key, the push's latest row (the offline tie-break:
greatest event time, then created time, then row position) through the same never-regress
write as materialization (featurestore/online/base.py): an older row never overwrites a
newer one, an equal one is rewritten, so a row pushed and later materialized leaves the same
state. The view is claimed for its applied definition first, as a materialization run does
(under the registry's lock; refused if an apply changed it since ``state`` was read).
Pushes do not move watermarks: a view must be materialized for a model to be served.

``online_and_offline`` writes the file, then the online rows, both under the lock. So:

* **Concurrent pushers** (threads, processes, the service's workers, on one machine or a
  shared filesystem with working locks) take turns per source: the order they take the lock
  is the push order, offline (file names) and online (write order) alike, so even rows that
  tie completely resolve the same way on both paths. ``to="online"`` pushes take no lock
  (there is no offline order to agree with).
* **A retried push** (the client did not hear the answer) appends its rows again: a second
  file with the same rows, later in push order. Point-in-time answers do not change (the
  copy holds the same values; rows given without a created time get the retry's push time,
  so the copy wins their ties, with the same values), and online the never-regress write
  rewrites the same values. Deduplicate upstream if the extra rows matter for storage.
* **A failure after the file is written** (the online store down) raises ``PushError``
  saying the offline rows are committed; retry with ``to="online"`` (idempotent). A failure
  while writing the file leaves no file (the temporary one is removed) and nothing online.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestore.columns import CREATED_TS, EVENT_TS
from featurestore.definitions import FeatureView, FileSource, suggest
from featurestore.errors import (
    FeatureStoreError,
    OnlineStoreError,
    PushError,
    RegistryError,
    UnknownPushSourceError,
)
from featurestore.push_mode import PushMode, push_mode
from featurestore.types import (
    FUTURE_ALLOWANCE,
    MAX_TIME,
    MIN_TIME,
    UnixTimestamp,
    coerce,
    parse_iso_times,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.online.base import OnlineStore
    from featurestore.registry import Registry
    from featurestore.registry_state import RegistryState

LOCK_NAME = ".push.lock"
LOCK_SECONDS = 60
EVENT, CREATED = EVENT_TS, CREATED_TS  # the online write's column names (read_latest's)


@dataclass(frozen=True)
class PushReport:
    """What a push did: rows given, the views that got them, the offline file (if any) and,
    per view, how many entity rows the online write changed (an older row is not written)."""

    source: str
    rows: int
    views: tuple[str, ...]
    offline_file: Path | None = None
    online_written: dict[str, int] = field(default_factory=dict)


def push_views(state: RegistryState, name: str) -> list[FeatureView]:
    """The applied views whose source is the push source ``name`` (UnknownPushSourceError
    naming close names when none)."""
    views = [
        r.view
        for _, r in sorted(state.views.items())
        if r.view.push_source is not None and r.view.push_source.name == name
    ]
    if not views:
        known = sorted(
            {r.view.push_source.name for r in state.views.values() if r.view.push_source}
        )
        raise UnknownPushSourceError(
            f"no applied feature view reads push source {name!r}{suggest(name, known)}; "
            f"push sources: {known or 'none'}"
        )
    return views


def push(
    state: RegistryState,
    repo_path: Path,
    name: str,
    rows: Any,
    to: PushMode | str,
    store: OnlineStore | None,
    *,
    registry: Registry | None = None,
    now: datetime | None = None,
) -> PushReport:
    """Push ``rows`` (a pandas DataFrame, a pyarrow Table, or a mapping of columns) into the
    views of push source ``name`` (module docstring). ``store`` and ``registry`` (the
    registry ``state`` was read from: the views are claimed under its lock, refused if an
    apply changed them since) are needed unless ``to`` is offline; ``now`` the push time
    (default: the current time)."""
    mode = push_mode(to)
    views = push_views(state, name)
    online = mode in (PushMode.ONLINE, PushMode.ONLINE_AND_OFFLINE)
    offline = mode in (PushMode.OFFLINE, PushMode.ONLINE_AND_OFFLINE)
    what = f"push to {name!r}"
    source = views[0].batch_source
    files = source if isinstance(source, FileSource) else None
    if offline and files is None:
        raise PushError(
            f"{what}: its batch source is a BigQuery table, which takes online pushes only; "
            "push with to='online' and load the rows into BigQuery yourself"
        )
    if online:
        offline_only = [v.name for v in views if not v.online]
        if offline_only:
            raise PushError(
                f"{what}: feature view(s) {offline_only} are not served online (online=False); "
                "push with to='offline'"
            )
        if store is None or registry is None:
            raise PushError(f"{what}: an online push needs the online store and the registry")
    pushed_at = now or datetime.now(UTC)
    given = _as_table(rows, what)
    table = _checked(state, views, given, what, pushed_at)
    if files is not None:
        table = _as_stored(table, views, _file_schema(files, repo_path), what)
    report = PushReport(name, table.num_rows, tuple(v.name for v in views))
    if table.num_rows == 0:  # checked (columns and types), nothing to write: no empty file
        return report
    if not offline:
        return _online(state, views, table, store, registry, report)  # type: ignore[arg-type]  # checked above
    assert files is not None  # an offline push of a BigQuery source was refused above
    folder = _push_folder(files, repo_path)
    with PushLock(folder, what):
        path = _write_file(folder, _file_table(files, repo_path, table, given, what), pushed_at)
        report = PushReport(name, table.num_rows, report.views, path)
        if not online:
            return report
        try:
            return _online(state, views, table, store, registry, report)  # type: ignore[arg-type]  # checked
        except (OnlineStoreError, RegistryError) as exc:
            raise PushError(
                f"{what}: the rows are committed offline ({path}) but the online write failed: "
                f"{exc}; retry with to='online' (rewriting the same rows is harmless)"
            ) from exc


# --- checking the rows -------------------------------------------------------------------


def _as_table(rows: Any, what: str) -> pa.Table:
    import pandas as pd
    import pyarrow as pa

    if isinstance(rows, pa.Table):
        return rows
    if isinstance(rows, Mapping):
        columns = {str(k): list(v) for k, v in rows.items()}
    elif isinstance(rows, pd.DataFrame):  # column by column: about 2x from_pandas's speed
        columns = {str(name): rows[name] for name in rows.columns}
    else:
        raise PushError(
            f"{what}: rows must be a pandas DataFrame, a pyarrow Table or a mapping of columns, "
            f"not {type(rows).__name__}"
        )
    # OverflowError: an integer beyond 64 bits, which no Arrow integer holds
    unreadable = (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError)
    arrays = {}
    for name, values in columns.items():
        try:
            arrays[name] = pa.array(values)
        except unreadable as exc:
            raise PushError(f"{what}: column {name!r} cannot be read: {exc}") from None
    try:
        return pa.table(arrays)
    # columns of different lengths; a column name UTF-8 cannot encode (UnicodeEncodeError)
    except (pa.ArrowInvalid, ValueError) as exc:
        raise PushError(f"{what}: the rows cannot be read as columns: {exc}") from None


def _column(table: pa.Table, name: str, role: str, what: str) -> pa.Array:
    if name not in table.column_names:
        raise PushError(
            f"{what}: column {name!r} ({role}) is missing; the rows have {table.column_names}"
            f"{suggest(name, table.column_names)}"
        )
    return table[name].combine_chunks()


def _times(values: pa.Array, what: str) -> pa.Array:
    """Times as timestamp[us, UTC]: strings parsed as ISO 8601, naive read as UTC."""
    import pyarrow.types as pt

    if pt.is_string(values.type) or pt.is_large_string(values.type):
        values = parse_iso_times(values, what, PushError)
    return coerce(values, UnixTimestamp, what, PushError)


def _checked(
    state: RegistryState, views: Sequence[FeatureView], given: pa.Table, what: str, now: datetime
) -> pa.Table:
    """The push as the online write reads it: keys, features (declared types), the event and
    created times (``EVENT``, ``CREATED``: timestamp[us, UTC]); PushError names the first
    problem."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pt

    source = views[0].batch_source
    columns: dict[str, pa.Array] = {}
    for view in views:
        key_dtypes = state.key_dtypes(view.name)
        for key in view.join_keys:
            values = _column(given, key, f"join key of view {view.name!r}", what)
            dtype = key_dtypes[key]
            integer = dtype.name != "String"
            if integer != pt.is_integer(values.type) and not pt.is_null(values.type):
                hint = (
                    "; pandas turns an integer column with missing values into float64: use "
                    "the nullable dtype 'Int64'"
                    if integer and pt.is_floating(values.type)
                    else ""
                )
                raise PushError(
                    f"{what}: join key {key!r} is {dtype} but the rows hold {values.type} "
                    f"(keys are typed: 1 and '1' are different keys){hint}"
                )
            columns[key] = coerce(values, dtype, f"{what}: join key {key!r}", PushError)
        for f in view.features:
            values = _column(given, f.name, f"feature of view {view.name!r}", what)
            column = f"{what}: column {f.name!r}"
            columns[f.name] = (
                _times(values, column)
                if f.dtype == UnixTimestamp
                else coerce(values, f.dtype, column, PushError)
            )
    event = _column(given, source.timestamp_field, "the event time", what)
    columns[EVENT] = _times(event, f"{what}: event time {source.timestamp_field!r}")
    created_column = source.created_timestamp_column
    pushed = pa.scalar(now, pa.timestamp("us", tz="UTC"))
    if created_column is None:
        columns[CREATED] = pa.nulls(given.num_rows, pa.timestamp("us", tz="UTC"))
    elif created_column in given.column_names:
        created = _times(given[created_column], f"{what}: created time {created_column!r}")
        columns[CREATED] = pc.fill_null(created, pushed)
    else:
        columns[CREATED] = pa.array([now] * given.num_rows, pa.timestamp("us", tz="UTC"))
    table = pa.table(columns)
    for name in [*{k for v in views for k in v.join_keys}, EVENT]:
        nulls = table[name].null_count
        if nulls:
            row = pc.index(pc.is_null(table[name]), True).as_py()
            label = source.timestamp_field if name == EVENT else name
            raise PushError(f"{what}: row {row} has a null {label!r} ({nulls} such rows)")
    if table.num_rows:
        for name, role in ((EVENT, "event time"), (CREATED, "created time")):
            bounds = pc.min_max(table[name]).as_py()
            for bound in (bounds["min"], bounds["max"]):
                if bound is not None and not MIN_TIME <= bound <= MAX_TIME:
                    raise PushError(
                        f"{what}: {role} {bound.isoformat()} is outside the accepted range "
                        f"{MIN_TIME.isoformat()} .. {MAX_TIME.isoformat()}"
                    )
        _refuse_future(table[EVENT], now, what)
    return table


def _refuse_future(events: pa.ChunkedArray, now: datetime, what: str) -> None:
    """PushError naming the first row whose event time is after the push time (beyond
    ``FUTURE_ALLOWANCE``): online would serve it before it happens, which training at that
    time never sees, and, never regressing, would keep it over every real row until then."""
    import pyarrow as pa
    import pyarrow.compute as pc

    latest = pa.scalar(now + FUTURE_ALLOWANCE, pa.timestamp("us", tz="UTC"))
    late = pc.greater(events, latest)
    if pc.any(late).as_py():
        row = pc.index(late, True).as_py()
        event = events[row].as_py()
        raise PushError(
            f"{what}: row {row} has event time {event.isoformat()}, after the push time "
            f"{now.isoformat()} (allowing {FUTURE_ALLOWANCE} for clocks): push a row when it "
            "has happened, or check the pusher's clock"
        )


# --- offline: one new file in the push folder ----------------------------------------------


def _push_folder(source: FileSource, repo_path: Path) -> Path:
    from featurestore.sources import push_folder

    folder = push_folder(source, repo_path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PushError(f"push: cannot create the push folder {folder}: {exc}") from None
    return folder


class PushLock:
    """The push folder's lock: one pusher at a time per source (module docstring)."""

    def __init__(self, folder: Path, what: str) -> None:
        from filelock import FileLock

        self.lock = FileLock(str(folder / LOCK_NAME), timeout=LOCK_SECONDS)
        self.what = what

    def __enter__(self) -> None:
        from filelock import Timeout

        try:
            self.lock.acquire()
        except Timeout:
            raise PushError(
                f"{self.what}: another push has held {self.lock.lock_file} for "
                f"{LOCK_SECONDS} s; retry, or remove the lock file if no push is running"
            ) from None
        except OSError as exc:
            raise PushError(f"{self.what}: cannot lock {self.lock.lock_file}: {exc}") from None

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def _file_table(
    source: FileSource, repo_path: Path, table: pa.Table, given: pa.Table, what: str
) -> pa.Table:
    """The checked rows in the schema of the source's first file (so every engine reads
    the files as one table): each column cast to that file's type; a column of the file
    the views do not read is taken from the given rows if there, else null."""
    import pyarrow as pa

    schema = _file_schema(source, repo_path)
    rename = {EVENT: source.timestamp_field}
    if source.created_timestamp_column:
        rename[CREATED] = source.created_timestamp_column
    else:
        table = table.drop_columns([CREATED])
    ours = table.rename_columns([rename.get(n, n) for n in table.column_names])
    if schema is None:
        return ours
    columns = []
    for f in schema:
        if f.name in ours.column_names:
            values = ours[f.name]
        elif f.name in given.column_names:
            values = given[f.name]
        else:
            values = pa.chunked_array([pa.nulls(table.num_rows, f.type)])
        try:
            columns.append(_physical(values, f.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise PushError(
                f"{what}: column {f.name!r} cannot be stored as the source's {f.type}: {exc}"
            ) from None
    return pa.Table.from_arrays(columns, schema=schema.remove_metadata())


def _file_schema(source: FileSource, repo_path: Path) -> pa.Schema | None:
    """The schema of the source's first file (every push file takes it), None before any;
    PushError naming the file when it cannot be read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from featurestore.errors import SchemaMismatchError
    from featurestore.sources import parquet_files

    try:
        first = parquet_files(source, repo_path)[0]
    except SchemaMismatchError:
        return None  # no file yet: this push makes the first one
    try:
        return pq.read_schema(first)
    except (OSError, pa.ArrowException) as exc:
        raise PushError(
            f"push: cannot read the schema of {first}, the source's first file, which every "
            f"push file takes: {exc}"
        ) from None


def _as_stored(
    table: pa.Table, views: Sequence[FeatureView], schema: pa.Schema | None, what: str
) -> pa.Table:
    """The checked rows with each Float64 feature that the source's files hold as float32
    (a widening apply accepts) rounded as those files store it, so online serves what
    training reads (and what materialization serves); a value beyond float32's range is a
    PushError naming the row and the value (``types.coerce``)."""
    import pyarrow as pa

    from featurestore.types import Float32

    if schema is None:
        return table
    for name in dict.fromkeys(
        f.name for v in views for f in v.features if f.dtype.name == "Float64"
    ):
        if name in schema.names and schema.field(name).type == pa.float32():
            column = f"{what}: column {name!r} (its source's files hold float32)"
            stored = coerce(table[name], Float32, column, PushError).cast(pa.float64())
            table = table.set_column(table.column_names.index(name), name, stored)
    return table


def _physical(values: pa.ChunkedArray, arrow_type: pa.DataType) -> pa.ChunkedArray:
    """``values`` as the source file's column type (a UTC time into a naive column keeps
    its UTC wall clock: naive means UTC)."""
    import pyarrow as pa
    import pyarrow.types as pt

    aware = pt.is_timestamp(values.type) and values.type.tz is not None
    if aware and pt.is_timestamp(arrow_type) and arrow_type.tz is None:
        values = values.cast(pa.timestamp(values.type.unit))
    return values.cast(arrow_type)


def _write_file(folder: Path, table: pa.Table, now: datetime) -> Path:
    """Write ``table`` as the folder's next push file (caller holds the lock)."""
    from featurestore.sources import push_span

    spans = [push_span(p.name) for p in folder.glob("push-*.parquet")]
    sequence = max((span[1] for span in spans if span is not None), default=0)
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S%f")
    name = f"push-{sequence + 1:012d}-{stamp}-{socket.gethostname()}-{os.getpid()}.parquet"
    return write_pushed_file(folder / name, table, "push")


def write_pushed_file(path: Path, table: pa.Table, what: str) -> Path:
    """Write ``table`` to ``path`` in a push folder, whole or not at all: under a "." name
    (which no reader reads), then renamed; ``PushError`` naming the file if it fails."""
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise PushError(f"{what}: cannot write {path}: {exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# --- online: the never-regress write --------------------------------------------------------


def _online(
    state: RegistryState,
    views: Sequence[FeatureView],
    table: pa.Table,
    store: OnlineStore,
    registry: Registry,
    report: PushReport,
) -> PushReport:
    from featurestore.materialize import claim_applied
    from featurestore.online.base import ViewIdentity

    written = {}
    for view in views:
        batch = _latest_per_key(view, table)
        try:
            with registry.settled() as applied:
                identity = ViewIdentity.of(state.view_record(view.name))
                claim = claim_applied(store, identity, applied, registry)
            count = 0
            for part in batch.to_batches():
                count += store.write_rows(claim, part, list(view.join_keys), list(view.features))
        except FeatureStoreError as exc:
            raise type(exc)(f"push into feature view {view.name!r}: {exc}") from exc
        written[view.name] = count
    return PushReport(report.source, report.rows, report.views, report.offline_file, written)


def _latest_per_key(view: FeatureView, table: pa.Table) -> pa.Table:
    """Per entity key, the row the join would pick: greatest (event, created with null
    oldest, row position); the columns the online write reads."""
    import pyarrow as pa

    keys = list(view.join_keys)
    columns = [*keys, *view.feature_names, EVENT, CREATED]
    if table.num_rows <= 1:
        return table.select(columns)
    ranked = table.select(columns).append_column("__row", pa.array(range(table.num_rows)))
    order = ranked.sort_by(
        [(k, "ascending") for k in keys]
        + [(EVENT, "ascending"), (CREATED, "ascending", "at_start"), ("__row", "ascending")]
    )
    order = order.append_column("__position", pa.array(range(order.num_rows)))
    last = order.group_by(keys, use_threads=False).aggregate([("__position", "max")])
    return order.take(last["__position_max"]).select(columns)
