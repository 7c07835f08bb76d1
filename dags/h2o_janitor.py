"""Deletes abandoned ephemeral H2O clusters (expired, or whose DAG run is over) of every backend and
namespace that the pipeline files in pipelines/ use."""

from pathlib import Path

from h2o_airflow.dag_factory import janitor_dag

dag = janitor_dag(Path(__file__).parent / "pipelines")
