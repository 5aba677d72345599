"""Run the ``featurestore`` command in-process, through click's ``CliRunner``.

A subprocess pays interpreter start-up and every import again (about a second here); in-process
a command costs only its own work. The result has the fields of ``subprocess.CompletedProcess``
that tests read (``returncode``, ``stdout``, ``stderr``), so a test reads the same either way.

In-process differences a test must not rely on: an exception the CLI does not turn into a clean
exit propagates into the test (a subprocess would print a traceback and exit 1); the output is
never a terminal; ``logging.basicConfig`` in ``main`` does nothing under pytest (pytest already
put handlers on the root logger), so ``-v`` logs are not captured. What only a real process shows
(the installed entry point, signals, start-up time, imports, concurrent processes) is tested
with real processes, in the tests that need them.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from featurestore.cli import main

# Wide enough that tables are not wrapped; no colour codes in what tests read.
ENV = {"COLUMNS": "160", "NO_COLOR": "1", "TERM": "dumb"}


@dataclass(frozen=True)
class Result:
    """A finished command: exit status and what it wrote to stdout and to stderr."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(
    *args: str | Path,
    cwd: str | Path | None = None,
    env: dict[str, str | None] | None = None,
    input: str | None = None,
) -> Result:
    """Run ``featurestore ARGS`` in this process (``env`` entries set or, if None, unset)."""
    runner = CliRunner(env={**ENV, **(env or {})})
    with contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext():
        result = runner.invoke(
            main,
            [os.fspath(a) for a in args],
            input=input,
            catch_exceptions=False,
            prog_name="featurestore",
        )
    return Result(result.exit_code, result.stdout, result.stderr)
