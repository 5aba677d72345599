"""Parity measured in production: consistency, skew and model-performance reports.

::

    from featurestore import FeatureStore, reports

    store = FeatureStore("feature_repo")
    consistency = reports.consistency_report(store, reports.Window(since=...))
    skew = reports.skew_report(store.config, "train.parquet")
    performance = reports.performance_report(store.config, "labels.parquet",
                                             model="artifacts/fraud_v1")
    reports.write(skew, "skew.html")          # or .json
    consistency.level                          # Level.OK / WARN / ALERT

Each returns a typed result the CLI renders (``featurestore consistency-report``,
``skew-report``, ``performance-report``): a terminal table, JSON, one self-contained HTML
page. Thresholds and exit statuses: ``reports/thresholds.py``. The consistency classes'
decision table: ``reports/classes.py``.
"""

from featurestore.reports.classes import CLASSES, FeatureKind
from featurestore.reports.consistency import ConsistencyReport, ReplayGroup, consistency_report
from featurestore.reports.feature_consistency import ClassSummary, FeatureConsistency, HourBucket
from featurestore.reports.feature_skew import FeatureSkew, feature_skew
from featurestore.reports.output import write
from featurestore.reports.performance import PerformanceReport, Slice, performance_report
from featurestore.reports.served import Window
from featurestore.reports.skew import SchemaFinding, SkewReport, skew_report
from featurestore.reports.thresholds import (
    DEFAULTS,
    EXIT_ALERT,
    EXIT_OK,
    EXIT_WARN,
    Level,
    Thresholds,
    exit_status,
)

__all__ = [
    "CLASSES",
    "DEFAULTS",
    "EXIT_ALERT",
    "EXIT_OK",
    "EXIT_WARN",
    "ClassSummary",
    "ConsistencyReport",
    "FeatureConsistency",
    "FeatureKind",
    "FeatureSkew",
    "HourBucket",
    "Level",
    "PerformanceReport",
    "ReplayGroup",
    "SchemaFinding",
    "SkewReport",
    "Slice",
    "Thresholds",
    "Window",
    "consistency_report",
    "exit_status",
    "feature_skew",
    "performance_report",
    "skew_report",
    "write",
]
