"""The feature log: what the prediction service served, one row per entity, in Parquet.

Every ``/predict`` call (and ``/get-online-features`` when ``feature_log.include_online_features``
is true) is logged, off the request path: the handler puts the request on an in-process queue
(``FeatureLogWriter.submit``, never blocking: when ``feature_log.queue_size`` rows are already
waiting, the request's rows are dropped, counted and warned about), and a background thread
writes what is queued every few seconds, and on ``close`` (a clean shutdown) everything left.

Files (schema version 1)::

    <feature_log.path>/date=YYYY-MM-DD/part-<UTC YYYYMMDDTHHMMSSffffff>-<host>-<pid>-<seq>.parquet

``date`` is the UTC date of ``request_ts`` (Hive-style partition folders); each writer process
writes its own files (host and pid in the name, ``seq`` counts its flushes), one file per flush
and date, written under a dot-prefixed temporary name and renamed, so several workers never
write the same file and a reader never sees half of one. Read them all with
``read_log(path)``, ``pyarrow.dataset.dataset(path, partitioning="hive")`` or DuckDB's
``read_parquet('<path>/**/*.parquet', union_by_name=true)``: files written for different
requests may hold different feature columns (a column a request did not read is absent from
its file, null after a union).

Columns, in this order (one row per entity row served):

=====================================  =========================  ==================================
column                                 Arrow type                 meaning
=====================================  =========================  ==================================
``request_id``                         string                     the ``X-Request-ID`` header, or a
                                                                  generated one; returned to the caller
``request_ts``                         timestamp[us, tz=UTC]      the exact ``now`` the online read used
                                                                  (the ttl check's time)
``endpoint``                           string                     ``/predict`` or ``/get-online-features``
``model``                              string (null: no model)    the model's name (its artifact folder)
``model_fingerprint``                  string (null: no model)    the feature-service fingerprint the
                                                                  model is bound to
``model_sha256``                       string (null: no model)    the model file's sha256 (which model
                                                                  exactly; a retrain changes it)
``service``                            string (null: a list of    the feature service read
                                       features was asked for)
``definitions``                        string (null: logged       the definitions the read used:
                                       before it was recorded)    ``view:fingerprint`` (12 characters)
                                                                  of every feature view and on-demand
                                                                  view read, sorted, comma-separated
``<join key>`` per join key            int32 / int64 / string     the entity key, as its dtype declares
``<field>`` per request field          its declared type          a request field on-demand views read
                                                                  (absent when it shares a key's name)
per feature reference ``view:feature``:
``<view>__<feature>``                  the feature's Arrow type   the value served (null unless PRESENT)
``<view>__<feature>__status``          string                     PRESENT, NULL_VALUE, NOT_FOUND or
                                                                  OUTSIDE_MAX_AGE
``<view>__<feature>__event_ts``        timestamp[us, tz=UTC]      the stored row's event time (null:
                                                                  NOT_FOUND)
``<view>__<feature>__created_ts``      timestamp[us, tz=UTC]      the stored row's created time (null:
                                                                  NOT_FOUND or no created column)
``prediction``                         double (null: not scored)  the model's output for the row
=====================================  =========================  ==================================

Feature columns are always named ``view__feature`` (the training set's full names), whatever
``full_feature_names`` the request asked for, so a log joins a training set column by column.
A feature of an on-demand view is logged like any other, its status PRESENT or NULL_VALUE and
its event and created times null; the inputs its function read that the request did not ask
for are logged too (``view__feature``, with their statuses and times), so a consistency
check can tell which input made a transformed value differ.
The file's schema metadata holds ``featurestore.feature_log.version`` (``"1"``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestore.errors import ReportError, RetrievalError
from featurestore.types import coerce

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.online.read import ReadPlan
    from featurestore.online.response import OnlineResponse

log = logging.getLogger("featurestore.feature_log")

LOG_VERSION = "1"
VERSION_KEY = b"featurestore.feature_log.version"
PREDICT = "/predict"
ONLINE_FEATURES = "/get-online-features"
META_COLUMNS = (
    "request_id",
    "request_ts",
    "endpoint",
    "model",
    "model_fingerprint",
    "model_sha256",
    "service",
    "definitions",
)
PREDICTION = "prediction"
FLUSH_SECONDS = 1.0
CHUNK = 64  # requests converted at a time: a short hold of the GIL, then a pause
PAUSE = 0.001
WARN_EVERY_SECONDS = 10.0


def log_columns(plan: ReadPlan) -> dict[str, str]:
    """A read plan's feature names (transformation inputs and outputs too, aggregated views'
    features too) -> their log column names (``view__feature``).

    ``RetrievalError`` when two of the log's columns would get one name (a join key or
    request field named ``model``, ``prediction``, ``<view>__<feature>``...): one would
    silently replace the other in every log row, and the reports would read the wrong one.
    """
    read = {
        name: f"{view}__{feature}"
        for view, names, features in plan.views_read
        for name, feature in zip(names, features, strict=True)
    }
    computed = {o.output: f"{t.view}__{o.name}" for t in plan.transformations for o in t.outputs}
    columns = {**read, **computed}
    _check_unique_columns(plan, columns)
    return columns


def read_definitions(plan: ReadPlan) -> str:
    """What the log records of the definitions a read used (its ``definitions`` column):
    ``view:fingerprint`` (the first 12 characters) of every feature view, aggregated view
    and on-demand view the plan reads, sorted by name, comma-separated. The consistency
    report refuses rows read with definitions the registry no longer holds."""
    found = {v.identity.view: v.identity.fingerprint for g in plan.groups for v in g.views}
    found |= {a.identity.view: a.identity.fingerprint for a in plan.aggregated}
    found |= {t.view: t.fingerprint for t in plan.transformations}
    return ",".join(f"{view}:{fingerprint[:12]}" for view, fingerprint in sorted(found.items()))


def _check_unique_columns(plan: ReadPlan, columns: dict[str, str]) -> None:
    owners: dict[str, str] = {name: "a column the log writes itself" for name in META_COLUMNS}
    owners[PREDICTION] = "a column the log writes itself"
    keys = [name for name, _ in plan.join_keys]
    fields = [name for name, _ in plan.request_fields if name not in keys]  # logged once
    named = [(k, f"join key {k!r}") for k in keys] + [(f, f"request field {f!r}") for f in fields]
    for out in columns.values():
        what = f"feature column {out!r}"
        named += [(out + suffix, what) for suffix in ("", "__status", "__event_ts", "__created_ts")]
    for name, what in named:
        other = owners.setdefault(name, what)
        if other != what:
            raise RetrievalError(
                f"the feature log cannot log {what}: its column {name!r} is also {other}; "
                "rename one (the log would hold one of them under both)"
            )


@dataclass(frozen=True)
class ServedRequest:
    """One request as served: what ``FeatureLogWriter`` turns into one row per entity.

    ``columns`` maps the response's feature names to their log names (``log_columns``); pass
    the same mapping object for every request of one read plan (the writer groups requests
    by it). ``request_us`` is the ``now`` of the read, in µs since the epoch;
    ``definitions``, ``read_definitions`` of its plan.
    """

    request_id: str
    request_us: int
    endpoint: str
    response: OnlineResponse
    columns: dict[str, str]
    service: str | None = None
    model: str | None = None
    model_fingerprint: str | None = None
    model_sha256: str | None = None
    predictions: Sequence[float] | None = None
    definitions: str | None = None

    @property
    def rows(self) -> int:
        return len(next(iter(self.response.statuses.values()), ()))


class LogHooks:
    """What the writer reports (the service counts it in its metrics); all no-ops here."""

    def queued(self, rows: int) -> None:
        """Rows now waiting in the queue."""

    def dropped(self, rows: int) -> None:
        """Rows refused because the queue was full."""

    def written(self, rows: int, path: Path) -> None:
        """Rows written to the file ``path``."""

    def failed(self, rows: int, error: BaseException) -> None:
        """Rows lost because writing them failed."""


class FeatureLogWriter:
    """The in-process queue and its background Parquet writer (module docstring).

    ``submit`` never blocks and never raises; ``close`` writes everything still queued.
    """

    def __init__(
        self,
        path: Path,
        *,
        queue_size: int = 100_000,
        flush_seconds: float = FLUSH_SECONDS,
        hooks: LogHooks | None = None,
    ) -> None:
        self.path = Path(path)
        self.queue_size = queue_size
        self.flush_seconds = flush_seconds
        self.hooks = hooks or LogHooks()
        self._items: deque[ServedRequest] = deque()
        self._pending = 0
        self._dropped_since_warning = 0
        self._last_warning = 0.0
        self._closing = False
        self._wake = threading.Condition()
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name="feature-log-writer", daemon=True)
        self._thread.start()

    def submit(self, request: ServedRequest) -> bool:
        """Queue one served request; False (rows dropped and counted) when the queue is full."""
        rows = request.rows
        with self._wake:
            if self._closing or self._pending + rows > self.queue_size:
                self._dropped_since_warning += rows
                dropped = True
            else:
                request.response.freeze()  # out of the garbage collector's walks while queued
                self._items.append(request)
                self._pending += rows
                pending = self._pending
                dropped = False
        if dropped:
            self.hooks.dropped(rows)
            self._warn_dropped()
            return False
        self.hooks.queued(pending)
        return True

    def _warn_dropped(self) -> None:
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY_SECONDS:
            self._last_warning = now
            count, self._dropped_since_warning = self._dropped_since_warning, 0
            log.warning(
                "feature log queue full (%d rows waiting): dropped %d rows since the last "
                "warning; raise feature_log.queue_size or check that %s is writable and fast",
                self.queue_size,
                count,
                self.path,
            )

    def close(self, timeout: float | None = 30.0) -> None:
        """Write everything queued, then stop the writer (a clean shutdown loses nothing)."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._wake:
                if not self._closing:
                    self._wake.wait(self.flush_seconds)
                items = list(self._items)
                self._items.clear()
                self._pending = 0
                closing = self._closing
            if items:
                self.hooks.queued(0)
                self._write(items)
            if closing:
                return

    def _write(self, items: list[ServedRequest]) -> None:
        rows = sum(item.rows for item in items)
        try:
            table = log_table(items)
            for day, part in _by_date(table):
                self.hooks.written(part.num_rows, self._write_file(day, part))
        except Exception as exc:  # the background writer: log and count, keep serving
            log.exception("feature log: could not write %d rows to %s", rows, self.path)
            self.hooks.failed(rows, exc)

    def _write_file(self, day: str, table: pa.Table) -> Path:
        import pyarrow.parquet as pq

        folder = self.path / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        name = f"part-{stamp}-{socket.gethostname()}-{os.getpid()}-{self._seq:06d}.parquet"
        tmp = folder / f".{name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, folder / name)
        return folder / name


def log_table(items: Sequence[ServedRequest]) -> pa.Table:
    """The log rows of ``items`` (module docstring's schema), requests of one shape at a time."""
    import pyarrow as pa

    shapes: dict[int, list[ServedRequest]] = {}
    for item in items:  # one ``columns`` mapping per compiled read plan: one shape
        shapes.setdefault(id(item.columns), []).append(item)
    tables = []
    for group in shapes.values():
        for start in range(0, len(group), CHUNK):
            tables.append(_shape_table(group[start : start + CHUNK]))
            time.sleep(PAUSE)  # give the request threads the GIL between chunks
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
    metadata = {**(table.schema.metadata or {}), VERSION_KEY: LOG_VERSION.encode()}
    return table.replace_schema_metadata(metadata)


def _shape_table(items: list[ServedRequest]) -> pa.Table:
    """Requests that read the same keys and features: each column concatenated in C
    (``chain``), the per-request columns repeated by ``take``, then Arrow."""
    import numpy as np
    import pyarrow as pa

    timestamp = pa.timestamp("us", tz="UTC")
    first = items[0].response
    counts = [item.rows for item in items]
    responses = [item.response for item in items]
    values = [r.logged_values() for r in responses]
    statuses = [r.statuses for r in responses]
    events = [r.event_us for r in responses]
    created = [r.created_us for r in responses]

    def flat(dicts: list[dict[str, list[Any]]], name: str) -> list[Any]:
        return list(chain.from_iterable([d[name] for d in dicts]))

    one_each = all(n == 1 for n in counts)
    rows = None if one_each else pa.array(np.repeat(np.arange(len(items)), counts))
    columns: dict[str, pa.Array] = {}
    for name in META_COLUMNS:
        per_request = pa.array(
            [getattr(item, "request_us" if name == "request_ts" else name) for item in items],
            timestamp if name == "request_ts" else pa.string(),
        )
        columns[name] = per_request if rows is None else per_request.take(rows)
    for name, dtype in first.key_dtypes:
        columns[name] = pa.array(flat(values, name), dtype.to_arrow())
    for name, dtype in first.request_fields:
        if name not in columns:  # given as given; cast as the transformation cast it
            given = pa.array(flat([r.request_values for r in responses], name))
            columns[name] = coerce(given, dtype, f"request field {name!r}")
    for name, dtype in (*first.feature_dtypes, *first.inputs):
        out = items[0].columns[name]
        columns[out] = pa.array(flat(values, name), dtype.to_arrow())
        columns[f"{out}__status"] = pa.array(flat(statuses, name), pa.string())
        columns[f"{out}__event_ts"] = pa.array(flat(events, name), timestamp)
        columns[f"{out}__created_ts"] = pa.array(flat(created, name), timestamp)
    columns[PREDICTION] = pa.array(
        list(
            chain.from_iterable(
                [
                    i.predictions if i.predictions is not None else [None] * n
                    for i, n in zip(items, counts, strict=True)
                ]
            )
        ),
        pa.float64(),
    )
    return pa.table(columns)


def _by_date(table: pa.Table) -> list[tuple[str, pa.Table]]:
    """The table split by the UTC date of ``request_ts`` (usually one part)."""
    import pyarrow.compute as pc

    days = pc.strftime(table["request_ts"], format="%Y-%m-%d")
    unique = days.unique().to_pylist()
    if len(unique) == 1:
        return [(unique[0], table)]
    return [(day, table.filter(pc.equal(days, day))) for day in sorted(unique)]


def log_files(path: str | os.PathLike[str]) -> list[Path]:
    """The log's Parquet files under ``path`` (never the writers' temporary files)."""
    root = Path(path)
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*.parquet") if not p.name.startswith((".", "_")))


def read_log(
    path: str | os.PathLike[str],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    columns: Sequence[str] | None = None,
) -> pa.Table:
    """Every logged row with ``since <= request_ts < until`` (either bound optional), the
    schemas of the files that may hold such rows unified (a feature column absent from a file
    is null there). A file whose ``request_ts`` range (its Parquet statistics) is outside the
    window is not read, so files from before an ``apply`` that changed a feature's dtype do not
    stop a window after it from being read. ``ReportError`` names a file that is not a
    readable log file (truncated, foreign), or says that the files' columns disagree."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    from featurestore.types import as_utc

    low, high = (None if t is None else as_utc(t) for t in (since, until))
    files, schemas = [], []
    for file in log_files(path):
        schema, first, last = _log_file(file)
        if (low is None or last is None or last >= low) and (
            high is None or first is None or first < high
        ):
            files.append(file)
            schemas.append(_projected(schema, columns))
    if not files:
        return pa.table({})
    try:
        schema = pa.unify_schemas(schemas, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ReportError(
            f"the feature log at {path} holds files whose columns disagree "
            f"({_one_line(exc)}): a feature's dtype changed at an apply (choose a window "
            "after it) or a file was not written by the prediction service (move it out)"
        ) from None
    dataset = ds.dataset([str(f) for f in files], schema=schema, format="parquet")
    condition = None
    for bound, op in ((low, "__ge__"), (high, "__lt__")):
        if bound is not None:
            term = getattr(ds.field("request_ts"), op)(
                pa.scalar(bound, schema.field("request_ts").type)
            )
            condition = term if condition is None else condition & term
    try:
        table = dataset.to_table(columns=list(columns) if columns else None, filter=condition)
    except (OSError, pa.ArrowInvalid) as exc:  # a data page damaged behind a sound footer
        raise ReportError(f"the feature log at {path} cannot be read: {_one_line(exc)}") from None
    return table.replace_schema_metadata(schema.metadata)


def _one_line(exc: BaseException) -> str:
    """An Arrow error's message on one line (some end with a newline)."""
    return " ".join(str(exc).split())


def _projected(schema: pa.Schema, columns: Sequence[str] | None) -> pa.Schema:
    """``schema`` with only ``columns`` (all when None): what is read must agree, no more."""
    import pyarrow as pa

    if columns is None:
        return schema
    fields = [schema.field(name) for name in columns if name in schema.names]
    return pa.schema(fields, metadata=schema.metadata)


def _log_file(file: Path) -> tuple[pa.Schema, datetime | None, datetime | None]:
    """One log file's schema and ``request_ts`` range (None when its statistics do not say);
    ``ReportError`` naming the file when it is not readable Parquet or not a log file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_metadata(file)
        schema = metadata.schema.to_arrow_schema()
    except (OSError, pa.ArrowInvalid) as exc:
        raise ReportError(
            f"feature log file {file} is not readable Parquet ({_one_line(exc)}): a truncated "
            "or foreign file; move it out of the log folder"
        ) from None
    index = schema.get_field_index("request_ts")
    if index < 0 or not pa.types.is_timestamp(schema.field(index).type):
        raise ReportError(
            f"feature log file {file} has no request_ts timestamp column: not a feature log "
            "file; move it out of the log folder"
        )
    leaf = [metadata.schema.column(i).path for i in range(metadata.num_columns)].index("request_ts")
    lows, highs = [], []
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(leaf).statistics
        if stats is None or not stats.has_min_max:
            return schema, None, None
        lows.append(stats.min)
        highs.append(stats.max)
    return schema, min(lows, default=None), max(highs, default=None)


@dataclass(frozen=True)
class LogSummary:
    """What ``featurestore log show`` prints: counts, time range, and rows per model."""

    files: int
    rows: int
    first: datetime | None
    last: datetime | None
    requests: int
    by_model: list[tuple[str, str, int]]  # (endpoint, model or "-", rows)


def summarize(path: str | os.PathLike[str], since: datetime | None = None) -> LogSummary:
    """A summary of the log under ``path`` (rows with ``request_ts >= since``)."""
    import pyarrow.compute as pc

    table = read_log(path, since=since, columns=["request_id", "request_ts", "endpoint", "model"])
    if table.num_rows == 0:
        return LogSummary(len(log_files(path)), 0, None, None, 0, [])
    grouped = table.group_by(["endpoint", "model"]).aggregate([("request_id", "count")])
    by_model = sorted(
        (row["endpoint"], row["model"] or "-", row["request_id_count"])
        for row in grouped.to_pylist()
    )
    return LogSummary(
        files=len(log_files(path)),
        rows=table.num_rows,
        first=pc.min(table["request_ts"]).as_py(),
        last=pc.max(table["request_ts"]).as_py(),
        requests=pc.count_distinct(table["request_id"]).as_py(),
        by_model=by_model,
    )
