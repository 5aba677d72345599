"""Historical retrieval (training sets): ours vs Feast 0.67, measured in the same run.

Generates one data set per size in Feast's quickstart shape and runs, each in its own
subprocess so that a process's peak memory (``ru_maxrss``, which includes importing the
library) is that system's alone:

* ours: ``FeatureStore.get_historical_features(...).to_df()`` (DuckDB, this venv);
* Feast's DuckDB offline store and Feast's default ``file`` (dask) offline store:
  ``store.get_historical_features(...).to_df()`` through tests/feast_worker.py under
  ``.venv-feast`` (Feast pins pandas < 3, numpy < 3, redis-py < 8).

Only the retrieval call is timed (definitions are applied and the entity DataFrame is read
before the clock starts). Each process makes ``--calls`` (default 2) retrievals: the first
("first call": what a one-off script pays, lazy imports included) and the rest ("warm");
each call's CPU time (all threads) is reported too, as it suffers less from other load on a
shared machine. Systems run interleaved (ours, Feast, Feast file, ours, ...) so that load
changes hit all of them. The data, per size "N x M":

* ``driver_hourly_stats``: N rows, hourly event times over 30 days (so equal event times
  for a driver happen and the created timestamp breaks them), ttl 1 day; features
  ``conv_rate`` (Float32), ``acc_rate`` (Float32), ``avg_daily_trips`` (Int64), ``city``
  (String);
* ``driver_daily_stats``: N / 10 rows, daily, ttl 7 days; ``lifetime_trips`` (Int64),
  ``rating`` (Float64);
* the entity DataFrame: M rows of ``driver_id`` (one driver in six has no data) and
  ``event_timestamp`` (about one row in ten before any data), plus a ``row_id``.

Feast's file store takes ~193 s and 13 GB at 10M x 1M, so by default it runs only at the
smaller sizes (``--file-store-everywhere`` runs it at every size, ``--skip-file-store``
nowhere). Up to 1M entity rows (unless ``--no-check``) our values are compared with Feast's
DuckDB store's, row by row. ``--startup-repeat`` times ``import featurestore``,
``featurestore --help``, ``import feast`` and ``feast --help``.

    .venv/bin/python benchmarks/bench_historical.py                 # 100k x 10k, 1M x 100k, 10M x 1M
    .venv/bin/python benchmarks/bench_historical.py --sizes 100k:10k --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FEAST_WORKER = ROOT / "tests" / "feast_worker.py"
HOURLY = [
    ("conv_rate", "Float32"),
    ("acc_rate", "Float32"),
    ("avg_daily_trips", "Int64"),
    ("city", "String"),
]
DAILY = [("lifetime_trips", "Int64"), ("rating", "Float64")]
FEATURES = [f"driver_hourly_stats:{f}" for f, _ in HOURLY] + [
    f"driver_daily_stats:{f}" for f, _ in DAILY
]
DAY_S = 86_400
SPAN_DAYS = 30
CITIES = ["Lisbon", "Porto", "Braga", "Faro", "Coimbra", "Évora", ""]

REPO_DEFINITIONS = '''"""Benchmark repo: Feast's quickstart shape."""
from datetime import timedelta

from featurestore import Entity, FeatureView, Field, FileSource
from featurestore.types import Float32, Float64, Int64, String

driver = Entity(name="driver", join_keys=["driver_id"])

driver_hourly_stats = FeatureView(
    name="driver_hourly_stats",
    entities=[driver],
    ttl=timedelta(days=1),
    schema=[Field(name="driver_id", dtype=Int64), Field(name="conv_rate", dtype=Float32),
            Field(name="acc_rate", dtype=Float32), Field(name="avg_daily_trips", dtype=Int64),
            Field(name="city", dtype=String)],
    source=FileSource(path="{hourly}", timestamp_field="event_timestamp",
                      created_timestamp_column="created"),
)

driver_daily_stats = FeatureView(
    name="driver_daily_stats",
    entities=[driver],
    ttl=timedelta(days=7),
    schema=[Field(name="driver_id", dtype=Int64), Field(name="lifetime_trips", dtype=Int64),
            Field(name="rating", dtype=Float64)],
    source=FileSource(path="{daily}", timestamp_field="event_timestamp",
                      created_timestamp_column="created"),
)
'''


def parse_count(text: str) -> int:
    """``"100k"`` -> 100_000, ``"10M"`` -> 10_000_000."""
    scale = {"k": 1_000, "K": 1_000, "m": 1_000_000, "M": 1_000_000}
    return int(float(text[:-1]) * scale[text[-1]]) if text[-1] in scale else int(text)


def human(n: int) -> str:
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


# --- data -----------------------------------------------------------------------------------


def generate(folder: Path, feature_rows: int, entity_rows: int, seed: int = 7) -> None:
    """Write hourly.parquet, daily.parquet and entities.parquet (skipped if already there)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    done = folder / ".complete"
    if done.exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    drivers = max(10, feature_rows // 100)
    start = 1_735_689_600  # 2025-01-01T00:00:00Z
    us = pa.timestamp("us", tz="UTC")

    def source(rows: int, step_s: int) -> dict[str, Any]:
        ids = rng.integers(1_000, 1_000 + drivers, rows)
        slots = rng.integers(0, SPAN_DAYS * DAY_S // step_s, rows)
        event_s = start + slots * step_s
        created_us = event_s * 1_000_000 + rng.integers(0, 3_600_000_000, rows)
        return {
            "driver_id": pa.array(ids, pa.int64()),
            "event_timestamp": pa.array(event_s * 1_000_000, pa.int64()).cast(us),
            "created": pa.array(created_us, pa.int64()).cast(us),
        }

    hourly = source(feature_rows, 3_600)
    hourly["conv_rate"] = pa.array(rng.random(feature_rows, dtype=np.float32))
    hourly["acc_rate"] = pa.array(rng.random(feature_rows, dtype=np.float32))
    hourly["avg_daily_trips"] = pa.array(rng.integers(0, 1_000, feature_rows), pa.int64())
    hourly["city"] = pa.DictionaryArray.from_arrays(
        rng.integers(0, len(CITIES), feature_rows).astype(np.int32), CITIES
    ).dictionary_decode()
    pq.write_table(pa.table(hourly), folder / "hourly.parquet")

    daily_rows = max(1, feature_rows // 10)
    daily = source(daily_rows, DAY_S)
    daily["lifetime_trips"] = pa.array(rng.integers(0, 100_000, daily_rows), pa.int64())
    daily["rating"] = pa.array(rng.uniform(1, 5, daily_rows))
    pq.write_table(pa.table(daily), folder / "daily.parquet")

    # One driver id in six has no data; about one row in ten is before any data.
    ids = rng.integers(1_000, 1_000 + drivers * 6 // 5, entity_rows)
    times_s = rng.integers(start - 3 * DAY_S, start + SPAN_DAYS * DAY_S, entity_rows)
    entities = pa.table(
        {
            "driver_id": pa.array(ids, pa.int64()),
            "event_timestamp": pa.array(times_s * 1_000_000, pa.int64()).cast(us),
            "row_id": pa.array(np.arange(entity_rows), pa.int64()),
        }
    )
    pq.write_table(entities, folder / "entities.parquet")
    done.touch()


def prepare_ours(folder: Path) -> Path:
    """A featurestore repo over the size's Parquet files, applied."""
    from featurestore import FeatureStore

    repo = folder / "ours"
    repo.mkdir(exist_ok=True)
    (repo / "featurestore.yaml").write_text(
        "project: bench\nregistry: data/registry.json\noffline_store: {type: duckdb}\n"
    )
    (repo / "features.py").write_text(
        REPO_DEFINITIONS.format(hourly=folder / "hourly.parquet", daily=folder / "daily.parquet")
    )
    FeatureStore(repo).apply()
    return repo


def feast_job(folder: Path, store: str, out: Path | None) -> dict[str, Any]:
    def view(name: str, source: str, ttl_days: int, features: list[tuple[str, str]]) -> dict:
        return {
            "name": name,
            "source": str(folder / source),
            "timestamp_field": "event_timestamp",
            "created_timestamp_column": "created",
            "keys": [{"name": "driver_id", "dtype": "Int64"}],
            "features": [{"name": f, "dtype": d} for f, d in features],
            "ttl_seconds": ttl_days * DAY_S,
        }

    return {
        "id": store,
        "workdir": tempfile.mkdtemp(prefix=f"feast-{store}-", dir=folder),
        "offline_store": store,
        "entity_df": str(folder / "entities.parquet"),
        "views": [
            view("driver_hourly_stats", "hourly.parquet", 1, HOURLY),
            view("driver_daily_stats", "daily.parquet", 7, DAILY),
        ],
        "features": FEATURES,
        "output": "df",
        "out": str(out) if out else None,
    }


# --- measuring ------------------------------------------------------------------------------


@dataclass
class Run:
    """One process: its calls' times (the first pays for lazy imports), rows, peak RSS."""

    seconds: list[float]
    cpu_seconds: list[float]
    rows: int
    peak_bytes: int


@dataclass
class Result:
    size: str
    system: str
    runs: list[Run] = field(default_factory=list)
    error: str | None = None

    @property
    def first(self) -> float:
        """Median over processes of the first call: what a one-off script sees."""
        return statistics.median(r.seconds[0] for r in self.runs)

    @property
    def warm(self) -> float | None:
        """Median of the later calls in a process (None with --calls 1)."""
        later = [s for r in self.runs for s in r.seconds[1:]]
        return statistics.median(later) if later else None

    @property
    def warm_cpu(self) -> float | None:
        """Median CPU time (all threads) of the later calls: less sensitive to other load."""
        later = [s for r in self.runs for s in r.cpu_seconds[1:]]
        return statistics.median(later) if later else None

    @property
    def peak(self) -> int:
        return max(r.peak_bytes for r in self.runs)


def run_child(command: list[str]) -> tuple[dict[str, Any], int]:
    """Run a measuring subprocess; its JSON answer and its own peak RSS in bytes."""
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        lines = out.read().decode().strip().splitlines()
    if not lines:
        return {"ok": False, "error": f"{command[:3]} exited {process.returncode}"}, 0
    return json.loads(lines[-1]), usage.ru_maxrss * 1024  # Linux: kilobytes


def measure_ours(
    repo: Path, folder: Path, calls: int, out: Path | None
) -> tuple[dict[str, Any], int]:
    command = [
        sys.executable,
        __file__,
        "--child-ours",
        str(repo),
        str(folder / "entities.parquet"),
        str(calls),
    ]
    return run_child(command + ([str(out)] if out else []))


def child_ours(repo: str, entities: str, calls: int, out: str | None) -> None:
    """In a fresh process: time our retrieval to pandas ``calls`` times, print one JSON line."""
    import pandas as pd

    from featurestore import FeatureStore

    store = FeatureStore(repo)
    entity_df = pd.read_parquet(entities)
    timings, cpu, frame = [], [], None
    for _ in range(calls):
        frame = None  # free the previous result first, as a caller would
        started, cpu_started = time.perf_counter(), time.process_time()
        frame = store.get_historical_features(entity_df=entity_df, features=FEATURES).to_df()
        timings.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    assert frame is not None, "calls must be at least 1"
    if out:
        frame.to_parquet(out)
    answer = {"ok": True, "all_seconds": timings, "all_cpu_seconds": cpu, "rows": len(frame)}
    print(json.dumps(answer))


def measure_feast(folder: Path, store: str, python: Path, calls: int, out: Path | None):
    job_path = folder / f"job-{store}.json"
    job_path.write_text(json.dumps(feast_job(folder, store, out) | {"calls": calls}))
    return run_child([str(python), str(FEAST_WORKER), str(job_path)])


def check_values(ours_path: Path, feast_path: Path) -> str:
    """Compare our values with Feast's DuckDB store's, row by row (sorted by row_id)."""
    import numpy as np
    import pandas as pd

    a = pd.read_parquet(ours_path).sort_values("row_id", ignore_index=True)
    b = pd.read_parquet(feast_path).sort_values("row_id", ignore_index=True)
    if len(a) != len(b):
        return f"row counts differ: ours {len(a)}, Feast {len(b)}"
    bad = []
    for column in [f for f, _ in HOURLY + DAILY]:
        x, y = a[column], b[column]
        if column == "city":
            same = (x.astype(object).where(x.notna(), None) == y.where(y.notna(), None)) | (
                x.isna() & y.isna()
            )
        else:  # Feast's int64-with-nulls comes back as float64 NaN: compare as floats
            xf = x.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
            yf = y.astype(float).to_numpy()
            same = (xf == yf) | (np.isnan(xf) & np.isnan(yf))
        if not bool(np.all(same)):
            bad.append(f"{column}: {int((~np.asarray(same)).sum())} rows differ")
    return "same values" if not bad else "; ".join(bad)


# --- the run --------------------------------------------------------------------------------


def import_times(feast_python: Path, repeat: int) -> list[tuple[str, float]]:
    """Median wall time of short commands, interpreter start-up included."""

    def timed(command: list[str]) -> float:
        samples = []
        for _ in range(repeat):
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)

    ours_bin = Path(sys.executable).parent
    rows = [
        ("python -c pass (ours)", timed([sys.executable, "-c", "pass"])),
        ("import featurestore", timed([sys.executable, "-c", "import featurestore"])),
        ("featurestore --help", timed([str(ours_bin / "featurestore"), "--help"])),
    ]
    if feast_python.exists():
        rows += [
            ("import feast", timed([str(feast_python), "-c", "import feast"])),
            ("feast --help", timed([str(feast_python.parent / "feast"), "--help"])),
        ]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default="100k:10k,1M:100k,10M:1M",
        help="feature rows:entity rows, comma-separated (default: %(default)s)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs per system and size; the median is reported (default 3)",
    )
    parser.add_argument(
        "--repeat-largest",
        type=int,
        default=None,
        help="runs at sizes of 10M feature rows or more (default: --repeat)",
    )
    parser.add_argument(
        "--skip-file-store", action="store_true", help="never run Feast's file (dask) store"
    )
    parser.add_argument(
        "--file-store-everywhere",
        action="store_true",
        help="also run Feast's file store at 10M feature rows (~200 s, 13 GB)",
    )
    parser.add_argument(
        "--calls",
        type=int,
        default=2,
        help="retrievals per process: the first is reported as 'first call', the rest as "
        "'warm' (default 2)",
    )
    parser.add_argument("--no-check", action="store_true", help="skip the value comparison")
    parser.add_argument(
        "--startup-repeat",
        type=int,
        default=5,
        help="runs of each start-up command (import, --help); 0 skips them (default 5)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "fs-bench",
        help="where generated data is kept and reused (default: %(default)s)",
    )
    parser.add_argument(
        "--feast-python",
        type=Path,
        default=Path(os.environ.get("FEATURESTORE_FEAST_PYTHON", ROOT / ".venv-feast/bin/python")),
    )
    parser.add_argument("--child-ours", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child_ours:
        repo, entities, calls, *out = args.child_ours
        child_ours(repo, entities, int(calls), out[0] if out else None)
        return 0
    if not args.feast_python.exists():
        parser.error(f"no Feast environment at {args.feast_python}: run `make feast`")

    sizes = [tuple(parse_count(p) for p in s.split(":")) for s in args.sizes.split(",")]
    results: list[Result] = []
    checks: dict[str, str] = {}
    print(f"machine: {os.cpu_count()} CPUs, shared with other work (timings are noisy)")
    for feature_rows, entity_rows in sizes:
        size_results, verdict = bench_size(args, feature_rows, entity_rows)
        results += size_results
        if verdict:
            checks[size_results[0].size] = verdict
    print_table(results, checks)
    if args.startup_repeat:
        print(f"\nstart-up (median of {args.startup_repeat}, wall time incl. interpreter start):")
        for name, seconds in import_times(args.feast_python, args.startup_repeat):
            print(f"  {name:24s} {seconds:.3f} s")
    return 0


def bench_size(
    args: argparse.Namespace, feature_rows: int, entity_rows: int
) -> tuple[list[Result], str | None]:
    """Every system at one size, runs interleaved (ours, Feast, ...) so load noise hits all."""
    label = f"{human(feature_rows)} x {human(entity_rows)}"
    folder = args.data_dir / f"{human(feature_rows)}x{human(entity_rows)}"
    started = time.perf_counter()
    generate(folder, feature_rows, entity_rows)
    repo = prepare_ours(folder)
    print(f"[{label}] data ready in {time.perf_counter() - started:.1f} s: {folder}")
    large = feature_rows >= 10_000_000
    repeat = args.repeat_largest if (large and args.repeat_largest) else args.repeat
    check = not args.no_check and entity_rows <= 1_000_000
    systems = ["ours", "feast-duckdb"]
    if args.skip_file_store:
        print("  feast-file: skipped (--skip-file-store)")
    elif large and not args.file_store_everywhere:
        print("  feast-file: skipped at 10M+ feature rows (--file-store-everywhere runs it)")
    else:
        systems.append("feast-file")
    results = {system: Result(label, system) for system in systems}
    for i in range(repeat):
        for system, result in results.items():
            if result.error:
                continue
            out = folder / f"result-{system}.parquet" if check and i == 0 else None
            if system == "ours":
                answer, peak = measure_ours(repo, folder, args.calls, out)
            else:
                store = system.removeprefix("feast-")
                answer, peak = measure_feast(folder, store, args.feast_python, args.calls, out)
            if not answer.get("ok"):
                result.error = answer.get("error", "failed")[:300]
                print(f"  {system:13s} run {i + 1}: FAILED {result.error}")
                continue
            run = Run(answer["all_seconds"], answer["all_cpu_seconds"], answer["rows"], peak)
            result.runs.append(run)
            calls = ", ".join(f"{t:.2f}" for t in run.seconds)
            cpu = ", ".join(f"{t:.2f}" for t in run.cpu_seconds)
            print(
                f"  {system:13s} process {i + 1}: calls {calls} s (CPU {cpu} s), "
                f"peak {peak / 2**30:.2f} GB, {run.rows:,} rows"
            )
    verdict = None
    if check:
        verdict = check_values(
            folder / "result-ours.parquet", folder / "result-feast-duckdb.parquet"
        )
        print(f"  values, ours vs Feast DuckDB store: {verdict}")
    return list(results.values()), verdict


def print_table(results: list[Result], checks: dict[str, str]) -> None:
    """A Markdown table; ratios are ours / this system (below 1: ours is faster / smaller)."""
    print(
        "\n| feature x entity rows | system | first call | warm call | warm CPU | peak RSS "
        "| rows returned | ours/this: first | warm | CPU | memory |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    by_size: dict[str, dict[str, Result]] = {}
    for r in results:
        by_size.setdefault(r.size, {})[r.system] = r
    for size, systems in by_size.items():
        ours = systems.get("ours")
        for name, r in systems.items():
            if r.error or not r.runs:
                print(f"| {size} | {name} | failed: {r.error} |" + " |" * 8)
                continue
            ratios = ["", "", "", ""]
            if name != "ours" and ours and ours.runs:
                ratios = [
                    _ratio(ours.first, r.first),
                    _ratio(ours.warm, r.warm),
                    _ratio(ours.warm_cpu, r.warm_cpu),
                    _ratio(ours.peak, r.peak),
                ]
            rows = ", ".join(f"{n:,}" for n in sorted({run.rows for run in r.runs}))
            print(
                f"| {size} | {name} | {r.first:.2f} s | {_seconds(r.warm)} | "
                f"{_seconds(r.warm_cpu)} | {r.peak / 2**30:.2f} GB | {rows} | "
                f"{' | '.join(ratios)} |"
            )
    print(f"(medians over {len(results[0].runs) if results else 0} processes per system)")
    for size, verdict in checks.items():
        print(f"values at {size}, ours vs Feast's DuckDB store: {verdict}")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _ratio(ours: float | None, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}" if ours and theirs else ""


if __name__ == "__main__":
    sys.exit(main())
