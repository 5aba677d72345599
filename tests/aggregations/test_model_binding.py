"""A model trained on an aggregated view: ``models describe`` names what changed in it.

An aggregated view's features are its aggregations' outputs; its schema declares only the
columns it reads. The binding's diff once compared the model's features with the schema's
fields, so any change to the view (here a ttl) also listed every aggregation as a "removed
field".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from featurestore import models
from tests.aggregations.agg_repo import DEFINITIONS, hours, make_repo
from tests.cli import run_cli


def test_a_ttl_change_of_an_aggregated_view_is_named_alone(tmp_path: Path) -> None:
    rows = [(u, hours(h + u / 10), float(h % 7 + u), h % 3) for u in (1, 2, 3) for h in range(48)]
    store = make_repo(tmp_path / "repo", "online_store: {type: sqlite}", rows)
    rng = np.random.default_rng(3)
    entities = pd.DataFrame(
        {
            "user_id": rng.integers(1, 4, size=200).astype("int64"),
            "event_timestamp": [hours(h) for h in rng.uniform(1, 48, size=200)],
            "is_fraud": rng.integers(0, 2, size=200).astype("int64"),
        }
    )
    models.train(
        store, service="scoring", entities=entities, label="is_fraud",
        out=tmp_path / "model", num_boost_round=2, threads=1, progress=False,
    )  # fmt: skip
    features = tmp_path / "repo" / "features.py"
    features.write_text(DEFINITIONS.replace("timedelta(hours=2)", "timedelta(hours=3)", 1))
    assert run_cli("apply", "--repo", tmp_path / "repo").returncode == 0

    result = run_cli("models", "describe", tmp_path / "model", "--repo", tmp_path / "repo")
    assert result.returncode == 0, result.stderr
    report = result.stdout[result.stdout.index("MISMATCH") :]
    assert "user_txn: changed (trained on version 1, registry has version 2" in report
    assert "ttl: 2h -> 3h" in report
    assert "removed" not in report, report
    assert "user_profile" not in report  # only the changed view is named
