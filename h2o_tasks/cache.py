"""The machine-wide cache of derived files (seed data, the compiled scorer launcher), outside the repository."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$H2O_AIRFLOW_CACHE``, else ``~/.cache/h2o-airflow``."""
    return Path(os.environ.get("H2O_AIRFLOW_CACHE") or Path.home() / ".cache" / "h2o-airflow")
