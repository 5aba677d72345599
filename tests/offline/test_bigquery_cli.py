"""`featurestore apply` and `training-set --dry-run` on BigQuery, in-process (tests/cli.py).

The real ``google.cloud.bigquery.Client`` talks HTTP to a tiny BigQuery REST endpoint on
127.0.0.1 (tests/offline/bigquery_local.py: ``tables.get`` and dry-run ``jobs.insert``), set
with ``api_endpoint`` in featurestore.yaml, so these tests cover what the client sends over
the wire. Nothing reaches Google: what a real project answers is not tested here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import sqlglot

from tests.cli import Result, run_cli
from tests.offline.bigquery_local import BigQueryHTTP
from tests.strategies import minute

DEFINITIONS = """
from datetime import timedelta

from featurestore import BigQuerySource, Entity, FeatureView, Field, Float32, Int32

user = Entity(name="user", join_keys=["user_id"])
user_stats = FeatureView(
    name="user_stats",
    entities=[user],
    schema=[Field(name="rate", dtype=Float32), Field(name="clicks", dtype={clicks})],
    source=BigQuerySource(
        table="test-project.ds.user_stats", timestamp_field="ts", created_timestamp_column="created"
    ),
    ttl=timedelta(hours=1),
)
"""
TABLE = [("user_id", "INTEGER"), ("ts", "TIMESTAMP"), ("created", "TIMESTAMP"),
         ("rate", "FLOAT"), ("clicks", "INTEGER")]  # fmt: skip


def _repo(path: Path, offline: str, clicks: str = "Int32") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "featurestore.yaml").write_text(
        f"project: shop\nregistry: data/registry.json\noffline_store: {offline}\n"
    )
    (path / "features.py").write_text(DEFINITIONS.replace("{clicks}", clicks))
    return path


def _run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return run_cli(*args, env=env)


def _offline(endpoint: str) -> str:
    return (
        "{type: bigquery, project: test-project, dataset: ds, maximum_bytes_billed: 1000000, "
        f"labels: {{team: risk}}, api_endpoint: '{endpoint}'}}"
    )


def test_apply_reads_the_table_schema_and_infers_the_key_dtype(tmp_path: Path) -> None:
    with BigQueryHTTP({"test-project.ds.user_stats": TABLE}, 0) as server:
        repo = _repo(tmp_path / "repo", _offline(server.endpoint))
        done = _run("apply", "--repo", str(repo))
        assert done.returncode == 0, done.stderr
        assert (
            "GET",
            "/bigquery/v2/projects/test-project/datasets/ds/tables/user_stats",
            None,
        ) in (server.requests)
    registry = json.loads((repo / "data" / "registry.json").read_text())
    assert registry["feature_views"]["user_stats"]["key_dtypes"] == {"user_id": "Int64"}
    assert "not reachable" not in done.stderr


def test_apply_rejects_a_declared_type_the_table_does_not_hold(tmp_path: Path) -> None:
    table = [(n, "STRING" if n == "clicks" else t) for n, t in TABLE]
    with BigQueryHTTP({"test-project.ds.user_stats": table}, 0) as server:
        repo = _repo(tmp_path / "repo", _offline(server.endpoint))
        done = _run("apply", "--repo", str(repo))
    assert done.returncode == 1
    assert "column 'clicks' is declared Int32 but the source holds STRING" in done.stderr


def test_apply_rejects_a_missing_table(tmp_path: Path) -> None:
    with BigQueryHTTP({}, 0) as server:
        repo = _repo(tmp_path / "repo", _offline(server.endpoint))
        done = _run("apply", "--repo", str(repo))
    assert done.returncode == 1
    assert "BigQuery source 'test-project.ds.user_stats' does not exist" in done.stderr


def _no_credentials(tmp_path: Path) -> dict[str, str | None]:
    """Environment changes: no Google credentials (and no metadata-server probe)."""
    env: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("GOOGLE_", "CLOUDSDK_"))
    }
    env.update(NO_GCE_CHECK="true", CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), HOME=str(tmp_path))
    return env


def test_apply_without_credentials_says_so_and_uses_the_declared_dtypes(tmp_path: Path) -> None:
    """No credentials: the check is skipped, loudly."""
    env = _no_credentials(tmp_path)
    offline = "{type: bigquery, project: test-project, dataset: ds}"
    repo = _repo(tmp_path / "repo", offline)
    done = _run("apply", "--repo", str(repo), env=env)
    # The key has no declared dtype and the table cannot be read: an error naming it.
    assert done.returncode == 1
    assert (
        "BigQuery is not reachable (BigQuery credentials were not found "
        "(DefaultCredentialsError): run `gcloud auth application-default login`"
    ) in done.stderr
    assert "declare the dtype of join key(s) ['user_id']" in done.stderr

    definitions = (repo / "features.py").read_text()
    (repo / "features.py").write_text(
        definitions.replace("schema=[", 'schema=[Field(name="user_id", dtype=Int32), ')
    )
    done = _run("apply", "--repo", str(repo), env=env)
    assert done.returncode == 0, done.stderr
    assert "was NOT checked against BigQuery; using the declared dtypes" in done.stderr
    registry = json.loads((repo / "data" / "registry.json").read_text())
    assert registry["feature_views"]["user_stats"]["key_dtypes"] == {"user_id": "Int32"}


def test_training_set_dry_run_prints_the_sql_and_the_bytes(tmp_path: Path) -> None:
    entities = pa.table(
        {
            "user_id": pa.array([1, 2, 1], pa.int64()),
            "event_timestamp": pa.array(
                [minute(30), minute(90), minute(200)], pa.timestamp("us", tz="UTC")
            ),
        }
    )
    pq.write_table(entities, tmp_path / "entities.parquet")
    with BigQueryHTTP({"test-project.ds.user_stats": TABLE}, 123_456_789) as server:
        repo = _repo(tmp_path / "repo", _offline(server.endpoint))
        assert _run("apply", "--repo", str(repo)).returncode == 0
        done = _run(
            "training-set", "--repo", str(repo), "--features", "user_stats:rate",
            "--entities", str(tmp_path / "entities.parquet"), "--dry-run", "--as-of", "created",
        )  # fmt: skip
        posts = [body for method, _, body in server.requests if method == "POST"]
    assert done.returncode == 0, done.stderr
    assert "-- BigQuery dry run: 123,456,789 bytes (0.115 GiB) would be scanned" in done.stdout
    assert "3 entity rows" in done.stdout
    assert "table test-project.ds.user_stats is not time-partitioned" in done.stdout
    printed = done.stdout.split("\n-- BigQuery dry run")[0]
    sqlglot.parse_one(printed, read="bigquery")  # what is printed is BigQuery SQL
    # Pruned to [min(t) - ttl, max(t)] = [minute(30) - 1 h, minute(200)], as literals.
    assert "`ts` >= TIMESTAMP '2023-12-31 23:30:00.000000+00:00'" in printed
    assert "`ts` <= TIMESTAMP '2024-01-01 03:20:00.000000+00:00'" in printed
    # Exactly one job went over the wire: the dry run of the printed SQL, as configured.
    assert len(posts) == 1
    config = posts[0]["configuration"]
    assert config["dryRun"] is True
    assert config["query"]["query"] == printed
    assert config["query"]["useQueryCache"] is False
    assert config["query"]["useLegacySql"] is False
    assert config["query"]["maximumBytesBilled"] == "1000000"
    assert "destinationTable" not in config["query"]
    assert config["labels"] == {
        "featurestore": "dry_run",
        "featurestore_project": "shop",
        "team": "risk",
    }


def test_training_set_dry_run_without_credentials_prints_the_sql_and_says_how(
    tmp_path: Path,
) -> None:
    """Defect 8: no credentials ended in a DefaultCredentialsError traceback. Now the SQL
    is printed, then one line says the byte estimate needs credentials and how (exit 1)."""
    env = _no_credentials(tmp_path)
    repo = _repo(tmp_path / "repo", "{type: bigquery, project: test-project, dataset: ds}")
    definitions = (repo / "features.py").read_text()
    (repo / "features.py").write_text(
        definitions.replace("schema=[", 'schema=[Field(name="user_id", dtype=Int32), ')
    )
    assert _run("apply", "--repo", str(repo), env=env).returncode == 0
    entities = pa.table(
        {
            "user_id": pa.array([1, 2], pa.int64()),
            "event_timestamp": pa.array([minute(30), minute(90)], pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(entities, tmp_path / "entities.parquet")
    done = _run(
        "training-set", "--repo", str(repo), "--features", "user_stats:rate",
        "--entities", str(tmp_path / "entities.parquet"), "--dry-run", env=env,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    printed = done.stdout.split("\n-- the 2 entity rows")[0]
    sqlglot.parse_one(printed, read="bigquery")  # the SQL it would run, in full
    assert "`test-project`.`ds`.`user_stats`" in printed
    assert "2 entity rows" in done.stdout and "bytes) would be scanned" not in done.stdout
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("error: the byte estimate needs BigQuery, which cannot be reached")
    assert "credentials were not found" in error
    assert "gcloud auth application-default login" in error
    assert "GOOGLE_APPLICATION_CREDENTIALS" in error
