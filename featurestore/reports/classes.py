"""Why a served value differs from the replayed one: the consistency report's decision table.

Every compared (logged row, feature) pair whose served value is not exactly the offline
replay's value (bit for bit for floats, NaN included; both null is a match) gets exactly one
class: the first rule below that holds. Inputs, per row: ``t`` the request time (the logged
``request_ts``), the served status and the served row's event and created times (the log's
``__event_ts`` / ``__created_ts``), and the offline winner's event and created times (the
replay's ``with_timestamps`` columns; no winner: both null). A "stored" row is one the online
store held (PRESENT, NULL_VALUE or OUTSIDE_MAX_AGE); a "served" row is one whose value was
answered (PRESENT or NULL_VALUE). Null times compare unequal to any time and equal to each
other (a source without a created column has null created times on both sides).

====  =================  =========================================================================
 #    class              rule (first match wins)
====  =================  =========================================================================
 1    online-newer       stored, and served event time > ``t``: online held a row from after the
                         request (leakage: training never sees it). Always an alert.
 2    stale-online       stored, offline winner, served event time < winner's event time: online
                         lagged behind the source (materialization lag = winner's event time -
                         served event time; the report gives its median and p95).
 3    late-correction    stored, offline winner, same event time, different created time: a
                         correction (or its absence) seen on one side only.
 4    value-differs      served, offline winner, same event and created time, different value:
                         the same source row gave two values (a bug or corruption). Always an
                         alert.
 5    missing-online     NOT_FOUND served, a value offline (never materialized, dropped, or a
                         key online does not have).
 6    ttl-boundary       OUTSIDE_MAX_AGE served while offline has a winner, or the reverse: a
                         value served whose event time is before ``t - ttl`` with no offline
                         winner (the two sides disagree on the ttl window).
 7    online-only        anything else: online served a row offline does not have at ``t`` (newer
                         than offline's winner, or inside the ttl where offline has none): pushed
                         online only, a source rewritten after materialization, or hidden from the
                         replay by ``as_of="created"``.
====  =================  =========================================================================

Feature kinds (``FeatureKind``) choose what the rules see. A plain feature uses its view's
row times, as above. An aggregated feature (windowed aggregations) is compared by value with
the covered time as its event time: served event time = the logged covered end, offline event
time = ``t`` (the offline window covers every event before ``t``), no created times; so a
covered end before ``t`` whose value differs is stale-online (lag ``t - covered end``), one
after ``t`` is online-newer. A transformed feature (request-time transformations) is
compared by value and classed by its inputs: the first class, in the table's order, that any
input feature has on that row; when every input matched, value-differs (the transformation
gave two values from the same inputs).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from featurestore.online.response import NOT_FOUND, NULL_VALUE, OUTSIDE_MAX_AGE, PRESENT

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

ONLINE_NEWER = "online-newer"
STALE_ONLINE = "stale-online"
LATE_CORRECTION = "late-correction"
VALUE_DIFFERS = "value-differs"
MISSING_ONLINE = "missing-online"
TTL_BOUNDARY = "ttl-boundary"
ONLINE_ONLY = "online-only"
CLASSES = (
    ONLINE_NEWER,
    STALE_ONLINE,
    LATE_CORRECTION,
    VALUE_DIFFERS,
    MISSING_ONLINE,
    TTL_BOUNDARY,
    ONLINE_ONLY,
)
"""The classes in decision order; a row's class code is its index here (-1: matched)."""
ALWAYS_ALERT = frozenset({ONLINE_NEWER, VALUE_DIFFERS})
MATCHED = -1

STATUSES = (PRESENT, NULL_VALUE, OUTSIDE_MAX_AGE, NOT_FOUND)
NO_TIME = -(2**63)
"""A null time in the int64 µs arrays the rules compare (below every real time)."""


class FeatureKind(enum.Enum):
    """How a feature's mismatches are classed (module docstring)."""

    PLAIN = "plain"
    AGGREGATED = "aggregated"
    TRANSFORMED = "transformed"


@dataclass(frozen=True)
class RowTimes:
    """One feature's per-row inputs to the rules, as numpy arrays of one length.

    Times are int64 µs since the epoch with ``NO_TIME`` for null; ``status`` holds indices
    into ``STATUSES`` (-1: the row did not serve this feature).
    """

    request: np.ndarray
    status: np.ndarray
    served_event: np.ndarray
    served_created: np.ndarray
    offline_event: np.ndarray
    offline_created: np.ndarray

    def as_aggregated(self) -> RowTimes:
        """The times an aggregated feature is classed by: the served covered end against
        the request time, no created times."""
        import numpy as np

        none = np.full_like(self.request, NO_TIME)
        return RowTimes(self.request, self.status, self.served_event, none, self.request, none)


def status_codes(status: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Logged status strings as indices into ``STATUSES`` (null or unknown: -1)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    codes = pc.index_in(status, value_set=pa.array(STATUSES))
    return np.asarray(pc.fill_null(codes, -1).to_numpy(zero_copy_only=False), dtype=np.int8)


def times_us(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A timestamp column as int64 µs, ``NO_TIME`` for null."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    as_int = pc.cast(column, pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return np.asarray(pc.fill_null(as_int, NO_TIME).to_numpy(zero_copy_only=False), np.int64)


def classify(mismatch: np.ndarray, times: RowTimes, ttl_us: int | None) -> np.ndarray:
    """Each row's class code (index into ``CLASSES``; ``MATCHED`` where ``mismatch`` is
    false), by the decision table of the module docstring."""
    import numpy as np

    t, status = times.request, times.status
    se, sc = times.served_event, times.served_created
    oe, oc = times.offline_event, times.offline_created
    present, null_value, outside, not_found = (np.int8(i) for i in range(len(STATUSES)))
    served = (status == present) | (status == null_value)
    stored = (served | (status == outside)) & (se != NO_TIME)
    winner = oe != NO_TIME
    same_event = stored & winner & (se == oe)
    too_old = se < t - ttl_us if ttl_us else np.zeros(t.shape, bool)  # no ttl: nothing is too old
    rules = [
        stored & (se > t),
        stored & winner & (se < oe),
        same_event & (sc != oc),
        same_event & served & (sc == oc),
        (status == not_found) & winner,
        ((status == outside) & winner) | (stored & served & ~winner & too_old),
        np.ones(t.shape, bool),
    ]
    codes = np.select(rules, list(range(len(CLASSES))), default=len(CLASSES) - 1)
    return np.where(mismatch, codes, MATCHED).astype(np.int8)


def classify_by_inputs(mismatch: np.ndarray, input_codes: list[np.ndarray]) -> np.ndarray:
    """A transformed feature's class codes: per mismatched row, the first class (decision
    order) among its inputs' codes on that row; value-differs when every input matched."""
    import numpy as np

    if input_codes:
        stacked = np.stack(input_codes)
        first = np.where(stacked == MATCHED, len(CLASSES), stacked).min(axis=0)
    else:
        first = np.full(mismatch.shape, len(CLASSES))
    first = np.where(first == len(CLASSES), CLASSES.index(VALUE_DIFFERS), first)
    return np.where(mismatch, first, MATCHED).astype(np.int8)
