"""FeatureStore: a thin facade that wires config, registry and engines together.

It holds no logic of its own beyond choosing which module does the work.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from featurestore.config import RepoConfig, load_config
from featurestore.registry import Plan, Registry, RegistryState
from featurestore.repo import RepoContents, load_repo

log = logging.getLogger("featurestore")


class FeatureStore:
    """A feature repo: ``FeatureStore("feature_repo")``.

    Definitions come from the repo's Python files on ``plan``/``apply``; every read
    (training sets, materialization, online lookups) uses what was *applied*, from the
    registry, so serving never sees an unapplied edit.
    """

    def __init__(self, repo_path: str | os.PathLike[str] = ".", config: RepoConfig | None = None):
        self.config = config or load_config(repo_path)
        self.repo_path: Path = self.config.repo_path
        self.registry = Registry(self.config.registry_path, self.config.project)

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.repo_path)!r}, project={self.config.project!r})"

    def load_definitions(self) -> RepoContents:
        """Import the repo's Python files and return their (validated) definitions."""
        return load_repo(self.repo_path)

    def plan(self) -> Plan:
        """What ``apply`` would change, without writing anything."""
        return self.registry.plan(self.load_definitions(), self.repo_path)

    def apply(self) -> Plan:
        """Register the repo's definitions; returns what changed."""
        result = self.registry.apply(self.load_definitions(), self.repo_path)
        for change in result.changes:
            log.info("%s %s %s", change.action, change.kind, change.name)
        return result

    @property
    def state(self) -> RegistryState:
        """The applied definitions (RegistryError if nothing was applied)."""
        return self.registry.require()
