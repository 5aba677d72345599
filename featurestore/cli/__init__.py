"""The ``featurestore`` command: thin commands over the library.

Heavy libraries are imported inside commands so ``featurestore --help`` stays instant.
Domain errors print as one clear line and exit with status 1, never a traceback.
"""

from featurestore.cli import materialize, models, push, repo, reports, serving  # noqa: F401  (registers commands)
from featurestore.cli.base import main

__all__ = ["main"]
