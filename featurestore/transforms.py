"""Request-time transformations, applied by one function on both paths.

A request that names features of an on-demand view (featurestore/on_demand.py) is split by
``split_request`` into the feature views to read (the features asked for, plus the inputs
of its transformations under reserved ``__fs_input__<view>__<feature>`` columns, dropped
from the answer) and ``Transformation`` steps. ``transform`` then computes the steps' outputs,
called where each path produces its answer:

* offline, by ``training.historical_job`` on the table the point-in-time join produced
  (request fields are entity_df columns);
* online, by ``online/read.py`` on the values the store read (request fields are entity
  row values: ``get_online_features`` entity rows, ``entities`` in the HTTP bodies).

The function's input is built the same way on both paths: each input as an Arrow array of its
declared type (a request field is first cast to its declared dtype by ``types.coerce``, a
bad value is a ``RetrievalError`` naming the field and the view), then ``types.to_pandas``
(nullable dtypes: a null or NaN is ``pd.NA``; ``types.to_pandas_frame``, the same
conversion built column by column) for ``mode="pandas"``, or lists of Python
values for ``mode="python"``. A source feature is a column under its name and under
``view__feature``; a request field, under its name. A feature with no value (no row in the
window offline; NOT_FOUND or OUTSIDE_MAX_AGE online) is null there. Each output column the
request asks for is cast to its declared dtype by ``types.coerce`` (a float into Float32
rounds, beyond its range to an infinity, as float32 arithmetic would; a given request field
beyond it is refused; a non-integral float into an integer dtype is an error naming the
column). An exception inside the function, a missing output column, a wrong row count or a
value that does not fit its dtype is a ``TransformationError`` naming the view (and the
column); the prediction service answers it with HTTP 500 and counts it per view.

Online, an output has status PRESENT, or NULL_VALUE when null, and no event timestamp.

The function comes from the repo: ``bind_functions`` imports the repo's Python files (once per
registry state and file change, per process) and refuses, with a ``RegistryError`` that says
to run ``featurestore apply``, a function whose normalized code no longer hashes to the
applied one, so an unapplied edit is never served nor trained on.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestore.columns import feature_column
from featurestore.definitions import FeatureView, FeatureViewProjection
from featurestore.errors import (
    DefinitionError,
    RegistryError,
    RetrievalError,
    TransformationError,
)
from featurestore.types import DType, coerce, to_pandas_frame

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.registry_state import RegistryState

HIDDEN_PREFIX = "__fs_input__"


def hidden_column(view: str, feature: str) -> str:
    """Where a transformation input that was not asked for is read (dropped afterwards)."""
    return f"{HIDDEN_PREFIX}{view}__{feature}"


@dataclass(frozen=True)
class TransformInput:
    """One input of a transformation: where its values are, and its columns in the frame.

    ``column``: a feature's output (or hidden) column, or a request field's name (an
    entity_df column offline, an entity row key online). ``request_source`` is set for a
    request field (its values are cast to ``dtype`` first).
    """

    column: str
    names: tuple[str, ...]
    dtype: DType
    request_source: str | None = None


@dataclass(frozen=True)
class TransformOutput:
    """An output asked for: its name in the function's result, dtype and output column."""

    name: str
    dtype: DType
    output: str


@dataclass(frozen=True)
class Transformation:
    """One on-demand view of a request: its function, what it reads, what it outputs."""

    view: str
    fingerprint: str
    mode: str
    function: Callable[..., Any]
    inputs: tuple[TransformInput, ...]
    outputs: tuple[TransformOutput, ...]

    @property
    def request_fields(self) -> tuple[TransformInput, ...]:
        return tuple(i for i in self.inputs if i.request_source is not None)


@dataclass(frozen=True)
class ViewReads:
    """A feature view a request reads: the features asked for, then hidden inputs."""

    view: FeatureView
    asked: tuple[str, ...]
    hidden: tuple[str, ...] = ()

    @property
    def features(self) -> tuple[str, ...]:
        return (*self.asked, *self.hidden)


@dataclass(frozen=True)
class SplitRequest:
    """A request split into the views to read and the transformations to run after."""

    reads: tuple[ViewReads, ...]
    transformations: tuple[Transformation, ...]


def split_request(
    state: RegistryState,
    projections: Sequence[FeatureViewProjection],
    full_feature_names: bool,
    repo_path: Path | None,
) -> SplitRequest:
    """Split resolved projections (``RegistryState.resolve``) into views to read (in
    order of first reference, a reference to an on-demand view counting as one to its
    sources) and transformations (in request order, each one's outputs in its schema's
    order): the order Feast answers features in.

    The functions are the repo's (``bind_functions``); ``repo_path`` None refuses on-demand
    views (a reader without a repo to import them from).
    """
    asked: dict[str, FeatureViewProjection] = {}
    on_demand = []
    for p in projections:
        if isinstance(p.view, FeatureView):
            asked[p.view.name] = p
        else:
            on_demand.append(p)
    if not on_demand:
        return SplitRequest(
            tuple(ViewReads(state.view(n), p.features) for n, p in asked.items()), ()
        )
    if repo_path is None:
        raise RetrievalError(
            f"on-demand feature view {on_demand[0].view.name!r} needs its function from the "
            "repo, and this reader was opened without a repo path"
        )
    functions = bind_functions(state, [p.view.name for p in on_demand], repo_path)
    hidden: dict[str, list[str]] = {}
    transformations = []
    for p in on_demand:
        applied = state.on_demand[p.view.name].view
        inputs = []
        for source in applied.source_projections:
            view = state.view(source.view.name)
            given = asked[view.name].features if view.name in asked else ()
            for f in source.features:
                if f in given:
                    column = feature_column(view.name, f, full_feature_names)
                else:
                    if f not in hidden.setdefault(view.name, []):
                        hidden[view.name].append(f)
                    column = hidden_column(view.name, f)
                inputs.append(
                    TransformInput(column, (f, f"{view.name}__{f}"), view.feature(f).dtype)
                )
        for request in applied.request_sources:
            inputs += [
                TransformInput(f.name, (f.name,), f.dtype, request.name) for f in request.schema
            ]
        # In the view's schema order, whatever the request's: as Feast answers (the order
        # its function returns them), online and offline
        outputs = tuple(
            TransformOutput(
                name,
                applied.feature(name).dtype,
                feature_column(applied.name, name, full_feature_names),
            )
            for name in applied.feature_names
            if name in p.features
        )
        transformations.append(
            Transformation(
                view=applied.name,
                fingerprint=state.projection_fingerprint(p),
                mode=applied.mode,
                function=functions[applied.name],
                inputs=tuple(inputs),
                outputs=outputs,
            )
        )
    # Views in order of first reference, one to an on-demand view counting as one to each of
    # its sources: the order Feast answers them in (the inputs-only views give no output)
    first: dict[str, None] = {}
    for p in projections:
        if isinstance(p.view, FeatureView):
            first.setdefault(p.view.name)
        else:
            for source in state.on_demand[p.view.name].view.source_projections:
                first.setdefault(source.view.name)
    reads = tuple(
        ViewReads(
            state.view(name),
            asked[name].features if name in asked else (),
            tuple(hidden.get(name, ())),
        )
        for name in first
    )
    return SplitRequest(reads, tuple(transformations))


# --- the one function both paths call -----------------------------------------------------


def transform(
    transformations: Sequence[Transformation],
    columns: Mapping[str, pa.Array | pa.ChunkedArray | list[Any]],
    rows: int,
) -> dict[str, pa.Array]:
    """The outputs of ``transformations`` (output column -> Arrow array of its dtype) for
    ``rows`` rows whose inputs are in ``columns`` (Arrow arrays, or lists of Python values
    read online: a feature's of its dtype, a request field's of any type). Module docstring."""
    out: dict[str, pa.Array] = {}
    for t in transformations:
        frame = input_frame(t, columns, rows)
        out.update(_outputs(t, _call(t, frame), rows))
    return out


def input_frame(
    t: Transformation, columns: Mapping[str, pa.Array | pa.ChunkedArray | list[Any]], rows: int
) -> Any:
    """The function's input: a pandas DataFrame (``mode="pandas"``) or a dict of lists."""
    import pyarrow as pa

    names, arrays = [], []
    for i in t.inputs:
        values = columns[i.column]
        if i.request_source is None:
            array = values if not isinstance(values, list) else pa.array(values, i.dtype.to_arrow())
        else:
            array = _request_field(t, i, values)
        if len(array) != rows:
            raise RetrievalError(
                f"request field {i.column!r} of on-demand feature view {t.view!r} has "
                f"{len(array)} values for {rows} entity rows"
            )
        for name in i.names:
            names.append(name)
            arrays.append(array)
    if t.mode == "python":
        return pa.Table.from_arrays(arrays, names=names).to_pydict()
    return to_pandas_frame(names, arrays)


def _request_field(t: Transformation, field: TransformInput, values: Any) -> pa.Array:
    import pyarrow as pa

    what = f"request field {field.column!r} of on-demand feature view {t.view!r}"
    if isinstance(values, list):
        try:
            values = pa.array(values)
        # ValueError: UnicodeEncodeError, a lone surrogate (JSON's "\ud800") in a string
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
            raise RetrievalError(f"{what} is {field.dtype}: {exc}") from None
    return coerce(values, field.dtype, what, RetrievalError)


def _call(t: Transformation, frame: Any) -> Any:
    try:
        return t.function(frame)
    # The user's code: whatever it raises is reported with the view's name (and, served,
    # answered with HTTP 500 and counted), never a dead worker.
    except (Exception, SystemExit) as exc:
        raise TransformationError(
            f"on-demand feature view {t.view!r}: its function raised {type(exc).__name__}: {exc}",
            t.view,
        ) from exc


def _outputs(t: Transformation, result: Any, rows: int) -> dict[str, pa.Array]:
    import pandas as pd
    import pyarrow as pa

    what = f"on-demand feature view {t.view!r}"
    if t.mode == "pandas" and not isinstance(result, pd.DataFrame):
        raise TransformationError(
            f"{what}: its function returned {type(result).__name__}, not a pandas DataFrame", t.view
        )
    if t.mode == "python" and not isinstance(result, Mapping):
        raise TransformationError(
            f"{what}: its function (mode='python') returned {type(result).__name__}, not a "
            "dict of lists",
            t.view,
        )
    returned = _columns(t, result)
    out = {}
    for o in t.outputs:
        if o.name not in returned:
            raise TransformationError(
                f"{what}: its function returned no column {o.name!r} (it returned "
                f"{list(result.keys())})",
                t.view,
            )
        values = returned[o.name]
        try:
            array = pa.array(values)
        # ValueError: UnicodeEncodeError, a string with a lone surrogate
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
            raise TransformationError(
                f"{what}: output column {o.name!r} cannot be read as {o.dtype}: {exc}", t.view
            ) from None
        if len(array) != rows:
            raise TransformationError(
                f"{what}: output column {o.name!r} has {len(array)} rows for {rows} input rows "
                "(a transformation returns one row per input row, in order)",
                t.view,
            )
        try:
            column = f"{what}: output column {o.name!r}"
            out[o.output] = coerce(array, o.dtype, column, TransformationError, computed=True)
        except TransformationError as exc:
            raise TransformationError(str(exc), t.view) from None
    return out


def _columns(t: Transformation, result: Any) -> Mapping[str, Any]:
    """The function's result by column name. A DataFrame's columns are taken in one pass:
    looking each up by name builds a hash table of a new frame's column names, which costs
    more than the whole function on the few rows of a request. An output asked for under a
    repeated column name is a ``TransformationError``."""
    import pandas as pd

    if not isinstance(result, pd.DataFrame):
        return result  # a Mapping (checked by the caller)
    columns = dict(result.items())
    if len(columns) < result.shape[1]:
        names = list(result.columns)
        repeated = [o.name for o in t.outputs if names.count(o.name) > 1]
        if repeated:
            raise TransformationError(
                f"on-demand feature view {t.view!r}: its function returned the column "
                f"{repeated[0]!r} {names.count(repeated[0])} times (one column per name)",
                t.view,
            )
    return columns


# --- the repo's functions, checked against the applied code -------------------------------

_lock = threading.Lock()
_loaded: dict[tuple[Any, ...], dict[str, Callable[..., Any] | str]] = {}
MAX_LOADED = 16


def bind_functions(
    state: RegistryState, names: Sequence[str], repo_path: Path
) -> dict[str, Callable[..., Any]]:
    """The repo's functions of the on-demand views ``names``, each checked against the
    applied code (mode and normalized code hash).

    The repo is imported once per (repo, applied code, repo files' sizes and modification
    times) in this process: calls share the function objects, and an edit to a repo file is
    seen by the next call. ``RegistryError`` ("run featurestore apply") when the repo no
    longer defines a view, defines it with other code or mode, or cannot be imported.
    """
    applied = tuple(
        sorted((n, r.view.code_sha256, r.view.mode) for n, r in state.on_demand.items())
    )
    root = Path(repo_path).resolve()
    key = (str(root), applied, _files_stamp(root))
    with _lock:
        found = _loaded.get(key)
        if found is None:
            found = _import_functions(root, applied)
            if len(_loaded) >= MAX_LOADED:
                _loaded.clear()
            _loaded[key] = found
    functions = {}
    for name in names:
        item = found.get(name, f"on-demand feature view {name!r} is not applied")
        if isinstance(item, str):
            raise RegistryError(item)
        functions[name] = item
    return functions


def _files_stamp(root: Path) -> tuple[tuple[str, int, int], ...]:
    stamps = []
    for path in sorted(root.glob("*.py")):
        try:
            st = os.stat(path)
        except OSError:
            continue
        stamps.append((path.name, st.st_mtime_ns, st.st_size))
    return tuple(stamps)


def _import_functions(
    root: Path, applied: Sequence[tuple[str, str, str]]
) -> dict[str, Callable[..., Any] | str]:
    """Each applied view's function from the repo, or why it cannot be used."""
    from featurestore.repo import load_repo

    fix = "run 'featurestore apply' (and retrain models that read it)"
    try:
        contents = load_repo(root)
    except DefinitionError as exc:
        return {
            name: f"on-demand feature view {name!r}: cannot import its function from the repo "
            f"{root}: {exc}; fix the repo, then {fix}"
            for name, _, _ in applied
        }
    found: dict[str, Callable[..., Any] | str] = {}
    for name, sha, mode in applied:
        view = contents.on_demand.get(name)
        if view is None or view.udf is None:
            found[name] = (
                f"on-demand feature view {name!r} is applied but the repo at {root} no longer "
                f"defines it; {fix}"
            )
        elif view.code_sha256 != sha or view.mode != mode:
            found[name] = (
                f"on-demand feature view {name!r}: its function in the repo changed since it "
                f"was applied (code {sha[:12]} -> {view.code_sha256[:12]}, mode {mode!r} -> "
                f"{view.mode!r}); {fix}"
            )
        else:
            found[name] = view.udf
    return found
