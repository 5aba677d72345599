"""The registry file: the applied definitions, their fingerprints and each view's version
history (``registry_state.RegistryState``), loaded, and changed only by ``apply``
(``registry_plan.plan`` says what it changes).

One JSON file, written atomically (temp file + rename) under a file lock, so concurrent
``apply`` runs never leave it torn. Watermarks are not here: they live in the online store
beside the data they describe.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from featurestore.errors import (
    RegistryError,
)
from featurestore.registry_plan import Plan, plan
from featurestore.registry_state import RegistryState
from featurestore.repo import RepoContents

if TYPE_CHECKING:
    from filelock import BaseFileLock

    from featurestore.offline.bigquery.schema import SchemaReader

log = logging.getLogger("featurestore.registry")


class Registry:
    """The registry file: load it, and apply a repo's definitions to it atomically."""

    def __init__(
        self, path: Path, project: str, bigquery_schema: SchemaReader | None = None
    ) -> None:
        self.path = Path(path)
        self.project = project
        self.bigquery_schema = bigquery_schema  # reads BigQuery sources' schemas at apply
        # settled()'s last state, by the file's (inode, mtime, size): an apply replaces the file
        self._settled: tuple[tuple[int, int, int], RegistryState] | None = None

    def _lock(self) -> BaseFileLock:
        from filelock import FileLock

        self.path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.path) + ".lock", timeout=60)

    def load(self) -> RegistryState | None:
        """The applied state, or None when nothing was ever applied.

        RegistryError when the file cannot be read or is malformed (see registry_format.py);
        ``apply`` replaces a malformed file.
        """
        data = self._read()
        if data is None:
            return None
        try:
            return self._parse(data)
        except RegistryError as exc:
            raise RegistryError(
                f"{exc}; 'featurestore apply' replaces it with the repo's definitions "
                "(and drops the online data of every view it applies)"
            ) from None

    def require(self) -> RegistryState:
        """The applied state; RegistryError when nothing was applied yet."""
        state = self.load()
        if state is None:
            raise RegistryError(
                f"nothing has been applied yet (no registry at {self.path}); "
                "run 'featurestore apply' first"
            )
        return state

    def plan(self, contents: RepoContents, repo_path: Path) -> Plan:
        return plan(self.load(), contents, self.project, repo_path, self.bigquery_schema)

    def apply(
        self,
        contents: RepoContents,
        repo_path: Path,
        before_write: Callable[[Plan], None] | None = None,
    ) -> Plan:
        """Compute the plan and write the new state, under the lock, atomically.

        The new state is serialized and staged (written to a temporary file beside the
        registry) first; then ``before_write(plan)`` runs (apply uses it to drop the online
        data of changed views); then the staged file replaces the registry. So nothing is
        dropped unless the registry write is ready, and if ``before_write`` raises nothing is
        written. A malformed registry is replaced (``Plan.replaces_unreadable`` says why, and
        every applied view is reset). A plan with no change writes nothing; in a folder where
        the lock cannot be created (read-only) it still succeeds.
        """
        from filelock import Timeout

        try:
            lock = self._lock()
            lock.acquire()
        except Timeout:
            raise self._busy() from None
        except OSError as exc:
            return self._apply_without_lock(contents, repo_path, exc)
        try:
            result = self._plan_replacing_unreadable(contents, repo_path)
            if result.is_empty and self.path.exists():
                if before_write is not None:
                    before_write(result)
                return result
            staged = self._stage(result.new_state)
            try:
                if before_write is not None:
                    before_write(result)
                os.replace(staged, self.path)
            except BaseException:
                staged.unlink(missing_ok=True)
                raise
            return result
        finally:
            lock.release()

    @contextmanager
    def settled(self) -> Iterator[RegistryState | None]:
        """The applied state (None when nothing was applied), held still until the block
        ends: no ``apply`` runs meanwhile (the registry's lock).

        A materialization run or a push claims its views in the online store inside it
        (``online.base.claim_applied``), so it never claims a definition that an ``apply``
        has replaced since the run read the registry. Where the lock cannot be created (a
        read-only folder) no apply can change the registry either: the state is read
        without it.
        """
        from filelock import Timeout

        try:
            lock = self._lock()
            lock.acquire()
        except Timeout:
            raise self._busy() from None
        except OSError:
            yield self._load_unless_unchanged()
            return
        try:
            yield self._load_unless_unchanged()
        finally:
            lock.release()

    def _load_unless_unchanged(self) -> RegistryState | None:
        """``load()``, or the state it gave last time when the file is the same one (a push
        claims under ``settled()`` each time: a stat, not a parse)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._settled is None or self._settled[0] != stamp:
            state = self.load()
            if state is None:
                return None
            self._settled = (stamp, state)
        return self._settled[1]

    def _busy(self) -> RegistryError:
        return RegistryError(
            f"another 'featurestore apply' has held the lock {self.path}.lock for 60 s; "
            "wait for it to finish, or remove the lock file if no apply is running"
        )

    def _apply_without_lock(self, contents: RepoContents, repo_path: Path, why: OSError) -> Plan:
        """A no-change apply where the lock cannot be created (a read-only folder)."""
        result = plan(self.load(), contents, self.project, repo_path, self.bigquery_schema)
        if result.is_empty and self.path.exists():
            log.info("no change to apply; the registry folder is not writable (%s)", why)
            return result
        raise RegistryError(
            f"cannot write the registry {self.path}: {why.strerror or why} "
            f"({len(result.changes)} change(s) to apply); make {self.path.parent} writable"
        )

    def _plan_replacing_unreadable(self, contents: RepoContents, repo_path: Path) -> Plan:
        data = self._read()
        try:
            current = None if data is None else self._parse(data)
        except RegistryError as exc:
            log.info("replacing the unreadable registry: %s", exc)
            result = plan(None, contents, self.project, repo_path, self.bigquery_schema)
            result.replaces_unreadable = str(exc)
            return result
        return plan(current, contents, self.project, repo_path, self.bigquery_schema)

    def _read(self) -> bytes | None:
        """The registry file's bytes, or None when there is none; RegistryError if unreadable."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RegistryError(f"registry {self.path} cannot be read: {exc}") from None

    def _parse(self, data: bytes) -> RegistryState:
        """The state in the file's bytes; RegistryError (which apply repairs) if malformed."""
        try:
            parsed = json.loads(data.decode())
        except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, absurd numbers
            raise RegistryError(f"registry {self.path} is not valid JSON: {exc}") from None
        try:
            return RegistryState.from_json(parsed)
        except RegistryError as exc:
            raise RegistryError(f"registry {self.path} is malformed: {exc}") from None

    def _stage(self, state: RegistryState) -> Path:
        """Write ``state`` to a synced temporary file beside the registry; return its path."""
        text = json.dumps(state.to_json(), indent=2, sort_keys=True)
        try:
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        except OSError as exc:
            raise RegistryError(f"cannot write the registry {self.path}: {exc}") from None
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise RegistryError(f"cannot write the registry {self.path}: {exc}") from None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Path(tmp)
