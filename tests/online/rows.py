"""Store-level test helpers: one view's rows (amount Float32, n Int64) keyed by ``user_id``,
written and read straight through an ``OnlineStore`` as a run and a reader would."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from featurestore.columns import CREATED_TS, EVENT_TS
from featurestore.definitions import Field
from featurestore.online.base import Claim, KeyGroup, OnlineStore, ViewIdentity
from featurestore.online.codec import RowCodec
from featurestore.types import Float32, Int64

TS = pa.timestamp("us", tz="UTC")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
FEATURES = [Field(name="amount", dtype=Float32), Field(name="n", dtype=Int64)]
CODEC = RowCodec(FEATURES)


def identity(view: str, fingerprint: str = "fp") -> ViewIdentity:
    return ViewIdentity(view, fingerprint, CODEC.layout)


def batch(
    keys: list[int], amounts: list[float | None], events: list[datetime], created: list[Any]
) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "user_id": pa.array(keys, pa.int64()),
            "amount": pa.array(amounts, pa.float32()),
            "n": pa.array(list(range(len(keys))), pa.int64()),
            EVENT_TS: pa.array(events, TS),
            CREATED_TS: pa.array(created, TS),
        }
    )


def write(
    store: OnlineStore, view: str | Claim, rows: list[tuple[int, float, datetime, Any]]
) -> int:
    """Write rows as a run that claims ``view`` (or holds ``view``, a claim) would."""
    claim = store.claim(identity(view)) if isinstance(view, str) else view
    keys, amounts, events, created = (list(c) for c in zip(*rows, strict=True))
    return store.write_rows(claim, batch(keys, amounts, events, created), ["user_id"], FEATURES)


def amounts(store: OnlineStore, view: str | ViewIdentity, keys: list[int]) -> list[float | None]:
    """The stored amounts, read as a reader whose registry has ``view`` (an identity)."""
    asked = identity(view) if isinstance(view, str) else view
    [group] = [KeyGroup((asked,), [f"user_id=i{k}" for k in keys])]
    return [None if r[0] is None else CODEC.decode(r[0])[2][0] for r in store.read([group])]
