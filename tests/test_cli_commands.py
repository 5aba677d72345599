"""The ``featurestore`` command: init, apply, list, plan, describe, help and errors.

Commands run in-process (tests/cli.py); a few smoke tests run the installed console script as a
real process: the current folder as the default repo, an error's exit status and one line,
start-up time and the imports ``--help`` pays for.

(Not ``test_cli.py``: tests/models/test_cli.py has that basename, and pytest imports test
files by basename here.)
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest

from featurestore.cli import main
from tests.cli import ENV, Result, run_cli

FEATURESTORE = Path(sys.executable).parent / "featurestore"


def run(*args: str, ok: bool = True) -> Result:
    result = run_cli(*args)
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def run_real(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script in a process of its own."""
    env = {**os.environ, **ENV}
    return subprocess.run(
        [str(FEATURESTORE), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def test_init_apply_list_plan_describe(tmp_path: Path) -> None:
    repo = tmp_path / "my_repo"
    out = run("init", str(repo)).stdout
    assert "featurestore.yaml" in out and "definitions.py" in out
    assert "featurestore apply --repo" in out

    out = run("apply", "--repo", str(repo)).stdout
    assert "+ entity driver (added)" in out
    assert "+ feature view driver_hourly_stats (added)" in out
    assert "+ feature service driver_activity (added)" in out
    assert "Registered 1 entities, 1 feature views, 1 feature services" in out

    out = run("list", "--repo", str(repo)).stdout
    for text in ("driver", "driver_hourly_stats", "driver_activity", "ttl 1d", "3 features"):
        assert text in out, out
    view_fingerprint = _registry_fingerprint(repo, "driver_hourly_stats")
    assert view_fingerprint[:12] in out

    assert "No changes" in run("plan", "--repo", str(repo)).stdout

    definitions = repo / "definitions.py"
    definitions.write_text(
        definitions.read_text()
        .replace("timedelta(days=1)", "timedelta(hours=6)")
        .replace('description="Hourly driver statistics."', 'description="Per hour."')
    )
    out = run("plan", "--repo", str(repo)).stdout
    assert "~ feature view driver_hourly_stats (changed)" in out
    assert "ttl: 1d -> 6h" in out
    assert "description: 'Hourly driver statistics.' -> 'Per hour.'" in out
    assert "~ feature service driver_activity (changed)" in out
    assert "driver_hourly_stats will be dropped: materialize them again" in out
    assert _registry_fingerprint(repo, "driver_hourly_stats") == view_fingerprint  # plan only

    out = run("apply", "--repo", str(repo)).stdout
    assert "driver_hourly_stats were dropped" in out
    assert _registry_fingerprint(repo, "driver_hourly_stats") != view_fingerprint

    out = run("describe", "driver_hourly_stats", "--repo", str(repo)).stdout
    assert out.startswith("feature view driver_hourly_stats")
    for text in ('"ttl_microseconds": 21600000000', '"version": 2', '"conv_rate"', '"Float32"'):
        assert text in out, out
    assert "entity driver" in run("describe", "driver", "--repo", str(repo)).stdout
    out = run("describe", "driver_activity", "--repo", str(repo)).stdout
    assert out.startswith("feature service driver_activity")
    assert '"view": "driver_hourly_stats"' in out and '"version": 2' in out
    missing = run("describe", "driver_stat", "--repo", str(repo), ok=False)
    assert missing.returncode == 1  # one line, as every command's errors
    assert missing.stderr.startswith("error: nothing named 'driver_stat' was applied (did you")
    assert missing.stderr.count("\n") == 1


def _registry_fingerprint(repo: Path, view: str) -> str:
    import json

    data = json.loads((repo / "data" / "registry.json").read_text())
    return data["feature_views"][view]["fingerprint"]


def test_the_repo_defaults_to_the_current_folder(tmp_path: Path) -> None:
    """A real process: the installed entry point, run in the repo folder."""
    run("init", str(tmp_path / "here"))
    result = run_real("apply", cwd=tmp_path / "here")
    assert result.returncode == 0 and "(added)" in result.stdout, result.stderr
    assert run_cli("plan", cwd=tmp_path / "here").stdout.startswith("No changes")


def test_a_real_process_error_is_one_line_and_exit_1(tmp_path: Path) -> None:
    result = run_real("list", "--repo", str(tmp_path / "nowhere"))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "no featurestore.yaml" in result.stderr


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a fresh repo ``repo`` and an applied one ``applied``."""
    root = tmp_path_factory.mktemp("repos")
    run("init", str(root / "repo"))
    run("init", str(root / "applied"))
    run("apply", "--repo", str(root / "applied"))
    return root


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["apply", "--repo", "{tmp}/nowhere"], "no featurestore.yaml"),
        (["list", "--repo", "{tmp}/repo"], "run 'featurestore apply' first"),
        (["describe", "driver_hourly_stat", "--repo", "{tmp}/applied"], "did you mean"),
        (["init", "{tmp}/applied"], "refusing to overwrite"),
    ],
)
def test_errors_are_one_clear_line_and_exit_1(repos: Path, args: list[str], message: str) -> None:
    result = run(*[a.format(tmp=repos) for a in args], ok=False)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_init_never_overwrites_a_users_files(tmp_path: Path) -> None:
    """A folder without featurestore.yaml but with the user's definitions.py and data."""
    (tmp_path / "data").mkdir()
    mine = {
        tmp_path / "definitions.py": b"# my definitions\n",
        tmp_path / "data" / "driver_stats.parquet": b"my data",
    }
    for path, content in mine.items():
        path.write_bytes(content)
    result = run("init", str(tmp_path), ok=False)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "refusing to overwrite" in result.stderr
    for path, content in mine.items():
        assert str(path) in result.stderr
        assert path.read_bytes() == content
    assert not (tmp_path / "featurestore.yaml").exists()  # nothing created either

    (tmp_path / "definitions.py").unlink()
    result = run("init", str(tmp_path), ok=False)
    assert result.returncode == 1 and str(tmp_path / "definitions.py") not in result.stderr
    assert (tmp_path / "data" / "driver_stats.parquet").read_bytes() == b"my data"


def test_a_definition_error_names_file_and_definition(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    run("init", str(repo))
    definitions = repo / "definitions.py"
    definitions.write_text(definitions.read_text().replace("days=1", "days=-1"))
    result = run("apply", "--repo", str(repo), ok=False)
    assert result.returncode == 1
    assert "definitions.py" in result.stderr and "'driver_hourly_stats'" in result.stderr
    assert "negative" in result.stderr


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in sorted(group.commands.items()):
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
    return found


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = main
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


@pytest.mark.parametrize("path", [(), *_commands(main)], ids=lambda p: " ".join(p) or "main")
def test_help_reads_well(path: tuple[str, ...]) -> None:
    out = run(*path, "--help").stdout
    assert out.startswith(f"Usage: featurestore {' '.join(path)}".rstrip())
    summary = (_command(path).help or "").strip().splitlines()
    # Every command explains itself (click wraps lines, so compare words).
    assert summary and " ".join(summary[0].split()) in " ".join(out.split())
    takes_repo = {p.name for p in _command(path).params} & {"repo"}
    if path and path[0] != "init" and not isinstance(_command(path), click.Group):
        assert takes_repo and "--repo DIRECTORY" in out, f"{path} does not take --repo"


def _fastest(argv: list[str], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return min(times)


def test_import_and_help_are_fast() -> None:
    """The budget is 0.5 s; the machine is shared and noisy, so the bound here is looser."""
    import_s = _fastest([sys.executable, "-c", "import featurestore"])
    help_s = _fastest([str(FEATURESTORE), "--help"])
    print(f"import featurestore: {import_s:.3f} s, featurestore --help: {help_s:.3f} s")
    assert import_s < 1.5 and help_s < 1.5


def test_the_cli_module_does_not_load_heavy_libraries() -> None:
    code = (
        "import sys, featurestore.cli; "
        "heavy = [m for m in ('pandas', 'pyarrow', 'duckdb', 'lightgbm', 'redis', 'numpy', "
        "'rich', 'yaml', 'fastapi') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_in_process_logs_go_to_the_commands_stderr_and_logging_is_restored(
    tmp_path: Path,
) -> None:
    """tests/cli.py runs a command as a fresh process would log: ``-v`` lines in its stderr
    (not in pytest's capture), and the test process's root logger unchanged afterwards."""
    root = logging.getLogger()
    before = (root.handlers[:], root.level)
    run("init", str(tmp_path / "repo"))
    result = run("-v", "apply", "--repo", str(tmp_path / "repo"))
    assert "INFO featurestore: added feature view driver_hourly_stats" in result.stderr
    assert "INFO" not in result.stdout
    assert (root.handlers, root.level) == before
    assert "INFO" not in run("plan", "--repo", str(tmp_path / "repo")).stderr  # no -v: quiet


def test_feasts_command_line_habits(tmp_path: Path) -> None:
    """``feast -c DIR apply``, ``feast materialize-incremental -v VIEW $(date ...)`` and
    ``feast materialize -v VIEW START END`` work with the same words; Feast's commands that
    have no namesake here say what to run instead (they were "No such command")."""
    run("init", str(tmp_path / "repo"))
    applied = run_cli("-c", tmp_path / "repo", "apply", cwd=tmp_path)
    assert applied.returncode == 0 and "(added)" in applied.stdout, applied.stderr
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())  # $(date -u +%Y-%m-%dT%H:%M:%S)
    for args in (
        ["materialize-incremental", "-v", "driver_hourly_stats", now],
        ["materialize", "-v", "driver_hourly_stats", "2020-01-01T00:00:00", now],
    ):
        result = run_cli("--chdir", tmp_path / "repo", *args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "driver_hourly_stats" in result.stdout
    listed = run_cli("-c", tmp_path / "repo", "feature-views", "list", cwd=tmp_path)
    assert listed.returncode == 2
    assert "'feature-views' is a Feast command, not a featurestore one: 'featurestore list'" in (
        listed.stderr
    )
