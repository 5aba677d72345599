"""Import a repo folder and collect its definitions.

Every ``*.py`` in the folder (not ``_*.py``, not sub-folders) is imported with the folder on
``sys.path``, so files may import each other and the repo's sub-folders (packages). Objects
found at module level are collected; the same object imported into several files counts once.

Every load imports the repo's code afresh: its modules are dropped from ``sys.modules`` before
and after (so an edit is seen in a long-lived process, and two repos with same-named files or
packages never mix), compiled from source, never from a cached ``.pyc`` (an edit that keeps a
file's size and modification second would otherwise be missed), no ``__pycache__`` is written
into the repo, and the source compiled is the one ``inspect.getsource`` (transformation
fingerprints) reads.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import linecache
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

from featurestore.definitions import Entity, FeatureService, FeatureView, suggest
from featurestore.errors import DefinitionError
from featurestore.on_demand import OnDemandFeatureView

_SKIP_FILES = {"setup.py", "conftest.py"}


@dataclass
class RepoContents:
    """The definitions a repo declares, by name, and the file each came from."""

    entities: dict[str, Entity] = field(default_factory=dict)
    views: dict[str, FeatureView] = field(default_factory=dict)
    services: dict[str, FeatureService] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    on_demand: dict[str, OnDemandFeatureView] = field(default_factory=dict)

    def validate(self) -> None:
        """Check that the definitions agree: entities exist, on-demand views read the repo's
        views, view names are unique across both kinds, services name real features."""
        for view in self.views.values():
            where = self.origin.get(f"view:{view.name}", "?")
            for entity in view.entities:
                known = self.entities.get(entity.name)
                if known is None:
                    raise DefinitionError(
                        f"feature view {view.name!r} ({where}) uses entity {entity.name!r}, "
                        "which is not defined at module level in the repo"
                        f"{suggest(entity.name, list(self.entities))}"
                    )
                if known != entity:
                    raise DefinitionError(
                        f"feature view {view.name!r} ({where}) uses a different definition of "
                        f"entity {entity.name!r} than the repo's"
                    )
        self._validate_on_demand()
        for service in self.services.values():
            where = self.origin.get(f"service:{service.name}", "?")
            for projection in service.projections:
                served = self.views.get(projection.view.name) or self.on_demand.get(
                    projection.view.name
                )
                if served is None:
                    raise DefinitionError(
                        f"feature service {service.name!r} ({where}) uses feature view "
                        f"{projection.view.name!r}, which is not defined in the repo"
                        f"{suggest(projection.view.name, [*self.views, *self.on_demand])}"
                    )
                for name in projection.features:
                    if name not in served.feature_names:
                        raise DefinitionError(
                            f"feature service {service.name!r} ({where}) names unknown feature "
                            f"'{served.name}:{name}'{suggest(name, served.feature_names)}"
                        )

    def _validate_on_demand(self) -> None:
        for view in self.on_demand.values():
            where = self.origin.get(f"on-demand view:{view.name}", "?")
            if view.name in self.views:
                raise DefinitionError(
                    f"on-demand feature view {view.name!r} ({where}) has the name of feature "
                    f"view {view.name!r} ({self.origin.get(f'view:{view.name}', '?')}); "
                    "feature references 'view:feature' need unique names: rename one"
                )
            for projection in view.source_projections:
                known = self.views.get(projection.view.name)
                if known is None:
                    raise DefinitionError(
                        f"on-demand feature view {view.name!r} ({where}) reads feature view "
                        f"{projection.view.name!r}, which is not defined at module level in "
                        f"the repo{suggest(projection.view.name, list(self.views))}"
                    )
                if known != projection.view:
                    raise DefinitionError(
                        f"on-demand feature view {view.name!r} ({where}) reads a different "
                        f"definition of feature view {projection.view.name!r} than the repo's"
                    )


def _add(
    contents: RepoContents,
    kind: str,
    table: dict[str, Any],
    obj: Entity | FeatureView | FeatureService | OnDemandFeatureView,
    where: str,
    defined: bool,
) -> None:
    existing = table.get(obj.name)
    if existing is obj or existing == obj:  # the same definition imported by another file
        if defined:  # the file that assigns it is its origin, not one that imports it
            contents.origin[f"{kind}:{obj.name}"] = where
        return
    if existing is not None:
        raise DefinitionError(
            f"{kind} {obj.name!r} is defined twice: in {contents.origin[f'{kind}:{obj.name}']} "
            f"and in {where}; rename one of them"
        )
    table[obj.name] = obj
    contents.origin[f"{kind}:{obj.name}"] = where


def load_repo(repo_path: str | Path) -> RepoContents:
    """Import every definition file of a repo and return its validated definitions."""
    repo = Path(repo_path).resolve()
    contents = RepoContents()
    files = sorted(
        p for p in repo.glob("*.py") if not p.name.startswith("_") and p.name not in _SKIP_FILES
    )
    with _imports_from(repo):
        for file in files:
            module = _import(file)
            assigned = _assigned_names(file)
            for var, value in vars(module).items():
                args = (value, file.name, var in assigned)
                if isinstance(value, Entity):
                    _add(contents, "entity", contents.entities, *args)
                elif isinstance(value, FeatureView):
                    _add(contents, "view", contents.views, *args)
                elif isinstance(value, FeatureService):
                    _add(contents, "service", contents.services, *args)
                elif isinstance(value, OnDemandFeatureView):
                    _add(contents, "on-demand view", contents.on_demand, *args)
    contents.validate()
    return contents


def _assigned_names(file: Path) -> set[str]:
    """Names a file assigns at top level (as opposed to names it imports)."""
    import ast

    tree = ast.parse(file.read_text(), str(file))  # it imported, so it parses
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):  # @on_demand_feature_view
            names.add(node.name)
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


@contextlib.contextmanager
def _imports_from(repo: Path) -> Iterator[None]:
    """Repo files import each other (and the repo's sub-folders) by plain name: the folder is
    on ``sys.path`` meanwhile, every module under it is compiled from source
    (``_SourceOnlyLoader``), and same-named modules loaded earlier in this process (another
    repo's, an older version of this one's, the program's own) are hidden while it loads: the
    repo's modules are forgotten afterwards and the program's put back."""
    local = _local_module_names(repo)
    local.discard("featurestore")  # the library's own modules are never the repo's

    def source_only(path: str) -> importlib.machinery.FileFinder:
        if not Path(path).is_relative_to(repo):
            raise ImportError(f"{path} is not in the repo")  # the next hook's
        return importlib.machinery.FileFinder(
            path,
            (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES),
            (_SourceOnlyLoader, importlib.machinery.SOURCE_SUFFIXES),
        )

    outside = _forget(repo, local)
    sys.path.insert(0, str(repo))
    sys.path_hooks.insert(0, source_only)
    try:
        yield
    finally:
        sys.path.remove(str(repo))
        sys.path_hooks.remove(source_only)
        _forget(repo, local)
        sys.modules.update(outside)


def _local_module_names(repo: Path) -> set[str]:
    """The top-level names the repo's code is imported by: its ``*.py`` files and its
    sub-folders holding Python files (packages)."""
    names = {p.stem for p in repo.glob("*.py")}
    names.update(
        p.name
        for p in repo.iterdir()
        if p.is_dir() and ((p / "__init__.py").exists() or any(p.glob("*.py")))
    )
    return names


def _forget(repo: Path, names: set[str]) -> dict[str, ModuleType]:
    """Drop these modules (and their submodules), and the import finders of repo folders;
    return what was dropped, for the caller to put back after the load: a same-named module
    of the user's own program (say its ``utils``) is hidden from the repo's code while it
    loads, never taken away from the program."""
    dropped = {m: sys.modules.pop(m) for m in list(sys.modules) if m.partition(".")[0] in names}
    for path in [p for p in sys.path_importer_cache if Path(p).is_relative_to(repo)]:
        del sys.path_importer_cache[path]
    return dropped


class _SourceOnlyLoader(importlib.machinery.SourceFileLoader):
    """Compiles a file from its source on every import: never reads or writes a ``.pyc``.

    The source compiled is also what ``inspect.getsource`` returns for its functions (the
    line cache would otherwise keep an older text of a file whose size and mtime did not
    change): a transformation's fingerprint covers the code that runs.
    """

    def get_code(self, fullname: str) -> CodeType:
        path = self.get_filename(fullname)
        source = self.get_data(path)
        code = self.source_to_code(source, path)
        lines = importlib.util.decode_source(source).splitlines(keepends=True)
        linecache.cache[path] = (len(source), None, lines, path)  # no mtime: never re-read
        return code


def _import(file: Path) -> ModuleType:
    name = f"featurestore_repo_{abs(hash(str(file.parent)))}_{file.stem}"
    spec = importlib.util.spec_from_file_location(
        name, file, loader=_SourceOnlyLoader(name, str(file))
    )
    if spec is None or spec.loader is None:
        raise DefinitionError(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except DefinitionError as exc:
        raise DefinitionError(f"{file.name}: {exc}") from None
    except SystemExit as exc:  # else the command would end with the file's exit status
        raise DefinitionError(
            f"{file.name} exited while being imported (SystemExit({exc.code!r})): every *.py "
            "of the repo is imported; put a script's top-level code under "
            "if __name__ == '__main__':, or name the file with a leading underscore"
        ) from None
    except Exception as exc:  # a user's file failed to import: say which and why
        raise DefinitionError(f"{file.name} failed to import: {type(exc).__name__}: {exc}") from exc
    return module
