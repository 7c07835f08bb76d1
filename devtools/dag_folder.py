"""A DAG folder of one's own for a local Airflow: the shipped DAG files plus pipeline variants."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "dags" / "pipelines" / "arrival_delay.yaml"
PIPELINE_DAG_FILE = ROOT / "dags" / "pipelines" / "arrival_delay.py"


def example() -> dict[str, Any]:
    """The example pipeline file as plain data."""
    return yaml.safe_load(EXAMPLE.read_text())


def variant(**changes: Any) -> dict[str, Any]:
    """The example with sections replaced (a dict value updates a section, anything else replaces it)."""
    raw = example()
    for section, values in changes.items():
        if isinstance(values, dict) and isinstance(raw.get(section), dict):
            raw[section] = {**raw[section], **values}
        else:
            raw[section] = values
    return raw


def make(dags: Path, *, janitor: bool = True) -> Path:
    """An empty DAG folder (``pipelines/`` inside), with the janitor DAG file unless told otherwise."""
    (dags / "pipelines").mkdir(parents=True, exist_ok=True)
    if janitor:
        shutil.copy(ROOT / "dags" / "h2o_janitor.py", dags / "h2o_janitor.py")
    return dags


def write_pipeline(dags: Path, stem: str, raw: dict[str, Any]) -> Path:
    """``pipelines/<stem>.yaml`` and its DAG file ``pipelines/<stem>.py``; returns the YAML's path."""
    path = dags / "pipelines" / f"{stem}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    shutil.copy(PIPELINE_DAG_FILE, path.with_suffix(".py"))
    return path
