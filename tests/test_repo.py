"""Loading a repo folder: which files are imported, and errors naming definition and file."""

from __future__ import annotations

import os
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from featurestore import DefinitionError
from featurestore.repo import load_repo

HEADER = """\
from datetime import timedelta
from featurestore import Entity, FeatureService, FeatureView, Field, FileSource
from featurestore.types import Float32, Int64
"""

ENTITY = 'driver = Entity(name="driver", join_keys=["driver_id"])\n'

VIEW = """\
stats = FeatureView(
    name="stats",
    entities=[driver],
    schema=[Field(name="conv_rate", dtype=Float32), Field(name="trips", dtype=Int64)],
    source=FileSource(path="data/stats.parquet", timestamp_field="event_ts"),
    ttl=timedelta(days=1),
)
"""


def write(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root


def error_of(root: Path) -> str:
    with pytest.raises(DefinitionError) as info:
        load_repo(root)
    return str(info.value)


def test_files_import_each_other_and_shared_objects_count_once(tmp_path: Path) -> None:
    repo = write(
        tmp_path,
        {
            "entities.py": HEADER + ENTITY,
            "views.py": HEADER + "from entities import driver\n" + VIEW,
            "services.py": HEADER
            + "from views import stats\n"
            + 'svc = FeatureService(name="svc", features=[stats[["trips"]]])\n',
        },
    )
    contents = load_repo(repo)
    assert list(contents.entities) == ["driver"]
    assert list(contents.views) == ["stats"]
    assert contents.services["svc"].refs == ["stats:trips"]
    assert contents.origin["view:stats"] == "views.py"


def test_private_and_nested_files_are_not_imported(tmp_path: Path) -> None:
    broken = "raise RuntimeError('must not be imported')\n"
    repo = write(
        tmp_path,
        {"defs.py": HEADER + ENTITY + VIEW, "_scratch.py": broken, "sub/broken.py": broken},
    )
    assert list(load_repo(repo).views) == ["stats"]


def test_two_repos_with_same_file_names_load_independently(tmp_path: Path) -> None:
    a = write(
        tmp_path / "a",
        {
            "entities.py": HEADER + ENTITY,
            "views.py": HEADER + "from entities import driver\n" + VIEW,
        },
    )
    other_entity = 'driver = Entity(name="driver", join_keys=["driver_key"])\n'
    b = write(
        tmp_path / "b",
        {
            "entities.py": HEADER + other_entity,
            "views.py": HEADER + "from entities import driver\n" + VIEW,
        },
    )
    assert load_repo(a).views["stats"].join_keys == ("driver_id",)
    assert load_repo(b).views["stats"].join_keys == ("driver_key",)


def test_a_name_defined_in_two_files_names_both_files(tmp_path: Path) -> None:
    other = VIEW.replace("ttl=timedelta(days=1)", "ttl=timedelta(days=2)")
    repo = write(
        tmp_path,
        {
            "entities.py": HEADER + ENTITY,
            "first.py": HEADER + "from entities import driver\n" + VIEW,
            "second.py": HEADER + "from entities import driver\n" + other,
        },
    )
    message = error_of(repo)
    assert "'stats'" in message and "first.py" in message and "second.py" in message
    assert "defined twice" in message


def test_an_entity_defined_twice_names_both_files(tmp_path: Path) -> None:
    repo = write(
        tmp_path,
        {
            "a.py": HEADER + ENTITY,
            "b.py": HEADER + 'driver = Entity(name="driver", join_keys=["id"])\n',
        },
    )
    message = error_of(repo)
    assert "'driver'" in message and "a.py" in message and "b.py" in message


def test_a_view_whose_entity_is_not_defined(tmp_path: Path) -> None:
    inline = VIEW.replace("entities=[driver]", "entities=[Entity(name='driver')]")
    repo = write(tmp_path, {"defs.py": HEADER + inline})
    message = error_of(repo)
    assert "'stats'" in message and "'driver'" in message and "defs.py" in message
    assert "not defined" in message


def test_an_undefined_entity_suggests_close_names(tmp_path: Path) -> None:
    repo = write(
        tmp_path,
        {
            "defs.py": HEADER
            + 'drivers = Entity(name="drivers", join_keys=["driver_id"])\n'
            + 'driver = Entity(name="driver", join_keys=["driver_id"])\n'
            + VIEW
            + "del driver\n"
        },
    )
    assert "did you mean 'drivers'" in error_of(repo)


def test_a_service_naming_an_unknown_feature(tmp_path: Path) -> None:
    repo = write(
        tmp_path,
        {
            "defs.py": HEADER
            + ENTITY
            + VIEW
            + 'svc = FeatureService(name="svc", features=[stats[["trips", "speed"]]])\n'
        },
    )
    message = error_of(repo)
    assert "'stats'" in message and "'speed'" in message and "defs.py" in message


def test_a_service_using_a_view_the_repo_does_not_define(tmp_path: Path) -> None:
    repo = write(
        tmp_path,
        {
            "defs.py": HEADER
            + ENTITY
            + VIEW
            + 'svc = FeatureService(name="svc", features=[stats])\n'
            + "del stats\n"
        },
    )
    message = error_of(repo)
    assert "'svc'" in message and "'stats'" in message and "defs.py" in message


def test_a_definition_error_inside_a_file_names_the_file(tmp_path: Path) -> None:
    repo = write(
        tmp_path,
        {"defs.py": HEADER + ENTITY + VIEW.replace("timedelta(days=1)", "timedelta(days=-1)")},
    )
    message = error_of(repo)
    assert message.startswith("defs.py: ") and "'stats'" in message and "negative" in message


def test_a_file_that_fails_to_import_is_named(tmp_path: Path) -> None:
    repo = write(tmp_path, {"defs.py": HEADER + ENTITY, "oops.py": "import no_such_module\n"})
    message = error_of(repo)
    assert "oops.py" in message and "no_such_module" in message


@pytest.mark.parametrize("exit_call", ["sys.exit(0)", "sys.exit(2)", "raise SystemExit"])
def test_a_file_that_exits_while_imported_is_an_error_naming_it(
    tmp_path: Path, exit_call: str
) -> None:
    # e.g. a script beside the definitions that parses its arguments without a main guard
    repo = write(tmp_path, {"defs.py": HEADER + ENTITY, "script.py": f"import sys\n{exit_call}\n"})
    message = error_of(repo)
    assert message.startswith("script.py exited while being imported")
    assert "if __name__ == '__main__'" in message


def _edit_keeping_size_and_mtime(file: Path, old: str, new: str) -> None:
    assert len(old) == len(new)
    before = file.stat()
    file.write_text(file.read_text().replace(old, new))
    os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_an_edit_is_seen_even_when_size_and_mtime_are_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python's bytecode cache is keyed by a source's size and whole-second mtime: an edit
    within the same second would be served from a stale .pyc, both for the files the loader
    imports and for those they import by plain name. Repo files are compiled from source."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as for users (tests may set it)
    repo = write(
        tmp_path,
        {
            "entities.py": HEADER + ENTITY,
            "views.py": HEADER + "from entities import driver\n" + VIEW,
        },
    )
    first = load_repo(repo)
    assert first.views["stats"].ttl == timedelta(days=1)
    assert first.entities["driver"].join_keys == ("driver_id",)

    _edit_keeping_size_and_mtime(repo / "views.py", "days=1", "days=2")
    _edit_keeping_size_and_mtime(repo / "entities.py", '"driver_id"', '"driver_ix"')
    second = load_repo(repo)
    assert second.views["stats"].ttl == timedelta(days=2)
    assert second.entities["driver"].join_keys == ("driver_ix",)
    assert not (repo / "__pycache__").exists()  # nothing written into the user's folder


ON_DEMAND = """\
import pandas as pd
from featurestore import on_demand_feature_view
from featurestore.types import Float64


@on_demand_feature_view(sources=[stats[["trips"]]], schema=[Field(name="more", dtype=Float64)])
def more(inputs: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"more": inputs["trips"] * 3.0})
"""


def test_a_transformation_edit_is_fingerprinted_from_the_code_that_runs(tmp_path: Path) -> None:
    """The fingerprinted source of a transformation is the source its code was compiled from,
    even when an edit keeps the file's size and mtime (Python's line cache keys on those)."""
    import pandas as pd

    repo = write(tmp_path, {"defs.py": HEADER + ENTITY + VIEW + ON_DEMAND})
    first = load_repo(repo).on_demand["more"]
    assert "* 3.0" in first.transformation_code()

    _edit_keeping_size_and_mtime(repo / "defs.py", "* 3.0", "* 4.0")
    second = load_repo(repo).on_demand["more"]
    assert second.udf is not None
    assert second.udf(pd.DataFrame({"trips": [1]}))["more"].tolist() == [4.0]
    assert "* 4.0" in second.transformation_code()
    assert second.code_sha256 != first.code_sha256


def _repo_with_a_package(root: Path, days: int) -> Path:
    return write(
        root,
        {
            "lib/__init__.py": "",
            "lib/consts.py": f"DAYS = {days}\n",
            "defs.py": HEADER
            + "from lib.consts import DAYS\n"
            + ENTITY
            + VIEW.replace("days=1", "days=DAYS"),
        },
    )


def test_an_edit_in_a_sub_package_is_seen_by_the_next_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Modules of the repo's sub-folders are imported afresh on every load, from source."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    repo = _repo_with_a_package(tmp_path, days=1)
    assert load_repo(repo).views["stats"].ttl == timedelta(days=1)
    _edit_keeping_size_and_mtime(repo / "lib" / "consts.py", "DAYS = 1", "DAYS = 2")
    assert load_repo(repo).views["stats"].ttl == timedelta(days=2)
    assert not list(repo.rglob("__pycache__"))


def test_two_repos_with_same_named_packages_load_independently(tmp_path: Path) -> None:
    one = _repo_with_a_package(tmp_path / "one", days=1)
    two = _repo_with_a_package(tmp_path / "two", days=3)
    ttls = [load_repo(repo).views["stats"].ttl for repo in (one, two, one)]
    assert ttls == [timedelta(days=1), timedelta(days=3), timedelta(days=1)]


def test_the_programs_own_same_named_module_is_hidden_during_a_load_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A program that imported its own ``lib`` loads a repo whose package is also ``lib``:
    the repo's code sees the repo's ``lib``, and the program keeps its own afterwards."""
    import types

    own = types.ModuleType("lib")
    own_consts = types.ModuleType("lib.consts")
    own_consts.DAYS = 9  # type: ignore[attr-defined]  # a module built by hand
    monkeypatch.setitem(sys.modules, "lib", own)
    monkeypatch.setitem(sys.modules, "lib.consts", own_consts)
    repo = _repo_with_a_package(tmp_path, days=2)
    assert load_repo(repo).views["stats"].ttl == timedelta(days=2)
    assert sys.modules["lib"] is own and sys.modules["lib.consts"] is own_consts
