"""Shared fixtures. Servers are real processes started by the fixtures and stopped by pid."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (str(ROOT), str(ROOT / "plugins")):
    if p not in sys.path:
        sys.path.insert(0, p)

pytest_plugins = [
    "tests.fixtures.interrupts",
    "tests.fixtures.s3",
    "tests.fixtures.hive",
    "tests.fixtures.h2o",
    "tests.fixtures.airflow",
    "tests.fixtures.airflow_deployment",
    "tests.fixtures.k8s",
    "tests.fixtures.k8s_bed",
    "tests.fixtures.xcom",
]
