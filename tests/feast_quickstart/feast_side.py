"""Feast's own answers on its own quickstart repository (run under .venv-feast, never ours).

    .venv-feast/bin/python tests/feast_quickstart/feast_side.py JOB.json

``feast init`` generates the quickstart repo (Feast 0.67's template: driver hourly stats, a
request source with an on-demand view, feature services, a push source) and its data in
``job["workdir"]``; this script keeps a copy of the generated definitions and data before
anything changes them, switches the repo to Feast's DuckDB offline store (its default file
store drops and reorders rows: FEAST_NOTES.md), and runs what Feast's own
``test_workflow.py`` does, with fixed times instead of the wall clock:

1. ``apply``; ``get_historical_features`` for test_workflow's entity rows (with request
   fields), written as Arrow to ``historical.parquet``;
2. ``materialize_incremental(end_date=job["now"])``; ``get_online_features`` for drivers
   1001, 1002 and 999 (unknown) with request fields: a list of features and the services
   ``driver_activity_v1`` and ``driver_activity_v3``; and the order of the feature names
   Feast answers for workflow.py's ``ORDERED`` and ``GROUPED`` requests;
3. ``push`` one row for driver 1001 at ``job["push_ts"]`` (test_workflow's values) into
   ``driver_stats_push_source`` with ``PushMode.ONLINE_AND_OFFLINE``; then the online read of
   ``driver_activity_v3`` again, and the pushed driver's training row at ``push_ts``, written
   to ``after_push.parquet``.

It prints one JSON object: the online answers (``to_dict()``), and where it wrote things.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("FEAST_USAGE", "False")
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

import pyarrow.parquet as pq  # noqa: E402
from click.testing import CliRunner  # noqa: E402  (Feast's dependency)
from feast import FeatureStore  # noqa: E402
from feast.cli.cli import cli as feast_cli  # noqa: E402
from feast.data_source import PushMode  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from workflow import (  # noqa: E402
    AFTER_PUSH,
    FEATURES,
    GROUPED,
    HISTORICAL,
    ONLINE_ROWS,
    ORDERED,
    after_push_df,
    entity_df,
    push_df,
    registry_listing,
)


def feast(*args: str, cwd: Path) -> None:
    """Feast's own command line (``feast ARGS`` in ``cwd``), run in this process: a process of
    its own would import Feast again (seconds each). The working directory stays ``cwd``."""
    os.chdir(cwd)
    result = CliRunner().invoke(feast_cli, list(args))
    if result.exit_code != 0:
        raise RuntimeError(f"feast {' '.join(args)} failed: {result.output}") from result.exception


def run(job: dict[str, Any]) -> dict[str, Any]:
    workdir = Path(job["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    feast("init", "qs", cwd=workdir)
    repo = workdir / "qs" / "feature_repo"
    original = workdir / "original"
    original.mkdir()
    shutil.copy(repo / "feature_definitions.py", original)
    shutil.copy(repo / "data" / "driver_stats.parquet", original)
    config = repo / "feature_store.yaml"
    config.write_text(config.read_text() + "offline_store:\n    type: duckdb\n")
    feast("apply", cwd=repo)  # and stays in repo: Feast reads the relative source path
    # against the working directory
    store = FeatureStore(repo_path=str(repo))
    registry = registry_listing(store)
    historical = store.get_historical_features(entity_df=entity_df(), features=HISTORICAL)
    pq.write_table(historical.to_arrow(), workdir / "historical.parquet")

    now = datetime.fromisoformat(job["now"])
    store.materialize_incremental(end_date=now)
    online = {
        "features": store.get_online_features(features=FEATURES, entity_rows=ONLINE_ROWS),
        "v1": store.get_online_features(
            features=store.get_feature_service("driver_activity_v1"), entity_rows=ONLINE_ROWS
        ),
        "v3": store.get_online_features(
            features=store.get_feature_service("driver_activity_v3"), entity_rows=ONLINE_ROWS
        ),
    }
    answers = {name: response.to_dict() for name, response in online.items()}
    answers["orders"] = {  # the feature names in the order Feast answers them
        name: list(
            store.get_online_features(
                features=refs, entity_rows=ONLINE_ROWS, full_feature_names=True
            ).to_dict()
        )
        for name, refs in {**ORDERED, "grouped": GROUPED}.items()
    }

    push_ts = datetime.fromisoformat(job["push_ts"])
    store.push("driver_stats_push_source", push_df(push_ts), to=PushMode.ONLINE_AND_OFFLINE)
    answers["v3_after_push"] = store.get_online_features(
        features=store.get_feature_service("driver_activity_v3"), entity_rows=ONLINE_ROWS
    ).to_dict()
    table = store.get_historical_features(
        entity_df=after_push_df(push_ts), features=AFTER_PUSH
    ).to_arrow()
    pq.write_table(table, workdir / "after_push.parquet")
    return {"online": answers, "original": str(original), "registry": registry}


def main(argv: list[str]) -> int:
    protocol = sys.stdout
    sys.stdout = sys.stderr  # Feast's prints go to stderr; stdout carries the answer
    answer = run(json.loads(Path(argv[1]).read_text()))
    protocol.write(json.dumps(answer, default=str) + "\n")
    protocol.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
