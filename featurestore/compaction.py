"""Compaction of pushed files: a push source's many small Parquet files merged into few,
every answer unchanged.

Each offline push writes one file (featurestore/push.py), so a stream of pushes leaves
thousands of tiny files that every training set and materialization must open.
``compact_pushes`` merges runs of consecutive pushed files (push order) into files of about
``target_bytes``: the rows concatenated in the same order, in a file named
``push-<last>-merged-<first>.parquet`` after the push sequence numbers it holds. That name
sorts right after the last push it holds and before any later push (the next push takes the
next sequence number), so the file order, and with it every tie-break, is unchanged.

Safe while others work:

* **Pushers** wait: each run is merged under the push folder's lock (``.push.lock``),
  released between runs, so a push waits for one run's merge at most.
* **Readers** listing the files at any moment read every row once, in the same order: the
  merged file is renamed in (written under a "." name first), then the files it holds are
  deleted, and meanwhile ``sources.pushed_files`` reads the merged file in their place. A read
  that listed the files before a merge and opens one after its deletion fails naming the
  missing file: run it again (or compact while no training set or materialization reads the
  source).
* A failure leaves the pushed files, with or without the merged file (whose rows are then
  read once); the next run finishes the job. A leftover "." temporary file is never read.

Only files of the same schema are merged together (pushes after the source's first file
changed its schema are left as they are).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from featurestore.definitions import FileSource
from featurestore.errors import PushError
from featurestore.push import PushLock, push_views, write_pushed_file
from featurestore.sources import push_folder, push_span, pushed_files

if TYPE_CHECKING:
    from featurestore.registry_state import RegistryState

TARGET_BYTES = 128 * 2**20
log = logging.getLogger("featurestore.compaction")


@dataclass(frozen=True)
class Compaction:
    """What ``compact_pushes`` did to one push folder."""

    folder: Path
    files_before: int
    files_after: int
    rows: int  # rows in the files merged


def compact_pushes(
    state: RegistryState,
    repo_path: Path,
    sources: Sequence[str] | None = None,
    target_bytes: int = TARGET_BYTES,
) -> list[Compaction]:
    """Merge the pushed files of the push sources ``sources`` (default: every applied push
    source with a file batch source) into files of about ``target_bytes`` (module
    docstring). One report per push folder, in name order."""
    names = sorted(
        {r.view.push_source.name for r in state.views.values() if r.view.push_source}
        if sources is None
        else set(sources)
    )
    folders: dict[Path, str] = {}
    for name in names:
        source = push_views(state, name)[0].batch_source  # UnknownPushSourceError if unknown
        if isinstance(source, FileSource):
            folders.setdefault(push_folder(source, repo_path), name)
    return [_compact_folder(folder, name, target_bytes) for folder, name in sorted(folders.items())]


def _compact_folder(folder: Path, name: str, target_bytes: int) -> Compaction:
    what = f"compact pushes of {name!r}"
    if not folder.is_dir():  # nothing pushed offline yet
        return Compaction(folder, 0, 0, 0)
    with PushLock(folder, what):
        _remove_leftovers(folder)
    before = len(pushed_files(folder))
    rows = 0
    for run in _runs(pushed_files(folder), target_bytes):
        with PushLock(folder, what):
            if not _still_listed(folder, run):
                continue  # another compaction merged some of them meanwhile
            merged, count = write_merged(run, what)
            delete_merged(run)
        rows += count
        log.info("%s: %d files (%d rows) -> %s", what, len(run), count, merged.name)
    return Compaction(folder, before, len(pushed_files(folder)), rows)


def _remove_leftovers(folder: Path) -> None:
    """Under the lock: files an interrupted run left, i.e. pushed files a merged file holds
    (never read) and "." temporary files (no push or merge is writing one)."""
    if not folder.is_dir():
        return
    read = set(pushed_files(folder))
    for path in folder.glob("[!.]*.parquet"):
        if path not in read:
            path.unlink(missing_ok=True)
    for path in folder.glob(".*.tmp"):
        path.unlink(missing_ok=True)


def _still_listed(folder: Path, run: list[Path]) -> bool:
    """Whether ``run`` is still a run of consecutive files of the folder."""
    files = pushed_files(folder)
    if run[0] not in files:
        return False
    start = files.index(run[0])
    return files[start : start + len(run)] == run


def _runs(files: list[Path], target_bytes: int) -> list[list[Path]]:
    """Runs of consecutive files of one schema, each of at least two files and about
    ``target_bytes`` (a file already that large stays alone)."""
    import pyarrow.parquet as pq

    runs: list[list[Path]] = []
    run: list[Path] = []
    size = 0
    schema = None
    for path in files:
        try:
            file_size, file_schema = path.stat().st_size, pq.read_schema(path)
        except FileNotFoundError:  # merged by another compaction meanwhile
            continue
        if run and (file_schema != schema or size + file_size > target_bytes):
            runs.append(run)
            run, size = [], 0
        run.append(path)
        size += file_size
        schema = file_schema
    runs.append(run)
    return [run for run in runs if len(run) > 1]


def write_merged(run: Sequence[Path], what: str) -> tuple[Path, int]:
    """Write the rows of ``run`` (consecutive pushed files, in order) as one merged file;
    the files themselves are left (``delete_merged``). Returns the file and its rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    spans = [push_span(path.name) for path in run]
    if any(span is None for span in spans):
        raise PushError(f"{what}: {[p.name for p in run]} are not all pushed files")
    first, last = spans[0][0], spans[-1][1]  # type: ignore[index]  # None refused above
    table = pa.concat_tables([pq.read_table(path) for path in run])
    merged = run[-1].with_name(f"push-{last:012d}-merged-{first:012d}.parquet")
    return write_pushed_file(merged, table, what), table.num_rows


def delete_merged(run: Sequence[Path]) -> None:
    """Delete the files a merged file holds."""
    for path in run:
        path.unlink(missing_ok=True)
