"""The HTML reports open offline in a real browser: headless Chromium (Debian's ``chromium``)
loads the page from a file, takes a screenshot, and the test checks that the tables and the
plots were drawn (their colors are on screen, the DOM holds the rows), not a blank page."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from class_repo import build
from PIL import Image

from featurestore import FeatureStore
from featurestore.reports import SkewReport, Thresholds, consistency_report, feature_skew, write
from featurestore.reports.svg import MATCHED_COLOR, REFERENCE_COLOR, SERVED_COLOR

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ALERT_ROW = "#fde2e2"  # html.py's background of a row at alert level


def _chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium (.ci/run does)")
    return binary


def _open(page: Path, tmp_path: Path, height: int) -> tuple[np.ndarray, str]:
    """Screenshot and DOM of ``page`` as headless Chromium renders it."""
    shot = tmp_path / f"{page.stem}.png"
    profile = tmp_path / f"profile-{page.stem}"
    common = [_chromium(), *FLAGS, f"--user-data-dir={profile}", f"--window-size=1280,{height}"]
    url = page.resolve().as_uri()
    subprocess.run(
        [*common, f"--screenshot={shot}", url], check=True, capture_output=True, timeout=120
    )
    dom = subprocess.run(
        [*common, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    return np.asarray(Image.open(shot).convert("RGB")), dom


def _pixels(image: np.ndarray, color: str) -> int:
    rgb = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
    return int(np.all(np.abs(image.astype(int) - rgb) <= 2, axis=2).sum())


def _self_contained(html: str) -> None:
    assert not re.search(r"\b(src|href)\s*=", html), "the page must fetch nothing"
    assert "<script" not in html
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) <= {"http://www.w3.org/2000/svg"}


def test_skew_page_shows_its_table_and_plots(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    thresholds = Thresholds.from_config()
    features = (
        feature_skew("tx:amount", "tx__amount", pa.array(rng.normal(size=5000)),
                     pa.array(rng.normal(1.0, size=5000)), thresholds),
        feature_skew("user:country", "user__country", pa.array(rng.choice(["DE", "FR"], 5000)),
                     pa.array(rng.choice(["DE", "FR"], 5000)), thresholds),
    )  # fmt: skip
    report = SkewReport(
        "training set t.parquet", "served traffic", 5000, 5000, features, (), thresholds
    )
    page = write(report, tmp_path / "skew.html")
    html = page.read_text()
    _self_contained(html)
    image, dom = _open(page, tmp_path, 1400)
    assert image.std() > 10  # not a blank page
    assert "tx:amount" in dom and "user:country" in dom and dom.count("<svg") == 2
    assert _pixels(image, REFERENCE_COLOR) > 2000 and _pixels(image, SERVED_COLOR) > 2000
    assert _pixels(image, ALERT_ROW) > 5000  # the shifted feature's row, colored alert
    top = image[: image.shape[0] // 4]
    assert (top.sum(axis=2) < 150).sum() > 1000  # dark text: the title and the table


def test_consistency_page_shows_its_tables_and_classes_over_time(tmp_path: Path) -> None:
    repo = build(tmp_path)
    report = consistency_report(FeatureStore(repo))
    page = write(report, tmp_path / "consistency.html")
    _self_contained(page.read_text())
    image, dom = _open(page, tmp_path, 1800)
    assert image.std() > 10
    assert "stale-online" in dom and "stats:x" in dom and "<svg" in dom
    assert _pixels(image, MATCHED_COLOR) > 2000  # the per-hour bars, matched part
    assert _pixels(image, ALERT_ROW) > 5000
