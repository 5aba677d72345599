"""The entity rows a model is trained on or scores: reading them and checking their columns."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from featurestore.errors import RetrievalError
from featurestore.offline.plan import ENTITY_TIMESTAMP

if TYPE_CHECKING:
    import pandas as pd

    from featurestore.registry import RegistryState
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


def require_entity_columns(entity_df: pd.DataFrame, state: RegistryState, service: str) -> None:
    """``RetrievalError`` unless the rows have ``event_timestamp`` and every join key the
    service's views are keyed by (checked before the join, which may take a while)."""
    if ENTITY_TIMESTAMP not in entity_df.columns:
        raise RetrievalError(
            f"the entities have no {ENTITY_TIMESTAMP!r} column (each row's point in time); "
            f"they have {list(entity_df.columns)}"
        )
    for projection in state.service(service).projections:
        for key in projection.view.join_keys:
            if key not in entity_df.columns:
                raise RetrievalError(
                    f"the entities have no join key column {key!r}, which feature view "
                    f"{projection.view.name!r} of service {service!r} is keyed by; they have "
                    f"{list(entity_df.columns)}"
                )
