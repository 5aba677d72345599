"""Where outputs go: one check that a file or a folder can be written at a path.

Made before the work that produces the output (a join, a training run), so an unwritable
``--out`` fails in one line before minutes of work, not after; the check creates nothing
(the nearest existing folder on the way must accept a new file). Training sets and batch
scores (files) and model artifacts (folders) all call it.
"""

from __future__ import annotations

import fnmatch
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from featurestore.errors import FeatureStoreError, OutputError


def check_writable(
    path: str | os.PathLike[str],
    what: str,
    *,
    folder: bool = False,
    error: type[FeatureStoreError] = OutputError,
) -> Path:
    """``path`` as a Path, or ``error`` naming ``what`` and the path when a file (``folder``:
    a folder) cannot be written there: it exists as the other kind, a parent on the way is a
    file, the nearest existing folder refuses a new file, or an existing file refuses writes."""
    target = Path(path)
    if target.exists() and target.is_dir() != folder:
        kind = "a folder" if target.is_dir() else "a file"
        raise error(f"cannot write the {what} to {target}: it is {kind}")
    existing = target if folder else target.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise error(f"cannot write the {what} to {target}: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
        if target.is_file():
            with target.open("ab"):
                pass
    except OSError as exc:
        where = target if target.is_file() else existing
        raise error(
            f"cannot write the {what} to {target}: {where} is not writable "
            f"({exc.strerror or exc}); choose another --out"
        ) from None
    return target


def check_not_read(
    path: Path,
    readers: Iterable[tuple[str, str]],
    what: str,
    error: type[FeatureStoreError] = OutputError,
) -> None:
    """``error`` when writing ``path`` would replace or add to data a run reads: ``readers``
    holds (a resolved path or glob pattern, who reads it); a path inside a read folder
    counts (a folder source reads every Parquet file in it)."""
    target = path.resolve()
    for read, reader in readers:
        if target.is_relative_to(read) or fnmatch.fnmatchcase(str(target), read):
            raise error(
                f"cannot write the {what} to {path}: it is read as {reader}; choose another --out"
            )
