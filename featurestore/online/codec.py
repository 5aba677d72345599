"""Value encoding for the online store, in one place: entity keys and compact binary rows.

Both online stores (Redis and SQLite) keep, per (view, entity key), one *row*: a bytes value
holding the row's event and created timestamps and the view's feature values::

    offset  size        content
    0       8           event_ts  (µs since the epoch, int64 with its sign bit flipped, big-endian)
    8       8           created_ts (same encoding; 0 when the source has no created time)
    16      ceil(n/8)   null bitmap: bit j (little-endian bit order) set = feature j is null
    ...     fixed       one slot per feature, in schema order, big-endian:
                        Int32 4, Int64 8, Float32 4, Float64 8 (IEEE bits as stored),
                        Bool 1, UnixTimestamp 8 (µs), String 4 (its UTF-8 length)
    ...     variable    the String features' UTF-8 bytes, in schema order

Flipping the sign bit makes the first 16 bytes compare, byte by byte, exactly like the pair
``(event_ts, created_ts)`` compares as integers (a missing created time is the smallest
value, i.e. sorts oldest). That is the whole never-regress rule: a store writes a row only
when its 16-byte prefix is >= the stored one's — a byte loop in the Redis Lua script, a BLOB
comparison (memcmp) in SQLite. Same code, same order, on both stores.

Values are lossless: floats are copied as their IEEE bits (a NaN is a value, and ``-0.0``
stays negative), int64 exactly, strings as UTF-8, timestamps to the microsecond, nulls as
bits in the bitmap (a null's slot holds zeros). On decode a signalling float32 NaN becomes
the quiet NaN with the same payload (what any conversion to a Python float does).

Rows are positional, so a row can only be decoded with the layout it was written with: the
ordered feature names and dtypes, identified by ``layout_id`` (16 hex digits of a sha256 over
this format's version and the ordered (name, dtype) pairs; unlike a view's fingerprint, field
order counts). Every stored row is tied to one layout id (featurestore/online/base.py says how
each store keeps that tie), and a read decodes only rows of the layout its definition has.

Entity keys are canonical text, typed so that ``1`` and ``"1"`` differ:
``user_id=i1001`` or, for several join keys sorted by name, ``merchant=s5:m_001|user_id=i7``
(``i`` integer in decimal, ``s`` string as ``<length>:<text>``, so the encoding is
injective whatever the text holds).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from featurestore.columns import CREATED_TS, EVENT_TS
from featurestore.errors import OnlineStoreError
from featurestore.types import DType, as_utc, key_dtype_names

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.definitions import FeatureView, Field

HEADER_SIZE = 16
ROW_FORMAT = 1  # the version of the encoding below, part of every layout id
SIGN = 1 << 63
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HEADER = struct.Struct(">QQ")

# dtype name -> (struct code on decode, numpy slot dtype on encode)
_SLOTS: dict[str, tuple[str, str]] = {
    "Int32": ("i", ">i4"),
    "Int64": ("q", ">i8"),
    "Float32": ("f", ">u4"),  # floats are copied as their bits, see _column_slots
    "Float64": ("d", ">u8"),
    "Bool": ("?", "u1"),
    "UnixTimestamp": ("q", ">i8"),
    "String": ("I", ">u4"),
}


def layout_id(features: Sequence[Field]) -> str:
    """The id of the row layout of ``features`` (in order): see the module docstring.

    Two feature lists have the same id exactly when they have the same names and dtypes in
    the same order (up to a 64-bit hash collision), so a reordered or retyped view gets a new
    id. ``ROW_FORMAT`` is hashed in too: changing this encoding must change every id.
    """
    ordered = [[f.name, f.dtype.name] for f in features]
    text = json.dumps([ROW_FORMAT, ordered], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def view_layout_id(view: FeatureView) -> str:
    """The layout id of what the online store holds for ``view``: its rows' ``layout_id``,
    or for an aggregated view its tiles' (``aggregations.plan.ViewAggregations.layout_id``)."""
    if view.aggregations:
        from featurestore.aggregations.plan import ViewAggregations

        return ViewAggregations.of(view).layout_id
    return layout_id(view.features)


def timestamp_us(ts: datetime) -> int:
    """Microseconds since the epoch of an aware (or naive = UTC) datetime, exactly."""
    return (as_utc(ts) - EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    """The UTC datetime ``us`` microseconds after the epoch."""
    return EPOCH + timedelta(microseconds=us)


def version_prefix(event_us: int, created_us: int | None) -> bytes:
    """The 16 bytes that order rows: compare them bytewise to compare (event, created)."""
    return _HEADER.pack(event_us + SIGN, 0 if created_us is None else created_us + SIGN)


def key_column(name: str, dtype: DType, values: Sequence[Any]) -> list[str]:
    """One join key's part of the entity key for each value (their types already checked)."""
    if dtype.name == "String":
        return [f"{name}=s{len(v)}:{v}" for v in values]
    return [f"{name}=i{v}" for v in values]


def combine_keys(parts: Sequence[list[str]]) -> list[str]:
    """Entity keys from the ``key_column`` parts of every join key, given sorted by name."""
    if len(parts) == 1:
        return parts[0]
    return ["|".join(row) for row in zip(*parts, strict=True)]


def entity_key(parts: Sequence[tuple[str, DType, Any]]) -> str:
    """The canonical entity key of (join key name, dtype, value) triples."""
    return combine_keys([key_column(n, d, [v]) for n, d, v in sorted(parts)])[0]


def entity_keys(batch: pa.RecordBatch, join_keys: Sequence[str]) -> list[str]:
    """The entity key of every row of ``batch``, from its join-key columns (no nulls).

    A key column's Arrow type says its tag: integers ``i``, strings ``s``.
    """
    import pyarrow.types as pt

    from featurestore.types import Int64, String

    parts = []
    for name in sorted(join_keys):
        column = batch.column(name)
        if column.null_count:
            raise OnlineStoreError(f"join key column {name!r} holds nulls; they cannot be keys")
        if pt.is_integer(column.type):
            dtype = Int64
        elif pt.is_string(column.type) or pt.is_large_string(column.type):
            dtype = String
        else:
            raise OnlineStoreError(
                f"join key column {name!r} has Arrow type {column.type}; online rows are "
                f"keyed by {key_dtype_names()} keys only"
            )
        parts.append(key_column(name, dtype, column.to_pylist()))
    return combine_keys(parts)


class RowCodec:
    """Encodes and decodes one view's rows (see the module docstring for the layout).

    ``features`` is the view's full feature list in schema order; a stored row always holds
    all of them, whatever a request projects. ``layout`` is their ``layout_id``.
    """

    def __init__(self, features: Sequence[Field]) -> None:
        self.features = tuple(features)
        self.layout = layout_id(self.features)
        self.dtypes = tuple(f.dtype for f in self.features)
        self.bitmap_size = (len(self.features) + 7) // 8
        codes = "".join(_SLOTS[d.name][0] for d in self.dtypes)
        self._fixed = struct.Struct(">QQ" + f"{self.bitmap_size}s" + codes)
        self.strings = tuple(i for i, d in enumerate(self.dtypes) if d.name == "String")
        self.timestamps = tuple(i for i, d in enumerate(self.dtypes) if d.name == "UnixTimestamp")
        self._no_nulls = bytes(self.bitmap_size)

    # --- encode (materialization: whole Arrow batches at once) ------------------------

    def encode_batch(self, batch: pa.RecordBatch) -> list[bytes]:
        """One row per record: the features by name, plus the event and created times
        (``columns.EVENT_TS``, ``columns.CREATED_TS``: reserved names, so a feature may be
        called ``event_ts``). The event time must have no nulls; the created time may be
        absent or null (sorts oldest).
        """
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        n = batch.num_rows
        names = [f"f{i}" for i in range(len(self.features))]
        layout = np.dtype(
            [("event", ">u8"), ("created", ">u8"), ("nulls", "u1", (self.bitmap_size,))]
            + [(name, _SLOTS[d.name][1]) for name, d in zip(names, self.dtypes, strict=True)]
        )
        out = np.zeros(n, dtype=layout)
        out["event"] = _timestamp_column(batch.column(EVENT_TS), "event_ts", n).view(
            "u8"
        ) ^ np.uint64(SIGN)
        if CREATED_TS in batch.schema.names:
            created = batch.column(CREATED_TS)
            valid = ~np.asarray(created.is_null().to_numpy(zero_copy_only=False), dtype=bool)
            flipped = _timestamp_column(created, None, n).view("u8") ^ np.uint64(SIGN)
            out["created"] = np.where(valid, flipped, np.uint64(0))
        nulls = np.zeros((n, max(len(self.features), 1)), dtype=bool)
        texts: list[pa.Array] = []
        for j, (f, name) in enumerate(zip(self.features, names, strict=True)):
            column = batch.column(f.name)
            if column.type != f.dtype.to_arrow():
                column = column.cast(f.dtype.to_arrow())
            if column.null_count:
                nulls[:, j] = column.is_null().to_numpy(zero_copy_only=False)
            if f.dtype.name == "String":
                text = pc.fill_null(column, "").cast(pa.binary())
                texts.append(text)
                out[name] = pc.binary_length(text).to_numpy(zero_copy_only=False)
            else:
                out[name] = _column_slots(column, f.dtype, pa, pc)
        out["nulls"] = np.packbits(nulls, axis=1, bitorder="little")[:, : self.bitmap_size]
        # Arrow concatenates each row's fixed part and its strings' bytes, in C
        fixed = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(layout.itemsize), n, [None, pa.py_buffer(out.tobytes())]
        )
        if not texts:
            return fixed.to_pylist()
        return pc.binary_join_element_wise(fixed.cast(pa.binary()), *texts, b"").to_pylist()

    def encode(
        self, event_ts: datetime, created_ts: datetime | None, values: Sequence[Any]
    ) -> bytes:
        """One row from Python values (``None`` = null); for tests and single writes."""
        import pyarrow as pa

        columns = {
            f.name: pa.array([v], f.dtype.to_arrow())
            for f, v in zip(self.features, values, strict=True)
        }
        columns[EVENT_TS] = pa.array([event_ts], pa.timestamp("us", tz="UTC"))
        columns[CREATED_TS] = pa.array([created_ts], pa.timestamp("us", tz="UTC"))
        return self.encode_batch(pa.RecordBatch.from_pydict(columns))[0]

    # --- decode (the read path: plain Python, one struct call per row) -----------------

    def decode(self, row: bytes) -> tuple[int, int | None, list[Any]]:
        """``(event_us, created_us or None, values)``: values in schema order, None = null."""
        created = _HEADER.unpack_from(row)[1]
        events, columns = self.decode_columns([row], range(len(self.features)))
        return events[0], (created - SIGN if created else None), [c[0] for c in columns]

    def decode_columns(
        self, rows: Sequence[bytes], positions: Sequence[int]
    ) -> tuple[list[int], list[list[Any]]]:
        """Many rows at once (the read path): their event µs, and for each feature position
        asked for, its column of values (None = null).

        The fixed parts are unpacked in one C loop and transposed by ``zip``; only strings,
        timestamps and nulls need Python per value.
        """
        fixed = self._fixed.size
        buf = b"".join([r[:fixed] for r in rows] if self.strings else rows)
        fields = list(zip(*self._fixed.iter_unpack(buf), strict=True)) if rows else []
        if not fields:
            return [], [[] for _ in positions]
        events = [e - SIGN for e in fields[0]]
        columns = []
        for position in positions:
            values: Sequence[Any] = fields[3 + position]
            if position in self.strings:
                values = self._strings(rows, fields, position)
            elif position in self.timestamps:
                values = [from_us(v) for v in values]
            columns.append(list(values))
        bitmaps = fields[2]
        if bitmaps.count(self._no_nulls) != len(bitmaps):
            for column, position in zip(columns, positions, strict=True):
                byte, bit = position >> 3, 1 << (position & 7)
                for i, bitmap in enumerate(bitmaps):
                    if bitmap[byte] & bit:
                        column[i] = None
        return events, columns

    def _strings(
        self, rows: Sequence[bytes], fields: list[tuple[Any, ...]], position: int
    ) -> list[str]:
        """The string at ``position`` of every row: after the fixed part and earlier strings."""
        before = [3 + i for i in self.strings if i < position]
        start = self._fixed.size
        lengths = fields[3 + position]
        if not before:
            return [r[start : start + n].decode() for r, n in zip(rows, lengths, strict=True)]
        offsets = [start + sum(x) for x in zip(*(fields[i] for i in before), strict=True)]
        return [r[o : o + n].decode() for r, o, n in zip(rows, offsets, lengths, strict=True)]


def decode_version(row: bytes) -> tuple[int, int | None]:
    """``(event_us, created_us or None)`` of a stored row, from its 16-byte prefix."""
    event, created = _HEADER.unpack_from(row)
    return event - SIGN, (created - SIGN if created else None)


def _timestamp_column(column: pa.Array, name: str | None, n: int) -> Any:
    """A timestamp column as int64 µs in numpy (nulls as 0); ``name`` set = nulls forbidden."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if name is not None and column.null_count:
        raise OnlineStoreError(f"column {name!r} holds nulls; every online row needs one")
    if column.type != pa.timestamp("us", tz="UTC"):
        column = column.cast(pa.timestamp("us", tz="UTC"))
    return pc.fill_null(column.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)


def _column_slots(column: pa.Array, dtype: DType, pa: Any, pc: Any) -> Any:
    """A fixed-width column as the numpy values its slots hold (nulls as zeros)."""
    if dtype.name in ("Float32", "Float64"):
        bits = pa.uint32() if dtype.name == "Float32" else pa.uint64()
        column = column.view(bits)  # the IEEE bits, untouched: NaN payloads and -0.0 survive
    elif dtype.name == "UnixTimestamp":
        column = column.cast(pa.int64())
    zero = False if dtype.name == "Bool" else 0
    return pc.fill_null(column, zero).to_numpy(zero_copy_only=False)
