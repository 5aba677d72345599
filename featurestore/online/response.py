"""The answer to ``get_online_features``, and the per-value statuses (Feast's names).

==================  ===========================================================
PRESENT             the row exists and ``now - ttl <= event_ts`` (no ttl: always)
NULL_VALUE          as PRESENT, but the stored value itself is null
OUTSIDE_MAX_AGE     the row exists but ``event_ts < now - ttl``: the value is null
NOT_FOUND           no row for this key in this view: the value is null
==================  ===========================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from featurestore.online.codec import decode_version, from_us
from featurestore.types import DType

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

PRESENT = "PRESENT"
NULL_VALUE = "NULL_VALUE"
NOT_FOUND = "NOT_FOUND"
OUTSIDE_MAX_AGE = "OUTSIDE_MAX_AGE"


class OnlineResponse:
    """The answer to ``get_online_features``: per output column, one value per entity row.

    ``to_dict()`` is Feast's shape (join keys and features -> lists of values); statuses and
    event timestamps are in ``statuses`` / ``event_timestamps`` (feature -> list), or in
    ``to_dict`` as ``<feature>__status`` / ``<feature>__ts`` columns when asked for.

    A request with on-demand views also holds, beside the features asked for, the
    transformations' inputs that were not asked for (``inputs``: their reserved names and
    dtypes; their values, statuses and times are in the same mappings, never in ``to_dict``
    or ``to_arrow``) and the request fields as given (``request_fields``, ``request_values``),
    which the feature log records.
    """

    def __init__(
        self,
        key_dtypes: Sequence[tuple[str, DType]],
        feature_dtypes: Sequence[tuple[str, DType]],
        keys: dict[str, list[Any]],
        values: dict[str, list[Any]],
        statuses: dict[str, list[str]],
        event_us: dict[str, list[int | None]],
        stored_rows: dict[str, list[bytes | None]] | None = None,
        *,
        inputs: Sequence[tuple[str, DType]] = (),
        request_fields: Sequence[tuple[str, DType]] = (),
        request_values: dict[str, list[Any]] | None = None,
    ) -> None:
        self.inputs = inputs
        self.request_fields = request_fields
        self.request_values = request_values or {}
        self._key_dtypes = key_dtypes
        self._feature_dtypes = feature_dtypes
        self._keys = keys
        self._values = values
        self.statuses = statuses
        self._event_us = event_us
        # per feature, its view's stored rows: created times are decoded only when asked for
        self._stored_rows = stored_rows or {}

    @property
    def feature_names(self) -> list[str]:
        """The output feature columns, in the order they were asked for."""
        return [name for name, _ in self._feature_dtypes]

    @property
    def key_dtypes(self) -> Sequence[tuple[str, DType]]:
        """The join keys and their dtypes, in output order."""
        return self._key_dtypes

    @property
    def feature_dtypes(self) -> Sequence[tuple[str, DType]]:
        """The output feature columns and their dtypes, in the order they were asked for."""
        return self._feature_dtypes

    def freeze(self) -> None:
        """Hold every per-entity column as a tuple instead of a list (the same values).

        The feature log calls it on each response it queues: the garbage collector stops
        tracking tuples and dicts of plain values, so the thousands of responses waiting
        between two flushes are not walked by every full collection (they made pauses of
        20-50 ms in ``/predict``). Columns shared between features stay shared."""
        done: dict[int, Any] = {}

        def frozen(columns: dict[str, Any]) -> dict[str, Any]:
            out = {}
            for name, column in columns.items():
                if id(column) not in done:
                    done[id(column)] = tuple(column)
                out[name] = done[id(column)]
            return out

        self._keys = frozen(self._keys)
        self._values = frozen(self._values)
        self.statuses = frozen(self.statuses)
        self._event_us = frozen(self._event_us)
        self._stored_rows = frozen(self._stored_rows)
        self.request_values = frozen(self.request_values)

    @property
    def event_us(self) -> dict[str, list[int | None]]:
        """Per feature, the stored row's event time in µs since the epoch, None when NOT_FOUND."""
        return self._event_us

    @property
    def created_us(self) -> dict[str, list[int | None]]:
        """Per feature, the stored row's created time in µs since the epoch; None when
        NOT_FOUND or when the source has no created time."""
        decoded: dict[int, list[int | None]] = {}
        out = {}
        for name, rows in self._stored_rows.items():
            if id(rows) not in decoded:  # the features of one view share their rows
                decoded[id(rows)] = [None if r is None else decode_version(r)[1] for r in rows]
            out[name] = decoded[id(rows)]
        return out

    @property
    def created_timestamps(self) -> dict[str, list[datetime | None]]:
        """Per feature, the stored row's created time (UTC), None when unknown or NOT_FOUND."""
        return {
            name: [None if us is None else from_us(us) for us in column]
            for name, column in self.created_us.items()
        }

    @property
    def event_timestamps(self) -> dict[str, list[datetime | None]]:
        """Per feature, the stored row's event time (UTC), None when NOT_FOUND."""
        return {
            name: [None if us is None else from_us(us) for us in column]
            for name, column in self._event_us.items()
        }

    def logged_values(self) -> dict[str, list[Any]]:
        """Join keys, features and the transformations' inputs -> values (the feature log's)."""
        return {**self._keys, **self._values}

    def to_dict(
        self, include_event_timestamps: bool = False, include_statuses: bool = False
    ) -> dict[str, list[Any]]:
        """Join keys then features -> lists of values (None for null), one per entity row."""
        names = self.feature_names
        out: dict[str, list[Any]] = {**self._keys, **{n: self._values[n] for n in names}}
        if include_statuses:
            out |= {f"{name}__status": self.statuses[name] for name in names}
        if include_event_timestamps:
            times = self.event_timestamps
            out |= {f"{name}__ts": times[name] for name in names}
        return out

    def to_arrow(
        self, include_event_timestamps: bool = False, include_statuses: bool = False
    ) -> pa.Table:
        """Join keys and features with the Arrow types their dtypes declare; the
        ``to_dict`` columns ``<feature>__status`` (string) and ``<feature>__ts`` (UTC
        timestamp) when asked for."""
        import pyarrow as pa

        columns = {name: pa.array(self._keys[name], d.to_arrow()) for name, d in self._key_dtypes}
        for name, dtype in self._feature_dtypes:
            columns[name] = pa.array(self._values[name], dtype.to_arrow())
        names = self.feature_names
        if include_statuses:
            columns |= {f"{n}__status": pa.array(self.statuses[n], pa.string()) for n in names}
        if include_event_timestamps:
            utc = pa.timestamp("us", tz="UTC")
            columns |= {f"{n}__ts": pa.array(self.event_us[n], pa.int64()).cast(utc) for n in names}
        return pa.table(columns)

    def to_df(
        self, include_event_timestamps: bool = False, include_statuses: bool = False
    ) -> pd.DataFrame:
        """``to_arrow(...)`` as pandas, with the nullable dtypes of ``types.to_pandas``."""
        from featurestore.types import to_pandas

        return to_pandas(self.to_arrow(include_event_timestamps, include_statuses))
