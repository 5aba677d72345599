"""Feast 0.67's own HTTP client (its ``remote`` online store) reading our server with the
quickstart's requests: runs under .venv-feast, imports nothing from featurestore.

    .venv-feast/bin/python tests/feast_quickstart/feast_remote.py JOB.json

JOB: {"repo": a copy of the Feast quickstart repo feast_side.py applied, "url": our server}.
The copy's online store becomes ``{type: remote, path: URL}``; prints the ``to_dict()`` of
workflow.py's ``FEATURES`` read and of the service ``driver_activity_v1``, as JSON.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("FEAST_USAGE", "False")
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

from feast import FeatureStore  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from workflow import FEATURES, ONLINE_ROWS  # noqa: E402


def run(job: dict[str, Any]) -> dict[str, Any]:
    repo = Path(job["repo"])
    config = repo / "feature_store.yaml"
    remote = f"online_store:\n    type: remote\n    path: {job['url']}\n"
    text = re.sub(r"online_store:\n(    .*\n)+", remote, config.read_text())
    config.write_text(text)
    os.chdir(repo)  # Feast reads relative paths against the working directory
    store = FeatureStore(repo_path=str(repo))
    service = store.get_feature_service("driver_activity_v1")
    return {
        "features": store.get_online_features(features=FEATURES, entity_rows=ONLINE_ROWS).to_dict(),
        "v1": store.get_online_features(features=service, entity_rows=ONLINE_ROWS).to_dict(),
    }


if __name__ == "__main__":
    protocol, sys.stdout = sys.stdout, sys.stderr  # anything Feast prints goes to stderr
    protocol.write(json.dumps(run(json.loads(Path(sys.argv[1]).read_text()))) + "\n")
