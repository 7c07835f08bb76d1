"""One training DAG and one scoring DAG per pipeline file in dags/pipelines/."""

from pathlib import Path

from h2o_airflow.dag_factory import scoring_dag, training_dag
from h2o_tasks import config

PIPELINES = Path(__file__).parent / "pipelines"

for _cfg in config.load_dir(PIPELINES):
    _path = Path(_cfg.path)
    globals()[f"train_{_cfg.name}"] = training_dag(_path, _cfg)
    globals()[f"score_{_cfg.name}"] = scoring_dag(_path, _cfg)
