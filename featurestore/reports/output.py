"""Writing a report: JSON for machines or the self-contained HTML page, chosen by suffix.

``check_out(path)`` refuses, before any work, a path that is neither ``.json`` nor
``.html``/``.htm`` or that cannot be written (``outputs.check_writable``). JSON follows the
project's one rule for non-finite floats: NaN and infinities are the strings ``"NaN"``,
``"Infinity"``, ``"-Infinity"``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestore.errors import OutputError
from featurestore.outputs import check_writable

if TYPE_CHECKING:
    from featurestore.reports.html import Report

SUFFIXES = (".json", ".html", ".htm")


def check_out(path: str | os.PathLike[str]) -> Path:
    """``path`` when a report can be written there (by its suffix), else ``OutputError``."""
    target = Path(path)
    if target.suffix.lower() not in SUFFIXES:
        raise OutputError(
            f"cannot tell which format to write {target} in: name it .json (for machines) "
            "or .html (the page with plots)"
        )
    return check_writable(target, "report")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def to_json_text(report: Report) -> str:
    """The report's JSON (``report.to_json()``, non-finite floats as strings)."""
    return json.dumps(_finite(report.to_json()), indent=2, default=str, allow_nan=False)


def write(report: Report, path: str | os.PathLike[str]) -> Path:
    """Write ``report`` to ``path`` as JSON or HTML (by suffix); the written path."""
    from featurestore.reports.html import render

    target = check_out(path)
    text = to_json_text(report) if target.suffix.lower() == ".json" else render(report)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write the report to {target}: {exc}") from None
    return target
