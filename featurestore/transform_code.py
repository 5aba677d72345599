"""The code of a request-time transformation, normalized: what its view's fingerprint covers.

``transformation_code(fn)`` is the text a fingerprint hashes:

1. the function's source, parsed and written back by Python's ``ast`` (so comments and
   formatting do not count), without its decorators and docstring;
2. the same for every function of the repo that it calls, directly or through another repo
   function (a helper defined in the repo, or imported from another repo file), each headed
   by its file (relative to the repo) and name, sorted;
3. the value of every simple module-level constant it reads (numbers, strings, booleans,
   None, tuples of them), e.g. ``# constant WINDOW = 24``.

"The repo" is the folder of the function's file and its sub-folders, outside any
``site-packages``: library code (pandas, numpy) is not covered; its version is the
environment's. Names are resolved when the code is first asked for (after the whole file has
been imported, so a helper defined below the transformation counts).
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from featurestore.errors import DefinitionError

_SIMPLE = (int, float, str, bool, type(None), bytes)


def code_sha256(code: str) -> str:
    """The hash of a transformation's normalized code."""
    return hashlib.sha256(code.encode()).hexdigest()


def transformation_code(function: Callable[..., Any], what: str) -> str:
    """The normalized code of ``function`` and the repo code it uses (module docstring).

    ``what`` names the definition in errors (a function whose source cannot be read, e.g.
    one typed into an interactive session, is a ``DefinitionError``).
    """
    if not isinstance(function, types.FunctionType):
        raise DefinitionError(
            f"{what}: the transformation must be a function defined with 'def' in a repo "
            f"file, got {function!r}"
        )
    if function.__name__ == "<lambda>":
        raise DefinitionError(
            f"{what}: the transformation is a lambda; define it with 'def' so its source "
            "can be fingerprinted"
        )
    root = _repo_root(function)
    parts = [_normalized(function, what)]
    helpers: dict[str, str] = {}
    constants: dict[str, str] = {}
    seen: set[int] = {id(function)}
    pending = [function]
    while pending:
        current = pending.pop()
        for name, value in _used_globals(current, root):
            if isinstance(value, types.FunctionType):
                if id(value) in seen or root is None or not _in_repo(value, root):
                    continue
                seen.add(id(value))
                label = f"{_relative(value, root)}:{value.__qualname__}"
                helpers[label] = _normalized(value, what)
                pending.append(value)
            elif _is_simple(value):
                constants[name] = repr(value)
    parts += [f"# {label}\n{code}" for label, code in sorted(helpers.items())]
    parts += [f"# constant {name} = {value}" for name, value in sorted(constants.items())]
    return "\n\n".join(parts)


def _normalized(function: types.FunctionType, what: str) -> str:
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError) as exc:
        raise DefinitionError(
            f"{what}: the source of {function.__qualname__} cannot be read ({exc}); define "
            "it in a file of the repo"
        ) from None
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:  # e.g. a function defined on one line with other statements
        raise DefinitionError(
            f"{what}: the source of {function.__qualname__} cannot be parsed alone ({exc})"
        ) from None
    node = tree.body[0] if tree.body else None
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        raise DefinitionError(f"{what}: {function.__qualname__} is not a 'def' function")
    node.decorator_list = []
    if ast.get_docstring(node, clean=False) is not None:
        node.body = node.body[1:] or [ast.Pass()]
    return ast.unparse(node)


def _used_globals(function: types.FunctionType, root: Path | None) -> Iterator[tuple[str, Any]]:
    """Every global or closure value the function's code (nested code included) names,
    and attributes of repo modules it reads (``helpers.ratio``)."""
    names: set[str] = set()
    stack = [function.__code__]
    while stack:
        code = stack.pop()
        names.update(code.co_names)
        stack += [c for c in code.co_consts if isinstance(c, types.CodeType)]
    free = dict(zip(function.__code__.co_freevars, function.__closure__ or (), strict=True))
    for name, cell in sorted(free.items()):
        try:
            yield name, cell.cell_contents
        except ValueError:  # an empty cell (not yet assigned)
            continue
    scope = function.__globals__
    for name in sorted(names):
        if name not in scope:
            continue
        value = scope[name]
        yield name, value
        if (
            isinstance(value, types.ModuleType)
            and root is not None
            and _module_in_repo(value, root)
        ):
            for attribute in sorted(names):
                if attribute in vars(value):
                    yield f"{name}.{attribute}", vars(value)[attribute]


def _is_simple(value: Any) -> bool:
    if isinstance(value, tuple):
        return all(_is_simple(v) for v in value)
    return isinstance(value, _SIMPLE)


def _repo_root(function: types.FunctionType) -> Path | None:
    path = Path(function.__code__.co_filename)
    if not path.is_file() or "site-packages" in path.parts:
        return None
    return path.resolve().parent


def _in_repo(function: types.FunctionType, root: Path) -> bool:
    path = Path(function.__code__.co_filename)
    if not path.is_file() or "site-packages" in path.parts:
        return False
    return path.resolve().is_relative_to(root)


def _module_in_repo(module: types.ModuleType, root: Path) -> bool:
    file = getattr(module, "__file__", None)
    return (
        file is not None
        and "site-packages" not in Path(file).parts
        and (Path(file).resolve().is_relative_to(root))
    )


def _relative(function: types.FunctionType, root: Path) -> str:
    return Path(function.__code__.co_filename).resolve().relative_to(root).as_posix()
