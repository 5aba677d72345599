"""Feast 0.67's own ``remote`` online store, pointed at our server, reads what our SDK reads."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from service_process import ROOT, ServiceProcess
from small_repo import write_small_repo

from featurestore import FeatureStore

pytestmark = [pytest.mark.feast, pytest.mark.xdist_group("serving")]

FEATURES = [f"profile:{f}" for f in ("score32", "score64", "n", "big", "country", "verified")]


def feast_python() -> Path:
    path = Path(os.environ.get("FEATURESTORE_FEAST_PYTHON", ROOT / ".venv-feast/bin/python"))
    if path.exists():
        return path
    reason = f"no Feast environment at {path}: run 'make feast'"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def test_feasts_remote_client_reads_the_values_our_sdk_reads(
    tmp_path: Path,
    redis_factory,  # type: ignore[no-untyped-def]
) -> None:
    python = feast_python()
    repo, model = write_small_repo(tmp_path, redis_factory().url)
    users = [*range(1, 31), 4242]  # one unknown: NOT_FOUND
    with ServiceProcess(repo, model) as server:
        job = {
            "workdir": str(tmp_path / "feast"),
            "url": server.url,
            "features": FEATURES,
            "users": users,
            "source": str(repo / "data" / "profile.parquet"),
        }
        (tmp_path / "job.json").write_text(json.dumps(job))
        result = subprocess.run(
            [
                str(python),
                str(Path(__file__).with_name("feast_remote_client.py")),
                str(tmp_path / "job.json"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    feast = json.loads(result.stdout)
    ours = (
        FeatureStore(repo).get_online_features(FEATURES, [{"user_id": u} for u in users]).to_dict()
    )
    assert feast["user_id"] == users
    for name in ("score64", "n", "big", "country", "verified"):
        assert feast[name] == ours[name], name
    # Feast reads our shortest float32 decimals as doubles: equal once narrowed back
    as32 = [None if v is None else np.float32(v).tobytes() for v in feast["score32"]]
    assert as32 == [None if v is None else np.float32(v).tobytes() for v in ours["score32"]]
    assert any(v is None for v in ours["score32"][:-1])  # nulls in the data, null in both
    assert feast["score32"][-1] is None and ours["country"][-1] is None
