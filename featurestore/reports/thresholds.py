"""The reports' thresholds: every name, its default and what crossing it means, decided here.

``featurestore.yaml`` overrides any of them (``reports: {thresholds: {psi_alert: 0.3}}``);
an unknown name is a ``ConfigError`` naming the closest one. Each metric has a warning and
an alert level; a report's exit status follows the worst level reached (``Level``).

=======================  =======  ============================================================
name                     default  crossed when
=======================  =======  ============================================================
``psi_warn``             0.1      a feature's population stability index is at least this
``psi_alert``            0.25
``js_warn``              0.15     the Jensen-Shannon distance (base 2, 0..1) of the same bins
``js_alert``             0.25     (for small shifts JS ~ sqrt(PSI / 5.5): PSI 0.1 ~ JS 0.13,
                                  PSI 0.25 ~ JS 0.21, so PSI decides small shifts, and JS,
                                  bounded and free of PSI's epsilon, large ones)
``null_rate_warn``       0.02     the null share moved by at least this (absolute: 0.05 = 5
``null_rate_alert``      0.05     percentage points)
``unseen_warn``          0.01     this share of served (non-null) values are categories the
``unseen_alert``         0.05     reference never holds
``match_rate_warn``      0.999    consistency: a feature's exact-match rate is below this
``match_rate_alert``     0.99
``auc_drop_warn``        0.02     performance: validation AUC minus the served AUC is at
``auc_drop_alert``       0.05     least this
``log_loss_rise_warn``   0.1      performance: the served log loss exceeds the validation log
``log_loss_rise_alert``  0.25     loss by at least this fraction of it
``min_rows``             100      fewer rows than this (served values of a feature; labeled
                                  predictions of a day or overall) are reported, not judged
=======================  =======  ============================================================

Skew alerts are decided on effect sizes (PSI, JS, null-rate shift, unseen categories), never
on the KS p-value: with thousands of rows any difference is "significant". With the defaults,
two 10,000-row samples of one distribution alert on no feature in practice (proven over many
seeds in tests/reports/test_skew_power.py). Two classes of consistency mismatch are always
alerts whatever the thresholds: ``online-newer`` (leakage) and ``value-differs`` (a bug).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from featurestore.errors import ConfigError


class Level(enum.IntEnum):
    """How bad a finding is; a report's level is its worst finding's."""

    OK = 0
    WARN = 1
    ALERT = 2

    @property
    def label(self) -> str:
        return self.name.lower()


EXIT_OK = 0
EXIT_ALERT = 3
EXIT_WARN = 4
"""Exit statuses of the report commands: 0 nothing crossed, 3 an alert threshold crossed (or
an always-alert finding), 4 only warning thresholds crossed. 1 is a bad input or another
error (one line on stderr), 2 a usage error (click's)."""


def exit_status(level: Level) -> int:
    """The report command's exit status for a report whose worst level is ``level``."""
    return {Level.OK: EXIT_OK, Level.WARN: EXIT_WARN, Level.ALERT: EXIT_ALERT}[level]


@dataclass(frozen=True)
class Metric:
    """A metric judged by a warning and an alert threshold; ``lower_is_worse`` for rates
    that should stay high (the exact-match rate)."""

    name: str
    warn: float
    alert: float
    lower_is_worse: bool = False


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("psi", 0.1, 0.25),
        Metric("js", 0.15, 0.25),
        Metric("null_rate", 0.02, 0.05),
        Metric("unseen", 0.01, 0.05),
        Metric("match_rate", 0.999, 0.99, lower_is_worse=True),
        Metric("auc_drop", 0.02, 0.05),
        Metric("log_loss_rise", 0.1, 0.25),
    )
}
MIN_ROWS = "min_rows"
DEFAULTS: dict[str, float] = {
    **{
        f"{m.name}_{level}": getattr(m, level)
        for m in METRICS.values()
        for level in ("warn", "alert")
    },
    MIN_ROWS: 100.0,
}
"""Every threshold name and its default."""


def check_names(names: Mapping[str, float], where: str) -> None:
    """``ConfigError`` for a name that is not a threshold (naming the closest), or for a
    warning level beyond its alert level."""
    from featurestore.definitions import suggest

    for name in names:
        if name not in DEFAULTS:
            raise ConfigError(
                f"{where}: unknown threshold {name!r}{suggest(name, list(DEFAULTS))}; "
                f"valid thresholds: {', '.join(DEFAULTS)}"
            )
    merged = {**DEFAULTS, **names}
    for metric in METRICS.values():
        warn, alert = merged[f"{metric.name}_warn"], merged[f"{metric.name}_alert"]
        if (warn < alert) if metric.lower_is_worse else (warn > alert):
            side = "at least" if metric.lower_is_worse else "at most"
            raise ConfigError(
                f"{where}: {metric.name}_warn ({warn:g}) must be {side} {metric.name}_alert "
                f"({alert:g}): a warning comes before an alert"
            )
    if merged[MIN_ROWS] < 1:
        raise ConfigError(f"{where}: min_rows must be at least 1, got {merged[MIN_ROWS]:g}")


@dataclass(frozen=True)
class Thresholds:
    """The thresholds in force: the defaults overridden by ``reports.thresholds``."""

    values: Mapping[str, float]

    @classmethod
    def from_config(cls, overrides: Mapping[str, float] | None = None) -> Thresholds:
        overrides = dict(overrides or {})
        check_names(overrides, "reports.thresholds")
        return cls({**DEFAULTS, **overrides})

    def __getitem__(self, name: str) -> float:
        return self.values[name]

    @property
    def min_rows(self) -> int:
        return int(self.values[MIN_ROWS])

    def level(self, metric: str, value: float | None) -> Level:
        """The level ``value`` of ``metric`` reaches (OK for None or NaN: not measured)."""
        m = METRICS[metric]
        if value is None or value != value:
            return Level.OK
        warn, alert = self.values[f"{metric}_warn"], self.values[f"{metric}_alert"]
        if m.lower_is_worse:
            return Level.ALERT if value < alert else Level.WARN if value < warn else Level.OK
        return Level.ALERT if value >= alert else Level.WARN if value >= warn else Level.OK

    def bound(self, metric: str, level: Level) -> float:
        """The threshold of ``metric`` at ``level`` (for messages)."""
        return self.values[f"{metric}_{level.label}"]
