"""``featurestore models describe``: what a model was trained on and whether it still binds."""

from __future__ import annotations

from pathlib import Path

import pytest
from model_repo import RISK_FIELDS, Trained, write_repo

from featurestore import FeatureStore, ModelError, models
from tests.cli import Result, run_cli


def describe(model: Path, repo: Path, *flags: str) -> Result:
    return run_cli("models", "describe", model, "--repo", repo, *flags)


def test_describe_prints_what_the_model_was_trained_on(trained: Trained) -> None:
    result = describe(trained.model, trained.repo, "--check")
    assert result.returncode == 0, result.stderr
    meta = trained.artifact.metadata
    out = result.stdout
    assert f"feature service svc (version 1, fingerprint {meta.service_fingerprint[:12]})" in out
    assert "view risk version 1" in out and "score, country, n_tx" in out
    assert "1 risk:country (String, 5 categories)" in out
    assert f"split at {meta.split['time']}" in out
    assert f"validation AUC {meta.metrics['valid_auc']:.4f}" in out
    assert f"fingerprint matches the registry ({meta.service_fingerprint[:12]})" in out


CHANGES = {
    "schema": (
        {"risk_fields": [f for f in RISK_FIELDS if f[0] != "n_tx"]},
        "schema: removed field n_tx",
    ),
    "ttl": ({"risk_ttl": "timedelta(days=1)"}, "ttl: 3d -> 1d"),
    "source": (
        {"risk_path": "data/risk_copy.parquet"},
        "source: path 'data/risk.parquet' -> 'data/risk_copy.parquet'",
    ),
}


@pytest.mark.parametrize("kind", CHANGES)
def test_a_changed_view_is_named_with_what_changed(
    trained: Trained, tmp_path: Path, kind: str
) -> None:
    copy = trained.copy(tmp_path)
    overrides, detail = CHANGES[kind]
    write_repo(copy.repo, **overrides)
    FeatureStore(copy.repo).apply()

    result = describe(copy.model, copy.repo)
    assert result.returncode == 0, result.stderr
    report = result.stdout[result.stdout.index("MISMATCH") :]
    assert report.startswith("MISMATCH: feature service svc fingerprint")
    assert "risk: changed (trained on version 1, registry has version 2, applied" in report
    assert detail in report
    assert "registry version 1: fingerprint" in report
    assert "registry version 2: fingerprint" in report
    assert "flags" not in report  # only the changed view is named

    # --check turns the mismatch into an exit status a CI gate can act on
    assert describe(copy.model, copy.repo, "--check").returncode == 3
    # and the same binding makes batch prediction refuse the model
    with pytest.raises(ModelError, match=r"risk: changed.*retrain"):
        models.predict(copy.model, copy.repo, copy.entities)


def test_a_description_change_keeps_the_binding(trained: Trained, tmp_path: Path) -> None:
    copy = trained.copy(tmp_path)
    write_repo(copy.repo, risk_description="Reworded: the values are the same.")
    assert not FeatureStore(copy.repo).apply().is_empty  # the registry did record a change
    result = describe(copy.model, copy.repo)
    assert result.returncode == 0, result.stderr
    assert "fingerprint matches the registry" in result.stdout
    assert "MISMATCH" not in result.stdout


def test_views_added_or_dropped_from_the_service_are_named(
    trained: Trained, tmp_path: Path
) -> None:
    copy = trained.copy(tmp_path)
    write_repo(copy.repo, service_features="risk")
    FeatureStore(copy.repo).apply()
    binding = models.describe(copy.model, copy.repo).binding
    assert not binding.matches
    assert [(c.view, c.change) for c in binding.changes] == [("flags", "removed from the service")]

    write_repo(copy.repo, service_features='risk[["score", "country"]], flags')
    FeatureStore(copy.repo).apply()
    binding = models.describe(copy.model, copy.repo).binding
    assert [(c.view, c.details) for c in binding.changes] == [
        ("risk", ("service no longer reads n_tx",))
    ]


def test_an_unrelated_field_added_to_a_view_outside_the_projection_keeps_the_binding(
    trained: Trained, tmp_path: Path
) -> None:
    copy = trained.copy(tmp_path)
    # The service reads risk's score, country and n_tx by name; a new field is not read.
    write_repo(copy.repo, service_features='risk[["score", "country", "n_tx"]], flags')
    FeatureStore(copy.repo).apply()
    assert models.describe(copy.model, copy.repo).binding.matches
    write_repo(
        copy.repo,
        service_features='risk[["score", "country", "n_tx"]], flags',
        risk_fields=[*RISK_FIELDS, ("segment", "String")],
    )
    FeatureStore(copy.repo).apply()
    description = models.describe(copy.model, copy.repo)
    assert description.binding.matches
    assert "risk: version 1 -> 2, but the features the model reads are unchanged" in "\n".join(
        description.binding_lines()
    )
