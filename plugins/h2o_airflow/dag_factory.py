"""Build the training and scoring DAGs of a pipeline file.

Parse time stays cheap: only the YAML is read and validated (no H2O, no connection, no
database); operators load everything else when they run.

Each pipeline file ``dags/pipelines/NAME.yaml`` has a DAG file of its own next to it,
``NAME.py``, that calls :func:`pipeline_dags`: Airflow records import errors per DAG file, so a
bad pipeline file shows its own error (naming the file and the field) while every other
pipeline's DAGs still load.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, CronDataIntervalTimetable, Param

from h2o_airflow import assets
from h2o_airflow.notify import OnTaskFailure
from h2o_tasks import config as pipeline_config
from h2o_tasks.config import ALGORITHMS, PipelineConfig

DEFAULT_ARGS = {"owner": "airflow", "retries": 1, "retry_delay": timedelta(seconds=30)}
# the teardown outlasts a short API server or metadata outage before the cluster is left to the janitor
TEARDOWN_RETRIES = 4


def _params(cfg: PipelineConfig, training: bool) -> dict[str, Param]:
    params = {
        "replicas": Param(cfg.cluster.replicas, type="integer", minimum=1, maximum=64,
                          description="H2O nodes in this run's cluster"),
        "memory": Param(cfg.cluster.memory, type="string", pattern=r"^[0-9]+[mMgG]$",
                        description="JVM heap per node, e.g. 2g"),
    }
    if training:
        params["window_days"] = Param(cfg.source.training_window_days, type="integer", minimum=1, maximum=3660,
                                      description="days of data before the interval's end to train on")
        # nullable, or the UI's trigger and backfill forms count the empty default as a missing
        # required value and keep their buttons disabled
        params["algorithm"] = Param(None, type=["null", "string"], enum=[None, *ALGORITHMS],
                                    description="train only this algorithm (empty: as configured)")
    return params


def _dag(dag_id: str, cfg: PipelineConfig, schedule: Any, training: bool, doc: str) -> DAG:
    start = datetime.combine(cfg.schedule.start_date, datetime.min.time(), tzinfo=UTC)
    end = (datetime.combine(cfg.schedule.end_date, datetime.min.time(), tzinfo=UTC)
           if cfg.schedule.end_date else None)
    timetable: Any = schedule
    if isinstance(schedule, str) and cfg.schedule.data_intervals:
        # a run covers [tick, next tick) and starts once it is over (Airflow's default cron
        # timetable gives a zero-length interval: only the logical day)
        timetable = CronDataIntervalTimetable(schedule, timezone="UTC")
    return DAG(
        dag_id=dag_id, schedule=timetable, start_date=start, end_date=end, catchup=False,
        max_active_runs=cfg.schedule.max_active_runs,
        # a task still running when its cluster expires cannot succeed any more (the janitor deletes
        # the cluster): the cluster's time-to-live bounds every task, a hung H2O call included
        default_args={**DEFAULT_ARGS, "owner": cfg.owner, "execution_timeout": timedelta(minutes=cfg.cluster.ttl_minutes),
                      **({"on_failure_callback": OnTaskFailure(cfg.name, cfg.notify.on_failure)}
                         if cfg.notify.on_failure else {})},
        params=_params(cfg, training), tags=["h2o", cfg.name], doc_md=doc,
        description=cfg.description[:200] or None,
    )


def training_dag(path: str | Path, cfg: PipelineConfig | None = None) -> DAG:
    """create cluster -> import window -> train -> export + promote [-> score the last day] -> delete
    cluster (teardown)."""
    from h2o_airflow.operators.cluster import H2OCreateClusterOperator, H2ODeleteClusterOperator
    from h2o_airflow.operators.model import H2OBatchScoreOperator, H2OExportModelOperator, H2OImportOperator, H2OTrainOperator

    cfg = cfg or pipeline_config.load(path)
    common: dict[str, Any] = {"pipeline": str(path), "kubernetes_conn_id": cfg.cluster.kubernetes_conn_id}
    with _dag(f"h2o_train__{cfg.name}", cfg, cfg.schedule.training, True,
              f"Train `{cfg.name}` on the {cfg.source.training_window_days} days before each interval's end, "
              f"export MOJO/POJO and promote if it passes the quality gate"
              f"{', then score the last day of the interval in the same cluster' if cfg.scoring.after_training else ''}"
              f". Pipeline file: `{path}`.") as dag:
        create = H2OCreateClusterOperator(task_id="create_cluster", purpose="train", **common)
        imported = H2OImportOperator(task_id="import_data", purpose="train", inlets=assets.source(cfg), **common)
        trained = H2OTrainOperator(task_id="train", **common)
        exported = H2OExportModelOperator(task_id="export_and_promote", outlets=[assets.champion_alias(cfg)], **common)
        delete = H2ODeleteClusterOperator(task_id="delete_cluster", retries=TEARDOWN_RETRIES, **common)
        create >> imported >> trained >> exported
        ends = [exported]
        if cfg.scoring.after_training:
            # the new champion (or the one the gate kept) scores the interval's last day in this
            # cluster: one cluster, one run. The day is imported once training succeeded: nothing
            # runs on a cloud that lost a node during training (the teardown goes at once)
            imported_day = H2OImportOperator(task_id="import_scoring_data", purpose="score", last_day_only=True,
                                             **common)
            scored = H2OBatchScoreOperator(task_id="score", engine="cluster", import_task_id="import_scoring_data",
                                           export_task_id="export_and_promote", last_day_only=True,
                                           outlets=[assets.predictions(cfg)], **common)
            trained >> imported_day
            [exported, imported_day] >> scored
            ends = [scored, imported_day]  # the cluster goes once nothing runs in it any more
        ends >> delete.as_teardown(setups=create)
    return dag


def scoring_dag(path: str | Path, cfg: PipelineConfig | None = None) -> DAG:
    """Score each interval's partition with the champion model, in a cluster or offline."""
    from h2o_airflow.operators.cluster import H2OCreateClusterOperator, H2ODeleteClusterOperator
    from h2o_airflow.operators.model import H2OBatchScoreOperator, H2OImportOperator

    cfg = cfg or pipeline_config.load(path)
    common: dict[str, Any] = {"pipeline": str(path), "kubernetes_conn_id": cfg.cluster.kubernetes_conn_id}
    lineage: dict[str, Any] = {"inlets": [*assets.source(cfg), assets.champion(cfg)],
                               "outlets": [assets.predictions(cfg)]}
    with _dag(f"h2o_score__{cfg.name}", cfg, assets.scoring_schedule(cfg), False,
              f"Score each day of `{cfg.name}` with the champion model ({cfg.scoring.engine} engine) "
              f"and commit predictions atomically. Pipeline file: `{path}`.") as dag:
        if cfg.scoring.engine in ("offline", "hive"):  # no cluster: the MOJO in the task, or in HiveServer2
            H2OBatchScoreOperator(task_id="score", engine=cfg.scoring.engine, **lineage, **common)
        else:
            create = H2OCreateClusterOperator(task_id="create_cluster", purpose="score", **common)
            imported = H2OImportOperator(task_id="import_data", purpose="score", **common)
            scored = H2OBatchScoreOperator(task_id="score", engine="cluster", **lineage, **common)
            delete = H2ODeleteClusterOperator(task_id="delete_cluster", retries=TEARDOWN_RETRIES, **common)
            create >> imported >> scored >> delete.as_teardown(setups=create)
    return dag


def pipeline_dags(dag_file: str | Path) -> dict[str, DAG]:
    """The training and scoring DAGs of the pipeline file with the same stem as ``dag_file``.

    A file refused by the configuration checks (or sharing an output with an earlier file of
    the folder) raises :class:`~h2o_tasks.errors.ConfigError` naming the file and the field,
    which Airflow shows as this DAG file's import error.
    """
    path = Path(dag_file).with_suffix(".yaml")
    cfg = pipeline_config.load_checked(path)
    return {f"train_{cfg.name}": training_dag(path, cfg), f"score_{cfg.name}": scoring_dag(path, cfg)}


def loadable_pipelines(pipelines_dir: str | Path | None) -> list[PipelineConfig]:
    """The pipeline files in ``pipelines_dir`` that load; the others are left out (each shows its own
    import error, and the janitor's memory covers the clusters they made)."""
    configs = []
    for path in sorted(Path(pipelines_dir).glob("*.yaml")) if pipelines_dir else []:
        try:
            configs.append(pipeline_config.load(path))
        except pipeline_config.ConfigError:
            continue
    return configs


def janitor_targets(configs: list[PipelineConfig]) -> list[tuple[str, str, str]]:
    """``(backend, namespace, kubernetes_conn_id)`` of every cluster these pipelines can create
    (``local`` always)."""
    targets = {("local", "", "")}
    for cfg in configs:
        if cfg.cluster.backend == "kubernetes":
            targets.add(("kubernetes", cfg.cluster.namespace, cfg.cluster.kubernetes_conn_id))
        else:
            targets.add((cfg.cluster.backend, "", ""))
    return sorted(targets)


def janitor_task_id(backend: str, namespace: str, conn_id: str) -> str:
    """``delete_abandoned_<backend>[_<namespace>][__<connection>]`` (the connection when not the default).

    A function of its target alone, so that adding a pipeline never renames another target's task
    (its history would be lost): namespaces and connection ids are made of characters a task id may
    hold, and a namespace holds no ``_``, so two targets never share an id. Beyond Airflow's 250
    characters the id ends in a hash of the target."""
    from h2o_airflow.backends import DEFAULT_KUBERNETES_CONN_ID

    task_id = f"delete_abandoned_{backend}" + (f"_{namespace}" if namespace else "")
    if conn_id and conn_id != DEFAULT_KUBERNETES_CONN_ID:
        task_id += f"__{conn_id}"
    if len(task_id) > 250:
        task_id = task_id[:241] + "_" + hashlib.sha256(f"{backend}/{namespace}/{conn_id}".encode()).hexdigest()[:8]
    return task_id


def janitor_dag(pipelines_dir: str | Path | None = None, schedule: str | None = "*/30 * * * *") -> DAG:
    """Delete abandoned clusters (expired, or whose DAG run is over) of every backend and namespace the
    pipeline files in ``pipelines_dir`` use."""
    from h2o_airflow.operators.janitor import (
        H2OJanitorOperator,
        H2ORememberedJanitorOperator,
        H2OStagingSweepOperator,
    )

    with DAG(dag_id="h2o_janitor", schedule=schedule, start_date=datetime(2024, 1, 1, tzinfo=UTC),
             catchup=False, max_active_runs=1, default_args=DEFAULT_ARGS, tags=["h2o", "maintenance"],
             doc_md="Deletes ephemeral H2O clusters that are expired or whose DAG run is over, for every backend "
                    "and namespace the pipeline files use.") as dag:
        configs = loadable_pipelines(pipelines_dir)
        targets = janitor_targets(configs)
        for backend, namespace, conn_id in targets:
            H2OJanitorOperator(task_id=janitor_task_id(backend, namespace, conn_id), backend=backend,
                               **({"namespace": namespace} if namespace else {}),
                               **({"kubernetes_conn_id": conn_id} if conn_id else {}))
        H2ORememberedJanitorOperator(task_id="delete_abandoned_remembered", current=[list(t) for t in targets])
        H2OStagingSweepOperator(task_id="sweep_hive_staging", older_than_minutes=longest_run_minutes(configs))
    return dag


def longest_run_minutes(configs: list[PipelineConfig]) -> int:
    """The longest any run may last (``cluster.max_run_minutes``) over these pipelines, at least its default."""
    return max([pipeline_config.ClusterConfig().max_run_minutes, *(c.cluster.max_run_minutes for c in configs)])
