"""An aggregated view, planned: its aggregations resolved, its partial layout and tile levels.

``ViewAggregations.of(view)`` derives from an applied definition everything both paths need:
each aggregation's column, dtypes, window, slide and tile chain; the view's partial record
(``partials.Layout``, over all its aggregations, whatever a request projects); the levels
its tiles are kept at (``windows.view_levels``) and how long each level's tiles matter.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from featurestore.aggregations.partials import Layout
from featurestore.aggregations.windows import chain, view_levels
from featurestore.types import DType

if TYPE_CHECKING:
    from featurestore.definitions import FeatureView, Field

TILE_FORMAT = 1  # the version of the tile encoding: part of every tile layout id


@dataclass(frozen=True)
class AggSpec:
    """One aggregation, resolved: output name, source column and dtype, function, window,
    slide (µs) and output dtype."""

    name: str
    column: str
    dtype: DType
    function: str
    window_us: int
    slide_us: int
    output: DType

    @property
    def chain(self) -> tuple[int, ...]:
        return chain(self.window_us, self.slide_us)


@dataclass(frozen=True)
class ViewAggregations:
    """Everything about an aggregated view's computation that its definition decides."""

    view: str
    specs: tuple[AggSpec, ...]
    layout: Layout
    levels: tuple[int, ...]

    @classmethod
    def of(cls, view: FeatureView) -> ViewAggregations:
        dtypes = view.column_dtypes
        specs = tuple(
            AggSpec(
                name=a.name,
                column=a.column,
                dtype=dtypes[a.column],
                function=a.function,
                window_us=a.window_us,
                slide_us=a.slide_us,
                output=a.output_dtype(dtypes[a.column]),
            )
            for a in view.aggregations
            if a.name is not None
        )
        layout = Layout.of([(s.column, s.dtype, s.function) for s in specs])
        levels = view_levels([(s.window_us, s.slide_us) for s in specs])
        return cls(view.name, specs, layout, levels)

    def spec(self, name: str) -> AggSpec:
        return next(s for s in self.specs if s.name == name)

    @property
    def windows(self) -> tuple[tuple[int, int], ...]:
        """The distinct (window, slide) pairs, in first use."""
        return tuple(dict.fromkeys((s.window_us, s.slide_us) for s in self.specs))

    def retention_us(self, level: int) -> int:
        """How far back from a view's end its tiles of ``level`` can still be read: the
        longest window using the level, plus its slide."""
        return max(w + s for w, s in self.windows if level in chain(w, s))

    @property
    def longest_us(self) -> int:
        """The longest window plus its slide: no event older than that before ``t`` counts."""
        return max(w + s for w, s in self.windows)

    def tile_fields(self) -> tuple[Field, ...]:
        """The tile record's fields, as ``Field`` objects for the row codec."""
        from featurestore.definitions import Field

        return tuple(Field(name=name, dtype=dtype) for name, dtype in self.layout.fields)

    @property
    def layout_id(self) -> str:
        """16 hex digits identifying what a stored tile means: the tile format, the levels
        and the partial record's fields (names and dtypes, in order)."""
        fields = [[name, dtype.name] for name, dtype in self.layout.fields]
        text = json.dumps(["tiles", TILE_FORMAT, list(self.levels), fields], separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]
