"""Fingerprints change exactly when a feature's values could change, and are stable anywhere.

Each case rewrites one attribute of the tiny repo (tests/tiny_repo.py), plans the change
against what was applied, and checks the view's and the service's fingerprints (the service
projects only ``stats:conv_rate``), what ``plan`` says changed, and the version history.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_repo import write_repo

from featurestore import FeatureStore

# (case id, attribute overrides, whether the service fingerprint changes too (the view's
#  always does), words the plan's details must contain)
VALUE_CHANGES = [
    ("source path", {"path": "data/stats_copy.parquet"}, True, "path"),
    ("timestamp field", {"timestamp_field": "event_ts2"}, True, "timestamp_field"),
    ("created column", {"created": "created_ts2"}, True, "created_timestamp_column"),
    ("created column removed", {"created": None}, True, "created_timestamp_column"),
    ("ttl", {"ttl": "timedelta(days=2)"}, True, "ttl"),
    ("ttl removed", {"ttl": "None"}, True, "ttl"),
    ("join keys", {"join_keys": ["driver_key"]}, True, "join key"),
    (
        "key dtype",
        {"fields": [("driver_id", "Int64"), ("conv_rate", "Float32"), ("trips", "Int64")]},
        True,
        "join key dtypes",
    ),
    ("field dtype", {"fields": [("conv_rate", "Float64"), ("trips", "Int64")]}, True, "dtype"),
    (
        "field added",
        {"fields": [("conv_rate", "Float32"), ("trips", "Int64"), ("extra", "Float64")]},
        False,
        "added field extra",
    ),
    ("field removed", {"fields": [("conv_rate", "Float32")]}, False, "removed field trips"),
]

COSMETIC_CHANGES = [
    ("description", {"description": "Something else."}, "description"),
    ("tags", {"tags": {"team": "other"}}, "tags"),
    ("owner", {"owner": "someone@example.com"}, "owner"),
    ("online", {"online": False}, "online"),
    ("field order", {"fields": [("trips", "Int64"), ("conv_rate", "Float32")]}, "order"),
]


def fingerprints(store: FeatureStore) -> tuple[str, str]:
    state = store.state
    return state.views["stats"].fingerprint, state.services["service"].fingerprint


@pytest.fixture
def applied(tmp_path: Path) -> FeatureStore:
    store = FeatureStore(write_repo(tmp_path / "repo"))
    store.apply()
    return store


@pytest.mark.parametrize(
    ("overrides", "service_changes", "detail"),
    [pytest.param(o, s, d, id=name) for name, o, s, d in VALUE_CHANGES],
)
def test_a_value_changing_attribute_changes_the_fingerprint(
    applied: FeatureStore, overrides: dict, service_changes: bool, detail: str
) -> None:
    view_before, service_before = fingerprints(applied)
    write_repo(applied.repo_path, **overrides)

    plan = applied.plan()
    [change] = [c for c in plan.changes if c.kind == "feature view"]
    assert change.action == "changed" and change.fingerprint_changed
    assert any(detail in d for d in change.details), change.details
    assert plan.views_to_reset() == ["stats"]

    applied.apply()
    view_after, service_after = fingerprints(applied)
    assert view_after != view_before
    assert (service_after != service_before) is service_changes
    versions = applied.state.views["stats"].versions
    assert [v.version for v in versions] == [1, 2]
    assert versions[-1].fingerprint == view_after
    service_versions = applied.state.services["service"].versions
    assert len(service_versions) == (2 if service_changes else 1)


@pytest.mark.parametrize(
    ("overrides", "detail"), [pytest.param(o, d, id=name) for name, o, d in COSMETIC_CHANGES]
)
def test_a_cosmetic_attribute_keeps_the_fingerprint(
    applied: FeatureStore, overrides: dict, detail: str
) -> None:
    before = fingerprints(applied)
    write_repo(applied.repo_path, **overrides)

    plan = applied.plan()
    [change] = [c for c in plan.changes if c.kind == "feature view"]
    assert change.action == "changed" and not change.fingerprint_changed
    assert any(detail in d for d in change.details), change.details
    # Online rows are positional: a field reorder keeps the fingerprint (and the models bound
    # to it) but changes the row layout, so the view's online data must go.
    reordered = detail == "order"
    assert change.layout_changed == reordered
    assert plan.views_to_reset() == (["stats"] if reordered else [])

    applied.apply()
    assert fingerprints(applied) == before
    assert len(applied.state.views["stats"].versions) == 1
    # The registry holds the edited definition even though no new version was made.
    assert applied.state.view("stats") == applied.load_definitions().views["stats"]


def test_ttl_none_and_zero_are_the_same_fingerprint(tmp_path: Path) -> None:
    none = FeatureStore(write_repo(tmp_path / "a", ttl="None")).plan().new_state
    zero = FeatureStore(write_repo(tmp_path / "b", ttl="timedelta(0)")).plan().new_state
    assert none.views["stats"].fingerprint == zero.views["stats"].fingerprint


def test_projecting_another_feature_changes_only_the_service(applied: FeatureStore) -> None:
    view_before, service_before = fingerprints(applied)
    write_repo(applied.repo_path, service_features=["conv_rate", "trips"])
    plan = applied.plan()
    assert [(c.kind, c.action) for c in plan.changes] == [("feature service", "changed")]
    assert "added stats:trips" in plan.changes[0].details
    applied.apply()
    view_after, service_after = fingerprints(applied)
    assert view_after == view_before and service_after != service_before


def test_plan_names_what_changed_in_entities_and_services(applied: FeatureStore) -> None:
    write_repo(applied.repo_path, join_keys=["driver_key"])
    changes = {c.kind: c for c in applied.plan().changes}
    assert changes["entity"].details == ("join_keys: ['driver_id'] -> ['driver_key']",)
    assert changes["entity"].fingerprint_changed
    assert changes["feature service"].details == ("a projected view changed",)


def test_plan_names_a_reordered_service_as_a_cosmetic_change(applied: FeatureStore) -> None:
    write_repo(applied.repo_path, service_features=["conv_rate", "trips"])
    applied.apply()
    write_repo(applied.repo_path, service_features=["trips", "conv_rate"])
    [change] = applied.plan().changes
    assert change.kind == "feature service" and not change.fingerprint_changed
    assert change.details == ("feature order: stats:trips, stats:conv_rate",)


def test_reapplying_the_same_repo_changes_nothing(applied: FeatureStore) -> None:
    registry = applied.registry.path.read_text()
    assert applied.plan().is_empty
    applied.apply()
    assert applied.registry.path.read_text() == registry


def test_version_history_grows_only_on_fingerprint_change(applied: FeatureStore) -> None:
    root = applied.repo_path
    steps = [
        ({"description": "v1 again"}, 1),
        ({"ttl": "timedelta(days=3)"}, 2),
        ({"ttl": "timedelta(days=3)", "owner": "x@example.com"}, 2),
        ({"ttl": "timedelta(days=3)", "owner": "x@example.com", "online": False}, 2),
        ({}, 3),  # back to one day: a new version, not a return to version 1
    ]
    for overrides, expected in steps:
        write_repo(root, **overrides)
        applied.apply()
        versions = applied.state.views["stats"].versions
        assert [v.version for v in versions] == list(range(1, expected + 1)), overrides
    first, last = versions[0], versions[-1]
    assert first.fingerprint == last.fingerprint
    assert first.applied_at < last.applied_at


PRINT_FINGERPRINTS = """
import json, sys
from featurestore import FeatureStore
state = FeatureStore(sys.argv[1]).plan().new_state
print(json.dumps({
    "views": {n: r.fingerprint for n, r in state.views.items()},
    "services": {n: r.fingerprint for n, r in state.services.items()},
}))
"""


def _fingerprints_in_subprocess(repo: Path, hash_seed: str) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run(
        [sys.executable, "-c", PRINT_FINGERPRINTS, str(repo)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=repo.parent,
    )
    return json.loads(out.stdout)


def test_fingerprints_are_the_same_in_separate_processes(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo")
    first = _fingerprints_in_subprocess(repo, "1")
    second = _fingerprints_in_subprocess(repo, "2")
    assert first == second
    assert first["views"]["stats"] == FeatureStore(repo).plan().new_state.views["stats"].fingerprint


def test_fingerprints_are_the_same_in_two_clones(tmp_path: Path) -> None:
    origin = write_repo(tmp_path / "origin")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", str(origin)], check=True)
    subprocess.run([*git, "-C", str(origin), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(origin), "commit", "-q", "-m", "repo"], check=True)
    clones = [tmp_path / "one" / "clone", tmp_path / "two" / "deeper" / "other_name"]
    for clone in clones:
        clone.parent.mkdir(parents=True)
        subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True)
    a, b = (_fingerprints_in_subprocess(c, "0") for c in clones)
    assert a == b
    shutil.rmtree(origin)  # the clones stand alone
    assert _fingerprints_in_subprocess(clones[0], "3") == a
