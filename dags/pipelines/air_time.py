"""Airflow DAGs of the pipeline file next to this one (same name, .yaml): training and scoring.

Copy this file unchanged next to each new pipeline YAML. One DAG file per pipeline keeps a
bad pipeline file's import error to itself; the other pipelines' DAGs still load.
"""

from h2o_airflow.dag_factory import pipeline_dags

globals().update(pipeline_dags(__file__))
