"""The entity rows a model is trained on or scores, and the store their features come from.

Their columns (join keys, ``event_timestamp``) are checked by the offline engine's join plan.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from featurestore.errors import RetrievalError
from featurestore.offline.plan import ENTITY_TIMESTAMP

if TYPE_CHECKING:
    import pandas as pd

    from featurestore.store import FeatureStore


def open_store(store: FeatureStore | str | os.PathLike[str]) -> FeatureStore:
    """A ``FeatureStore`` as given, or opened from a repo path."""
    from featurestore.store import FeatureStore

    return store if isinstance(store, FeatureStore) else FeatureStore(store)


def read_entities(entities: pd.DataFrame | str | os.PathLike[str]) -> pd.DataFrame:
    """Entity rows from a DataFrame (returned as is) or a ``.parquet`` / ``.csv`` file."""
    import pandas as pd

    if isinstance(entities, pd.DataFrame):
        return entities
    path = Path(entities)
    if not path.exists():
        raise RetrievalError(f"entities file {path} does not exist")
    if path.suffix == ".csv":
        frame = pd.read_csv(path)
        if ENTITY_TIMESTAMP in frame.columns:
            frame[ENTITY_TIMESTAMP] = pd.to_datetime(frame[ENTITY_TIMESTAMP], utc=True)
        return frame
    if path.suffix == ".parquet" or path.is_dir():
        return pd.read_parquet(path)
    raise RetrievalError(f"entities file {path}: expected a .parquet or .csv file")
