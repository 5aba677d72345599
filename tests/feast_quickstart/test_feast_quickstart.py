"""Feast's own quickstart repository runs here, and answers as Feast does on the same data.

``feature_repo/feature_definitions.py`` is what ``feast init`` generates in Feast 0.67, with
its imports changed from ``feast`` to ``featurestore`` and the parts this project
deliberately does not support removed (``Project``, ``Map``/``Json``/``Struct`` fields,
``enable_validation=``, ``version=``, ``logging_config=``, the ``LabelView``); the
configuration is ours (``featurestore.yaml``). The tests check that claim against a fresh
``feast init`` (our file is Feast's, line for line, minus removed lines, imports aside), that
Feast's file with only its imports changed fails at its first unsupported definition with a
message naming it, and then run Feast's workflow (``feast_side.py``: apply, training set,
``materialize_incremental(end_date=...)``, online reads with request fields, a feature
service with a projection, a push into the push source, online and offline reads after it)
on both sides over the same generated data, comparing values and types: floats bit for bit;
and the SDK's registry accessors (``list_feature_views(tags=...)``, ``get_entity``, ...)
return the same objects by name. Over HTTP, ``featurestore serve`` on our copy answers the
feature names in the order Feast's server does, and Feast's own ``remote`` online store
(``feast_remote.py``) reads from it what Feast read from its own store.
Feast reorders training rows; both sides are sorted by driver and time first.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import DefinitionError, FeatureStore, PushMode, models
from tests.feast_quickstart.workflow import (
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
from tests.offline.test_feast_parity import feast_python
from tests.serving.service_process import ServiceProcess

# One xdist worker runs the module, so Feast's side (feast_run) runs once per test run.
pytestmark = [pytest.mark.feast, pytest.mark.slow, pytest.mark.xdist_group("feast-quickstart")]

HERE = Path(__file__).parent
KEPT = HERE / "feature_repo"
UNSUPPORTED_KEYS = {"driver_metadata", "driver_config", "driver_profile"}


@pytest.fixture(scope="module")
def feast_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Feast's answers (feast_side.py under .venv-feast) and where it left its files."""
    python = feast_python()
    work = tmp_path_factory.mktemp("feast_quickstart")
    now = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)
    job = {
        "workdir": str(work / "feast"),
        "now": now.isoformat(),
        "push_ts": (now - timedelta(minutes=3)).isoformat(),
    }
    (work / "job.json").write_text(json.dumps(job))
    done = subprocess.run(
        [str(python), str(HERE / "feast_side.py"), str(work / "job.json")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"Feast's side failed:\n{done.stderr[-4000:]}")
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return {**answer, **job, "work": work}


def _feast_imports_changed(text: str) -> str:
    """Feast's file with its imports (and nothing else) changed to featurestore's."""
    text = re.sub(r"^from feast\.types import", "from featurestore.types import", text, flags=re.M)
    return re.sub(r"^from feast(\.[\w.]+)? import", "from featurestore import", text, flags=re.M)


def test_the_kept_repo_is_feasts_file_with_imports_changed_and_unsupported_parts_removed(
    feast_run: dict[str, Any],
) -> None:
    feast = Path(feast_run["original"], "feature_definitions.py").read_text().splitlines()
    ours = (KEPT / "feature_definitions.py").read_text().splitlines()
    imports = re.compile(r"^(from |import |    \w+,$|\)$)")
    feast_body = [line for line in feast if not imports.match(line)]
    ours_body = [line for line in ours if not imports.match(line)]
    position = 0
    for line in ours_body:  # every line of ours is Feast's next kept line: deletions only
        while position < len(feast_body) and feast_body[position] != line:
            position += 1
        assert position < len(feast_body), f"not a line of Feast's file (in order): {line!r}"
        position += 1
    removed = [line for line in feast_body if line not in ours_body and line.strip()]
    assert any("Project(" in line for line in removed)
    assert any("LabelView(" in line for line in removed)


def test_feasts_file_with_only_its_imports_changed_fails_naming_what_is_unsupported(
    feast_run: dict[str, Any], tmp_path: Path
) -> None:
    original = Path(feast_run["original"], "feature_definitions.py").read_text()
    (tmp_path / "feature_definitions.py").write_text(_feast_imports_changed(original))
    (tmp_path / "featurestore.yaml").write_text((KEPT / "featurestore.yaml").read_text())
    with pytest.raises(DefinitionError, match=r"Project is not supported.*featurestore.yaml"):
        FeatureStore(tmp_path).plan()


def _bits(values: list[Any], arrow_type: pa.DataType) -> list[Any]:
    if pa.types.is_float32(arrow_type):
        return [None if v is None else struct.pack("<f", v) for v in values]
    if pa.types.is_float64(arrow_type):
        return [None if v is None else struct.pack("<d", v) for v in values]
    return values


def _same_table(ours: pa.Table, feast: pa.Table, columns: list[str]) -> None:
    order = [("driver_id", "ascending"), ("event_timestamp", "ascending")]
    ours, feast = ours.sort_by(order), feast.sort_by(order)
    for column in ["driver_id", *columns]:
        assert ours[column].type == feast[column].type, column
        assert _bits(ours[column].to_pylist(), ours[column].type) == _bits(
            feast[column].to_pylist(), feast[column].type
        ), column


def _online(store: FeatureStore, features: Any, now: datetime) -> dict[str, list[Any]]:
    """test_workflow's online read: a list of features, or a service as Feast fetches it."""
    if isinstance(features, str):
        features = store.get_feature_service(features)
    return store.get_online_features(features=features, entity_rows=ONLINE_ROWS, now=now).to_dict()


def _without_unsupported(answer: dict[str, list[Any]]) -> dict[str, list[Any]]:
    return {k: v for k, v in answer.items() if k not in UNSUPPORTED_KEYS}


def _registry_without_unsupported(listing: dict[str, Any]) -> dict[str, Any]:
    """Feast's registry listing without the parts our kept repo removed: the label view
    (listed among all feature views) and its push and batch sources, and the fields of
    unsupported types."""
    label_view = "driver_quality_labels"
    removed = {label_view, f"{label_view}_batch", f"{label_view}_push", *UNSUPPORTED_KEYS}
    return {
        key: [v for v in value if v not in removed] if isinstance(value, list) else value
        for key, value in listing.items()
    }


def _our_repo(feast_run: dict[str, Any], root: Path) -> Path:
    """The kept repo in ``root`` with the data Feast's ``feast init`` generated."""
    repo = root / "feature_repo"
    shutil.copytree(KEPT, repo, ignore=shutil.ignore_patterns("__pycache__", "data"))
    (repo / "data").mkdir()
    shutil.copy(Path(feast_run["original"], "driver_stats.parquet"), repo / "data")
    return repo


def test_the_quickstart_workflow_answers_as_feast_does(
    feast_run: dict[str, Any], tmp_path: Path
) -> None:
    repo = _our_repo(feast_run, tmp_path)
    store = FeatureStore(repo)
    store.apply()
    work = Path(feast_run["workdir"])
    assert registry_listing(store) == _registry_without_unsupported(feast_run["registry"])

    training = store.get_historical_features(entity_df(), HISTORICAL).to_arrow()
    features = [ref.split(":")[1] for ref in HISTORICAL]
    _same_table(training, pq.read_table(work / "historical.parquet"), features)

    now = datetime.fromisoformat(feast_run["now"])
    store.materialize_incremental(end_date=now)
    answers = feast_run["online"]
    assert _online(store, FEATURES, now) == answers["features"]
    assert _online(store, "driver_activity_v1", now) == answers["v1"]
    assert _online(store, "driver_activity_v3", now) == _without_unsupported(answers["v3"])

    push_ts = datetime.fromisoformat(feast_run["push_ts"])
    store.push("driver_stats_push_source", push_df(push_ts), to=PushMode.ONLINE_AND_OFFLINE)
    after = _online(store, "driver_activity_v3", now)
    assert after == _without_unsupported(answers["v3_after_push"])
    ours = store.get_historical_features(after_push_df(push_ts), AFTER_PUSH).to_arrow()
    features = [ref.split(":")[1] for ref in AFTER_PUSH]
    _same_table(ours, pq.read_table(work / "after_push.parquet"), features)
    # The pushed row is in a new file beside the single-file source, struct columns and all.
    (pushed_file,) = (repo / "data" / "driver_stats.parquet.pushed").glob("push-*.parquet")
    stored = pq.read_table(pushed_file)
    assert stored.schema.names == pq.read_schema(repo / "data" / "driver_stats.parquet").names
    assert stored["driver_profile"].to_pylist() == [{"name": "driver_1001_updated", "age": "30"}]
    store.close()


@pytest.fixture(scope="module")
def our_server(
    feast_run: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """``featurestore serve`` on our copy of the quickstart, materialized to Feast's ``now``
    (a server needs a model: a tiny one on ``driver_activity_v1``)."""
    root = tmp_path_factory.mktemp("our_quickstart_server")
    repo = _our_repo(feast_run, root)
    store = FeatureStore(repo)
    store.apply()
    now = datetime.fromisoformat(feast_run["now"])
    store.materialize_incremental(end_date=now)
    labels = pd.DataFrame(
        {
            "driver_id": [1001 + i % 5 for i in range(40)],
            "event_timestamp": [now + timedelta(seconds=i) for i in range(40)],
            "val_to_add": 1,
            "val_to_add_2": 2,
            "label": [i % 2 for i in range(40)],
        }
    )
    models.train(repo, service="driver_activity_v1", entities=labels, label="label",
                 out=root / "model", num_boost_round=2, progress=False, threads=1)  # fmt: skip
    store.close()
    with ServiceProcess(repo, root / "model") as server:
        yield server


def test_our_server_orders_the_features_as_feasts_does(
    feast_run: dict[str, Any], our_server: ServiceProcess
) -> None:
    """``/get-online-features`` answers the feature names of interleaved views and on-demand
    outputs in the order Feast's answered them (``workflow.ORDERED``; where Feast's order
    within a view varies by process, ``GROUPED``: the same grouping by view)."""
    entities = {key: [row[key] for row in ONLINE_ROWS] for key in ONLINE_ROWS[0]}
    feast = feast_run["online"]["orders"]

    def names(features: list[str]) -> list[str]:
        body = {"features": features, "entities": entities, "full_feature_names": True}
        answer = our_server.post("/get-online-features", body)
        assert answer.status_code == 200, answer.text
        return list(answer.json()["metadata"]["feature_names"])

    for name, features in ORDERED.items():
        assert names(features) == feast[name], name
    grouped = names(GROUPED)
    assert sorted(grouped) == sorted(feast["grouped"])
    views = [n.split("__")[0] for n in grouped]
    assert views == [n.split("__")[0] for n in feast["grouped"]]


def test_feasts_remote_client_reads_from_our_server_what_feast_reads_itself(
    feast_run: dict[str, Any], our_server: ServiceProcess, tmp_path: Path
) -> None:
    """Feast's own HTTP client (its ``remote`` online store, in a copy of Feast's quickstart
    repo) reads the quickstart's feature list (an on-demand view with request fields) and a
    service with a projection from our server: what Feast's SDK read from its own store.
    Float32 features come back as our shortest decimals, which Feast's client reads as
    doubles: equal once narrowed to float32."""
    feast_repo = tmp_path / "feast_repo"
    shutil.copytree(Path(feast_run["workdir"]) / "qs" / "feature_repo", feast_repo)
    (tmp_path / "job.json").write_text(json.dumps({"repo": str(feast_repo), "url": our_server.url}))
    done = subprocess.run(
        [str(feast_python()), str(HERE / "feast_remote.py"), str(tmp_path / "job.json")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    remote = json.loads(done.stdout.strip().splitlines()[-1])

    def narrowed(answer: dict[str, list[Any]]) -> dict[str, list[Any]]:
        float32 = {"conv_rate", "acc_rate"}
        return {
            k: [None if v is None else struct.pack("<f", v) for v in vs] if k in float32 else vs
            for k, vs in answer.items()
        }

    for name in ("features", "v1"):
        assert narrowed(remote[name]) == narrowed(feast_run["online"][name]), name
