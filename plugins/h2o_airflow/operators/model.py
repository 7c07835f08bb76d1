"""Import, train, export + promote, and batch-score operators.

Each one calls the engine (``h2o_tasks``) and pushes small JSON to XCom; frames and models
stay in the run's cluster between tasks, like pods outlive the task that applied them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowSkipException

from h2o_airflow import assets
from h2o_airflow.hooks.h2o import H2OHook
from h2o_airflow.links import XCOM_REPORT_KEY, H2OModelReportLink
from h2o_airflow.operators.base import H2OPipelineOperator, fail_fast
from h2o_tasks.errors import H2OTasksError


def hive_staging_root() -> Path:
    """Where HiveServer2 stages query results for the cluster (a path both can read)."""
    return Path(os.environ.get("H2O_AIRFLOW_HIVE_STAGING_DIR") or Path(tempfile.gettempdir()) / "h2o-airflow-staging")


class _ClusterTaskMixin:
    """Shared helpers of the operators that work inside the run's cluster."""

    hiveserver2_conn_id: str

    def hive_conn(self) -> Any:
        from airflow.providers.apache.hive.hooks.hive import HiveServer2Hook

        return HiveServer2Hook(hiveserver2_conn_id=self.hiveserver2_conn_id).get_conn()

    def import_into(self, h2o: Any, hook: H2OHook, cfg: Any, context: Any, purpose: str | None = None) -> dict:
        """The import this run's tasks need: the prepared training window, or one frame per scoring day
        (or hour) (also what a task redoes on a rebuilt cluster)."""
        from h2o_tasks import ingest

        purpose = purpose or getattr(self, "purpose", "train")
        kw = {"s3": hook.fresh_s3_settings(self.s3_refresh_margin), "hive_conn": self.hive_conn,
              "staging_dir": hive_staging_root() / hook.cluster.name / purpose}
        if purpose == "score":  # one frame per period: each is committed as its own partition
            return ingest.import_periods(h2o, cfg, self.periods(context, cfg), **kw).to_dict()
        return ingest.import_training(h2o, cfg, *self.interval(context), **kw)  # the window follows the interval


class H2OImportOperator(_ClusterTaskMixin, H2OPipelineOperator):
    """
    Import the interval's data into the cluster and check it against the pipeline's contract.

    S3 partitions up to ``source.s3.client_fetch_max_bytes`` are downloaded by the task and
    uploaded as one file, bigger inputs read by the H2O nodes themselves; a small Hive result
    is fetched and uploaded, a big one staged as Parquet by HiveServer2 and imported by the
    cluster. For training, the label is derived and the
    input checked (columns, types, target, emptiness, at least two classes).

    :param purpose: ``train`` (the training window) or ``score`` (the interval's days).
    :param hiveserver2_conn_id: connection to HiveServer2 (for ``source.kind: hive``).
    """

    template_fields: Sequence[str] = (*H2OPipelineOperator.template_fields, "purpose")

    def __init__(self, *, purpose: str = "train", hiveserver2_conn_id: str = "hiveserver2_default",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.purpose = purpose
        self.hiveserver2_conn_id = hiveserver2_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        cfg = self.config(context)
        _, hook = self.attach(context)
        def job() -> dict[str, Any]:
            h2o = hook.get_conn()  # under the watch: connecting writes to the cloud (S3 credentials)
            return self.import_into(h2o, hook, cfg, context)

        try:
            out = self.watched(context, cfg, "import", job)
        except H2OTasksError as exc:
            raise fail_fast(exc) from exc
        self.log.info("Imported %s rows x %s columns from %s in %.1fs", out["rows"], out["columns"], out["source"],
                      out["seconds"])
        return out


class H2OTrainOperator(_ClusterTaskMixin, H2OPipelineOperator):
    """
    Train the configured algorithms (and AutoML if configured) with a fixed seed.

    On a cluster rebuilt after losing a node, the training window is imported again first.

    :param import_task_id: the task whose XCom names the prepared training frame.
    :param hiveserver2_conn_id: connection to HiveServer2, to import again from a Hive source.
    """

    def __init__(self, *, import_task_id: str = "import_data", hiveserver2_conn_id: str = "hiveserver2_default",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.import_task_id = import_task_id
        self.hiveserver2_conn_id = hiveserver2_conn_id

    def training_frame(self, h2o: Any, hook: H2OHook, cfg: Any, context: Any) -> Any:
        from h2o_tasks.cluster import rebuild

        imported = context["ti"].xcom_pull(task_ids=self.import_task_id)
        return rebuild.frame(h2o, imported["frame_id"],
                             lambda: self.import_into(h2o, hook, cfg, context, purpose="train"))

    def execute(self, context: Any) -> dict[str, Any]:
        from h2o_tasks import train

        cfg = self.config(context)
        _, hook = self.attach(context)

        def job() -> Any:
            h2o = hook.get_conn()
            return train.train(self.training_frame(h2o, hook, cfg, context), None, cfg, run_id=context["run_id"])

        try:
            result = self.watched(context, cfg, "training", job)
        except H2OTasksError as exc:
            raise fail_fast(exc) from exc
        out = result.to_dict()
        self.log.info("Best model %s: %s = %s", out.get("best_model_id"), cfg.training.metric, out.get("best_metric_value"))
        return out


class H2OExportModelOperator(H2OTrainOperator):
    """
    Export the best model (MOJO, POJO, genmodel jar, metadata, report) to the registry as a new,
    write-once version of this attempt, then gate it and promote it to champion by
    compare-and-swap (:func:`h2o_tasks.artifacts.export_and_promote`). On a cluster rebuilt after
    losing a node, the model is trained again first (same seed, same model ids).

    :param train_task_id: the task whose XCom names the best model.
    :param import_task_id: the task whose XCom holds the data lineage.
    """

    operator_extra_links = (H2OModelReportLink(),)

    def __init__(self, *, train_task_id: str = "train", import_task_id: str = "import_data", **kwargs: Any) -> None:
        super().__init__(import_task_id=import_task_id, **kwargs)
        self.train_task_id = train_task_id

    def execute(self, context: Any) -> dict[str, Any]:
        from h2o_tasks import artifacts, train
        from h2o_tasks.cluster import rebuild

        cfg = self.config(context)
        _, hook = self.attach(context)
        trained = context["ti"].xcom_pull(task_ids=self.train_task_id)
        imported = context["ti"].xcom_pull(task_ids=self.import_task_id)
        s3s = hook.fresh_s3_settings(self.s3_refresh_margin)
        client = s3s.client()

        def job() -> Any:
            h2o = hook.get_conn()
            model = rebuild.model(h2o, trained["best_model_id"], lambda: train.train(
                self.training_frame(h2o, hook, cfg, context), None, cfg, run_id=context["run_id"]))
            return artifacts.export_and_promote(
                h2o, model, cfg, client, run_id=context["run_id"],
                logical_date=context["logical_date"], interval=self.interval(context),
                try_number=context["ti"].try_number, lineage=imported, training=trained)

        try:
            outcome = self.watched(context, cfg, "export", job)
        except H2OTasksError as exc:
            raise fail_fast(exc) from exc
        out = outcome.to_dict()
        self.log.info("Exported %s; promoted=%s (%s)", out["uri"], out["promoted"], out["reason"])
        self._written = [out["uri"], *([assets.champion(cfg).uri] if out["promoted"] else [])]
        if out["promoted"]:  # the champion moved: its Asset gets an event (schedule.scoring: on_new_champion)
            day = (self.interval(context)[1] - timedelta(days=1)).isoformat()
            context["outlet_events"][assets.champion_alias(cfg)].add(assets.champion(cfg), extra={
                "version": out["version"], "pipeline": cfg.name, "day": day, "run_id": context["run_id"]})
        if not out["promoted"] and cfg.notify.on_gate_refused:
            from h2o_airflow.notify import gate_refused

            gate_refused(cfg.name, cfg.notify.on_gate_refused, out, context)
        if "index.html" in out.get("files", ()):
            page = f"{out['uri']}/index.html"
            context["ti"].xcom_push(key=XCOM_REPORT_KEY, value={"uri": page, "aws_conn_id": self.aws_conn_id})
        return {**out, "model_id": trained["best_model_id"]}

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Lineage for the OpenLineage provider: the version written, and the champion pointer when it moved
        (an alias outlet has no dataset of its own)."""
        from airflow.providers.openlineage.extractors import OperatorLineage

        return OperatorLineage(outputs=[assets.openlineage_dataset(u) for u in getattr(self, "_written", [])])


class H2OBatchScoreOperator(_ClusterTaskMixin, H2OPipelineOperator):
    """
    Score each day of the interval with the champion model and commit it as the partition
    ``scoring.output_uri/dt=YYYY-MM-DD/`` and, if configured, the Hive table's partition: each
    attempt writes a location of its own, then readers are switched to it in one step
    (:mod:`h2o_tasks.predictions`). A re-run of the interval replaces its output, whole.

    :param engine: ``cluster`` (distributed predict in the run's cluster) or ``offline``
        (the MOJO, no cluster at all).
    :param import_task_id: with ``engine="cluster"``, the task whose XCom names the frame.
    :param export_task_id: with ``engine="cluster"`` in a training DAG, the export task: when
        the model it exported is the champion, the cluster scores with that model as trained
        instead of importing its MOJO again. When the registry has no champion at all (no model,
        this run's included, has passed the quality gate yet) the task is skipped: the run's
        outcome is the gate's. Without it (the scoring DAG) a missing champion fails the task.
    :param hiveserver2_conn_id: connection to HiveServer2, for ``scoring.hive_table``.
    """

    template_fields: Sequence[str] = (*H2OPipelineOperator.template_fields, "engine")

    def __init__(self, *, engine: str = "cluster", import_task_id: str = "import_data",
                 export_task_id: str | None = None, hiveserver2_conn_id: str = "hiveserver2_default",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        self.import_task_id = import_task_id
        self.export_task_id = export_task_id
        self.hiveserver2_conn_id = hiveserver2_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        from h2o_tasks import scoring
        from h2o_tasks.intervals import Period

        cfg = self.config(context)
        start, end = self.interval(context)
        hive = self.hive_target(cfg)
        if self.export_task_id:
            self._skip_without_champion(context, cfg)
        try:
            if self.engine == "cluster":
                _, hook = self.attach(context)
                imported = context["ti"].xcom_pull(task_ids=self.import_task_id)
                exported = context["ti"].xcom_pull(task_ids=self.export_task_id) if self.export_task_id else None
                loaded = ({exported["version"]: (exported["model_id"], exported.get("model_sha256"))}
                          if exported and exported.get("model_id") else None)

                def job() -> Any:
                    h2o = hook.get_conn()
                    days = imported["frames"]
                    if any(h2o.get_frame(f["frame_id"]) is None for f in days):  # a rebuilt cluster
                        days = self.import_into(h2o, hook, cfg, context, purpose="score")["frames"]
                    frames = [(Period.parse(f.get("period") or f["day"]), h2o.get_frame(f["frame_id"])) for f in days]
                    return scoring.score_in_cluster(h2o, frames, cfg, hook.fresh_s3_settings(self.s3_refresh_margin).client(),
                                                    run_id=context["run_id"], loaded=loaded, hive=hive)

                result = self.watched(context, cfg, "scoring", job)
            elif self.engine == "hive":
                udf_jar = os.environ.get("H2O_AIRFLOW_HIVE_UDF_JAR")
                result = scoring.score_in_hive(cfg, self.s3_settings(), self.periods(context, cfg),
                                               run_id=context["run_id"], hive_conn=self.hive_conn,
                                               stage_root=hive_staging_root(), hive=hive,
                                               udf_jar=Path(udf_jar) if udf_jar else None)
            else:
                hook = H2OHook(aws_conn_id=self.aws_conn_id)
                result = scoring.score_offline(cfg, hook.fresh_s3_settings(self.s3_refresh_margin), start, end,
                                               run_id=context["run_id"], hive=hive, periods=self.periods(context, cfg))
        except H2OTasksError as exc:
            raise fail_fast(exc) from exc
        out = result.to_dict()
        self.log.info("Scored %s rows of %s day(s), committed under %s", out["rows_scored"], len(out["partitions"]),
                      out["output_uri"])
        return out

    def _skip_without_champion(self, context: Any, cfg: Any) -> None:
        """Skip this task when the registry has no champion: in a training DAG that is the gate's
        decision (nothing has passed it yet), not a failure of the run. Read from the registry, not
        from the export's XCom, so that a champion another run promoted meanwhile is used."""
        from h2o_tasks import registry

        try:
            pointer = registry.read_champion(self.s3_settings().client(), cfg.registry_uri)
        except H2OTasksError as exc:
            raise fail_fast(exc) from exc
        if pointer is not None:
            return
        exported = context["ti"].xcom_pull(task_ids=self.export_task_id) or {}
        why = f" (this run's model: {exported['reason']})" if exported.get("reason") else ""
        msg = (f"No model has passed the quality gate yet: {cfg.registry_uri} has no champion to score with{why}; "
               "skipping the scoring of this run")
        self.log.info(msg)
        raise AirflowSkipException(msg)

    def hive_target(self, cfg: Any) -> Any:
        """Where the predictions go in Hive (None without ``scoring.hive_table``)."""
        from h2o_tasks.intervals import partition_columns
        from h2o_tasks.predictions import HiveTarget

        if not cfg.scoring.hive_table:
            return None
        location = cfg.scoring.hive_location or str(hive_staging_root() / "tables" / cfg.scoring.hive_table)
        return HiveTarget(cfg.scoring.hive_table, location, self.hive_conn,
                          partition_columns(cfg.source.granularity))
