"""Windowed aggregations computed from raw events, identical offline and online, bit for bit.

``FeatureView(aggregations=[Aggregation(column, function, time_window, slide_interval)])``
(featurestore/definitions.py). The value at time ``t`` aggregates the key's events with

    floor(t - time_window, slide) <= event_ts < t

(``floor`` to a multiple of the slide since the UTC epoch): the start snaps back to a tile
boundary, so a window covers between ``time_window`` and ``time_window + slide``; the end is
``t`` itself, EXCLUSIVE (unlike the plain join): the event being scored is usually in the
source at exactly its own time, and serving scores it before it is stored. With
``as_of="created"`` only events created by ``t`` count (a missing created time counts as
known). Rows with a null key or event time are skipped (and counted in a warning).

===========  ================================  ===============  =============  ================================
function     accepts                           output           empty window   nulls, NaN, infinities, overflow
===========  ================================  ===============  =============  ================================
count        any dtype                         Int64            0              counts events, null values too
sum          Int32, Int64, Float32, Float64    Int64 (integer   0 (0.0)        nulls ignored (only nulls: 0);
                                               columns) or                     NaN and infinities propagate
                                               Float64                         (IEEE); integers are summed
                                                                               exactly: a window whose total
                                                                               leaves Int64's range is an
                                                                               error naming the view and
                                                                               column, never a wrap (partial
                                                                               sums beyond it are fine)
mean         Int32, Int64, Float32, Float64    Float64          null           nulls ignored; NaN gives NaN;
                                                                               infinities as SQL's AVG (one
                                                                               sign: that infinity; both: NaN)
stddev,      Int32, Int64, Float32, Float64    Float64          null           sample statistics (n - 1), null
variance                                                                       under two values; nulls ignored;
                                                                               NaN or an infinity gives NaN
min, max     Int32, Int64, Float32, Float64,   the column's     null           nulls ignored; NaN is above
             UnixTimestamp                                                     every number (max is NaN if
                                                                               any; min only if all are)
last         any dtype                         the column's     null           the latest event's non-null
                                                                               value; ties broken as the join
                                                                               breaks them (created time, then
                                                                               file and row)
===========  ================================  ===============  =============  ================================

How both paths give the same bits. Values are partials (``partials.py``: ``count``, and per
column ``n``, ``sum`` (integers: wrapped, with a ``wraps`` count), Welford/Chan ``mean`` and
``m2``, ``min``, ``max``, ``last``) merged
by ONE function, ``partials.merge``, written once over a tiny backend (Python scalars or
numpy arrays: the same IEEE operations in the same order). Events are ordered as the join
orders them; a tile is the pairwise merge of its events (``tiles.py``: a balanced tree whose
shape depends only on the tile's length); a window is cut into the same aligned tiles on
both paths (``windows.decompose``: slide tiles, hours, days, hours, slides, then the head
``[floor(t, slide), t)``) and folded left to right. Offline (``offline.py``) the engine
sorts the events in SQL and numpy computes tiles, heads and folds for every entity row;
online, materialization stores whole tiles per key (``online.py``, ``materialize.py``) and
a read folds the tiles of each window at ``now`` with the Python backend. DuckDB's own
aggregates are never used for floats: its parallel sums depend on thread scheduling.

Module map: ``functions.py`` (the table above), ``windows.py`` (slides, levels, the cut),
``partials.py`` (the record and its merge), ``tiles.py`` (events to tiles), ``plan.py`` (a
view's aggregations resolved), ``offline.py`` (training sets), ``online.py`` (tiles written
and read), ``materialize.py`` (a materialization run of an aggregated view).
"""
