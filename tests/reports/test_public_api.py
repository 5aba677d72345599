"""featurestore.reports: its public names are what __all__ says, and importing it is cheap."""

from __future__ import annotations

import subprocess
import sys

from featurestore import reports


def test_all_names_resolve_and_public_classes_are_exported() -> None:
    for name in reports.__all__:
        assert getattr(reports, name) is not None, name
    public = {
        name
        for name, value in vars(reports).items()
        if not name.startswith("_") and isinstance(value, type)
    }
    assert public <= set(reports.__all__), public - set(reports.__all__)


def test_import_does_not_load_heavy_libraries() -> None:
    code = (
        "import sys, featurestore.reports; "
        "heavy = [m for m in ('pandas', 'pyarrow', 'numpy', 'scipy', 'duckdb') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
