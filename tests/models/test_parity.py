"""Train/serve parity at the model: online features score exactly like the offline path."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from model_repo import START, USERS, Trained

from featurestore import FeatureStore, models


def test_online_features_give_the_offline_predictions_bit_for_bit(
    trained: Trained, tmp_path: Path
) -> None:
    copy = trained.copy(tmp_path)
    store = FeatureStore(copy.repo)
    # Every snapshot with event_ts <= T was created by T (created = event + 1 h), so what is
    # materialized up to T is exactly what a training row at T sees (as_of="created").
    at = START + timedelta(days=10, hours=2)
    store.materialize(START - timedelta(days=5), at)
    users = [*range(1, USERS + 1), 999_999]  # the last user was never seen: all nulls
    online = store.get_online_features(
        feature_service="svc",
        entity_rows=[{"user_id": u} for u in users],
        full_feature_names=True,
        now=at,
    ).to_df()
    offline = models.predict(
        copy.model,
        copy.repo,
        pd.DataFrame({"user_id": users, "event_timestamp": [at] * len(users)}),
    )
    online_scores = trained.artifact.predict_features(online)
    np.testing.assert_array_equal(online_scores, offline["prediction"].to_numpy())
    assert online.iloc[-1].drop("user_id").isna().all()
    assert len(set(online_scores.round(6))) > 10  # real, varied scores, not a constant
