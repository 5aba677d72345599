"""registry.json edited by hand: every command says what is wrong; ``apply`` repairs it.

A malformed registry is a one-line ``RegistryError`` naming the part at fault for every
command (library and CLI); ``apply`` replaces it with the repo's definitions and drops the
online data of every view it applies (nothing is known of what that data was written with).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_repo import write_repo

from featurestore import FeatureStore, RegistryError
from featurestore.cli import main
from featurestore.registry import Registry
from featurestore.registry_state import RegistryState
from tests.strategies import corrupted

NOW = datetime(2026, 1, 1, 3, tzinfo=UTC)


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A tiny applied repo and its registry.json as written."""
    repo = write_repo(tmp_path_factory.mktemp("applied") / "repo")
    store = FeatureStore(repo)
    store.apply()
    return repo, json.loads(store.config.registry_path.read_text())


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], Any]:
    def edit(doc: dict[str, Any]) -> Any:
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return doc

    return edit


def _remove(*path: str) -> Callable[[dict[str, Any]], Any]:
    def edit(doc: dict[str, Any]) -> Any:
        node = doc
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
        return doc

    return edit


VIEW = ["feature_views", "stats"]
CORRUPTIONS = {
    "null": (lambda doc: None, ["the registry must be a JSON object, got null"]),
    "a list": (lambda doc: [], ["the registry must be a JSON object, got a list"]),
    "missing section": (_remove("feature_views"), ["section 'feature_views' is missing"]),
    "section not a mapping": (_set(["entities"], [1]), ["section 'entities'", "JSON object"]),
    "unknown entity": (
        _set([*VIEW, "definition", "entities"], ["user"]),
        ["feature view 'stats'", "entity 'user' is not in the registry's entities"],
    ),
    "unknown view in a service": (
        _set(["feature_services", "service", "definition", "features", 0, "view"], "nope"),
        ["feature service 'service'", "feature view 'nope' is not in the registry"],
    ),
    "unknown feature in a service": (
        _set(["feature_services", "service", "definition", "features", 0, "features"], ["x"]),
        ["feature service 'service'", "no feature 'x'"],
    ),
    "bad dtype": (
        _set([*VIEW, "definition", "schema", 0, "dtype"], "Decimal"),
        ["feature view 'stats'", "unsupported dtype 'Decimal'"],
    ),
    "bad key dtype": (
        _set([*VIEW, "key_dtypes", "driver_id"], "Float64"),
        ["feature view 'stats'", "join key 'driver_id' has dtype Float64"],
    ),
    "key dtypes of other keys": (
        _set([*VIEW, "key_dtypes"], {"user_id": "Int64"}),
        ["feature view 'stats'", "'key_dtypes' names ['user_id']"],
    ),
    "missing ttl": (
        _remove(*VIEW, "definition", "ttl_microseconds"),
        ["feature view 'stats'", "'ttl_microseconds' is missing"],
    ),
    "ttl of another kind": (
        _set([*VIEW, "definition", "ttl_microseconds"], "1 day"),
        ["feature view 'stats'", "malformed record"],
    ),
    "ttl beyond the maximum": (
        _set([*VIEW, "definition", "ttl_microseconds"], 2**62),
        ["feature view 'stats'", "ttl"],
    ),
    "no versions": (_set([*VIEW, "versions"], []), ["feature view 'stats'", "'versions' is empty"]),
    "version not a number": (
        _set([*VIEW, "versions", 0, "version"], "1"),
        ["feature view 'stats'", "version number '1'"],
    ),
    "renamed record": (
        _set([*VIEW, "definition", "name"], "other"),
        ["recorded under 'stats'", "named 'other'"],
    ),
    "old schema version": (_set(["schema_version"], 0), ["schema version 0 is not 1"]),
}


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_a_malformed_registry_is_named_by_every_command_and_apply_repairs_it(
    applied: tuple[Path, dict[str, Any]], tmp_path: Path, case: str
) -> None:
    import copy

    edit, culprits = CORRUPTIONS[case]
    repo = tmp_path / "repo"
    shutil.copytree(applied[0], repo)
    store = FeatureStore(repo)
    store.materialize(datetime(2026, 1, 1), datetime(2026, 1, 2))
    assert _status(store) == "PRESENT"
    store.close()
    store.config.registry_path.write_text(json.dumps(edit(copy.deepcopy(applied[1]))))

    with pytest.raises(RegistryError) as info:
        store.state  # noqa: B018
    for culprit in culprits:
        assert culprit in str(info.value), f"{culprit!r} not in {info.value}"
    assert "'featurestore apply' replaces it" in str(info.value)
    for command in (["list"], ["plan"], ["describe", "stats"], ["materialize-incremental", "now"]):
        result = CliRunner().invoke(main, [*command, "--repo", str(repo)])
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), command
        assert result.output.count("\n") == 1 and culprits[0] in result.output, result.output

    result = CliRunner().invoke(main, ["apply", "--repo", str(repo)])
    assert result.exit_code == 0, result.output
    assert "Replaced the unreadable registry" in result.output and culprits[0] in result.output
    assert "Online data and watermarks of stats were dropped" in result.output
    assert store.state.view("stats") == store.load_definitions().views["stats"]
    assert _status(FeatureStore(repo)) == "NOT_FOUND"  # dropped: materialize again
    assert "No changes" in CliRunner().invoke(main, ["apply", "--repo", str(repo)]).output


def _status(store: FeatureStore) -> str:
    response = store.get_online_features(["stats:trips"], [{"driver_id": 1}], now=NOW)
    return response.statuses["trips"][0]


def test_an_edited_key_with_a_newline_is_named_on_one_line(
    applied: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """Found by the corruption property test: the constructor's TypeError quotes the unknown
    key, a newline included, and the error spanned two lines."""
    _, document = applied
    doc = json.loads(json.dumps(document))
    (entity,) = doc["entities"].values()
    entity["definition"]["\n"] = 1  # an unknown keyword argument named "\n"
    path = tmp_path / "registry.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(RegistryError, match="malformed record") as refused:
        Registry(path, "tiny").load()
    assert "\n" not in str(refused.value) and "\\n" in str(refused.value)


@pytest.mark.parametrize(
    ("content", "culprit"),
    [
        (b'{"schema_version": 1, "proj', "Unterminated string"),
        (b"\xff\xfe{}", "can't decode byte 0xff"),
        (b"9" * 5000, "Exceeds the limit"),
        (b"[" * 100_000, "maximum recursion depth"),
        (b"", "Expecting value"),
    ],
    ids=["truncated", "not UTF-8", "huge number", "deep nesting", "empty"],
)
def test_a_registry_that_is_not_json_is_named_too(
    applied: tuple[Path, Any], tmp_path: Path, content: bytes, culprit: str
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(applied[0], repo)
    (repo / "data" / "registry.json").write_bytes(content)
    with pytest.raises(RegistryError, match=f"is not valid JSON: .*{culprit}"):
        FeatureStore(repo).state  # noqa: B018
    assert FeatureStore(repo).apply().replaces_unreadable is not None
    assert FeatureStore(repo).state.view("stats").name == "stats"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_corrupted_registry_is_a_registry_error_never_another_exception(
    applied: tuple[Path, dict[str, Any]], data: Any
) -> None:
    """Whatever registry.json holds: the state loads (and round-trips) or RegistryError says
    why; the CLI prints one line; ``apply`` always brings back the repo's definitions."""
    repo, document = applied
    path = repo / "data" / "registry.json"
    path.write_text(json.dumps(data.draw(corrupted(document))))
    try:
        state = Registry(path, "tiny").load()
    except RegistryError as exc:
        assert "\n" not in str(exc)
    else:
        assert state is not None
        assert RegistryState.from_json(json.loads(json.dumps(state.to_json()))) == state
    result = CliRunner().invoke(main, ["list", "--repo", str(repo)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 0 or result.output.count("\n") == 1, result.output

    FeatureStore(repo).apply()
    assert (
        FeatureStore(repo).state.to_json()["feature_views"]["stats"]["definition"]
        == (document["feature_views"]["stats"]["definition"])
    )
