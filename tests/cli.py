"""Run the ``featurestore`` command in-process, through click's ``CliRunner``.

A subprocess pays interpreter start-up and every import again (about a second here); in-process
a command costs only its own work. The result has the fields of ``subprocess.CompletedProcess``
that tests read (``returncode``, ``stdout``, ``stderr``), so a test reads the same either way.

Kept as in a fresh process: the root logger has no handlers while the command runs (pytest's
are set aside), so ``main``'s ``logging.basicConfig`` puts one on the command's stderr, as for a
user: warnings and ``-v`` logs land in ``stderr``. The working folder and the environment are
restored afterwards. Different: an exception the CLI does not turn into a clean exit propagates
into the test (a real process would print a traceback and exit 1), and the output is never a
terminal. What only a real process shows (the installed entry point, signals, start-up time,
imports, concurrent processes) is tested with real processes, in the tests that need them.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
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
) -> Result:
    """Run ``featurestore ARGS`` in this process (``env`` entries set or, if None, unset)."""
    runner = CliRunner(env={**ENV, **(env or {})})
    folder = contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext()
    with folder, _fresh_root_logger():
        result = runner.invoke(
            main,
            [os.fspath(a) for a in args],
            catch_exceptions=False,
            prog_name="featurestore",
        )
    return Result(result.exit_code, result.stdout, result.stderr)


@contextlib.contextmanager
def _fresh_root_logger() -> Iterator[None]:
    """The root logger without handlers, as at a process's start; restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers.clear()
    try:
        yield
    finally:
        for handler in root.handlers:  # basicConfig's, on the runner's stderr
            handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
