"""The store a model's entity rows get their features from.

Entity rows themselves (a DataFrame, a Parquet or CSV file, a folder of Parquet files, a
SQL query) are read by the one entity reader, ``offline/entities.py``, through
``FeatureStore.get_historical_features``; their columns (join keys, ``event_timestamp``)
are checked by the offline join plan.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from featurestore.store import FeatureStore


def open_store(store: FeatureStore | str | os.PathLike[str]) -> FeatureStore:
    """A ``FeatureStore`` as given, or opened from a repo path."""
    from featurestore.store import FeatureStore

    return store if isinstance(store, FeatureStore) else FeatureStore(store)
