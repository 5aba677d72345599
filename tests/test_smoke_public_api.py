"""The public API is what __all__ says, and importing it is cheap."""

import subprocess
import sys

import featurestore


def test_all_names_resolve() -> None:
    for name in featurestore.__all__:
        assert getattr(featurestore, name) is not None, name


def test_public_classes_are_exported() -> None:
    public = {
        name
        for name, value in vars(featurestore).items()
        if not name.startswith("_") and isinstance(value, type)
    }
    assert public <= set(featurestore.__all__), public - set(featurestore.__all__)


def test_import_does_not_load_heavy_libraries() -> None:
    code = (
        "import sys, featurestore; "
        "heavy = [m for m in ('pandas', 'pyarrow', 'duckdb', 'lightgbm', 'redis') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
