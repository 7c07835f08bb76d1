"""Create (setup) and delete (teardown) an ephemeral H2O cluster for one DAG run."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from h2o_airflow.backends import backend_for_cluster
from h2o_airflow.hooks.h2o import H2OHook
from h2o_airflow.links import XCOM_CLUSTER_KEY, H2OFlowLink
from h2o_airflow.operators.base import H2OPipelineOperator, fail_fast
from h2o_airflow.triggers.cluster import H2OClusterReadyTrigger
from h2o_tasks import intervals, naming, sizing
from h2o_tasks.cluster import ClusterInfo, ClusterSpec
from h2o_tasks.errors import ClusterError, H2OTasksError
from h2o_tasks.s3 import S3Settings


class H2OCreateClusterOperator(H2OPipelineOperator):
    """
    Create this run's H2O cluster and wait until its cloud is whole.

    Idempotent: a retry of the same run re-attaches to the cluster it created (the name is
    derived from the DAG id and run id). The cluster is sized against the input of the
    interval first; a cluster too small for it is refused before anything starts.
    If the cluster fails while forming, it is deleted (``delete_on_error``).

    :param purpose: ``train`` (reads the training window) or ``score`` (the interval).
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    :param poll_s: seconds between two readiness observations.
    :param delete_on_error: delete the cluster when it fails to become ready.
    """

    template_fields: Sequence[str] = (*H2OPipelineOperator.template_fields, "purpose")
    operator_extra_links = (H2OFlowLink(),)
    ui_color = "#c6f1d6"

    def __init__(self, *, purpose: str = "train", deferrable: bool = True, poll_s: float = 0.1,
                 delete_on_error: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.purpose = purpose
        self.deferrable = deferrable
        self.poll_s = poll_s
        self.delete_on_error = delete_on_error

    def _input_bytes(self, cfg: Any, context: Any, s3: S3Settings) -> tuple[int, str]:
        if cfg.source.kind != "s3":
            return 0, "hive"
        from h2o_tasks.sources import s3 as s3_source

        start, end = intervals.window(cfg, self.purpose, *self.interval(context))
        resolved = s3_source.resolve(s3.client(), cfg.source.s3, start, end, all_required=self.purpose == "score")
        return resolved.total_bytes, cfg.source.s3.format

    def execute(self, context: Any) -> dict[str, Any] | None:
        cfg = self.config(context)
        s3 = H2OHook(aws_conn_id=self.aws_conn_id).s3_settings()
        try:
            input_bytes, fmt = self._input_bytes(cfg, context, s3)
            advice = sizing.check(cfg.cluster, input_bytes, fmt)
            self.log.info("Input %.1f MB (%s): cluster needs ~%d MB, has %d MB", input_bytes / 2**20, fmt,
                          advice.required_total_mb, advice.available_total_mb)
            spec = ClusterSpec.for_run(cfg.name, context["dag"].dag_id, context["run_id"], cfg.cluster,
                                       s3_endpoint=s3.endpoint_url)
            backend = self.backend(cfg)
            info = backend.create(spec)
            self._cluster = info
        except H2OTasksError as exc:
            raise fail_fast(exc) from exc
        context["ti"].xcom_push(key=XCOM_CLUSTER_KEY, value=info.to_dict())
        self.log.info("Cluster %s (%s backend, %d nodes) created at %s", info.name, info.backend, info.replicas, info.url)
        if self.deferrable:
            self.defer(trigger=H2OClusterReadyTrigger(info.to_dict(), timeout_s=cfg.cluster.ready_timeout_s,
                                                      poll_s=self.poll_s, kubernetes_conn_id=self.kubernetes_conn_id,
                                                      formation_timeout_s=cfg.cluster.lookup_timeout_s + 30),
                       method_name="execute_complete")
        try:
            st = backend.wait_ready(info, cfg.cluster.ready_timeout_s, self.poll_s)
        except ClusterError as exc:
            self._delete(info)
            raise fail_fast(exc) from exc
        return self.execute_complete(context, {"status": "ready", "cluster": info.to_dict(), "message": st.message})

    def _delete(self, info: ClusterInfo) -> None:
        if self.delete_on_error:
            self.log.warning("Deleting cluster %s after its failure", info.name)
            backend_for_cluster(info.to_dict(), self.kubernetes_conn_id).delete(info)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        info = ClusterInfo.from_dict(event["cluster"])
        if event["status"] != "ready":
            self._delete(info)
            msg = f"H2O cluster {info.name} {event['status']}: {event.get('reason')}: {event.get('message')}"
            if event["status"] == "timeout":
                raise ClusterError(msg, retryable=True)
            raise AirflowFailException(msg)
        # the leader's address as seen from here (the client Service, or the leader pod's IP)
        url = backend_for_cluster(info.to_dict(), self.kubernetes_conn_id).endpoint(info)
        info = dataclasses.replace(info, url=url)
        context["ti"].xcom_push(key=XCOM_CLUSTER_KEY, value=info.to_dict())
        self.log.info("%s (after %ss); leader at %s", event.get("message"), event.get("elapsed_s", "?"), url)
        return info.to_dict()

    def on_kill(self) -> None:
        """Killed while waiting in a worker: delete the cluster (the trigger does it when deferred)."""
        info = getattr(self, "_cluster", None)
        if info is not None:
            backend_for_cluster(info.to_dict(), self.kubernetes_conn_id).delete(info)


class H2ODeleteClusterOperator(H2OPipelineOperator):
    """
    Delete this run's H2O cluster as one unit and wait until it is gone (a teardown task).

    The name is derived from the DAG id and run id, so it works even when the create task
    failed before pushing anything. A cluster that does not exist counts as deleted.
    """

    ui_color = "#f5c6c6"

    def execute(self, context: Any) -> dict[str, Any]:
        cfg = self.config(context)
        name = naming.cluster_name(cfg.name, context["dag"].dag_id, context["run_id"])
        info = ClusterInfo(name=name, backend=cfg.cluster.backend, namespace=cfg.cluster.namespace)
        deleted = self.backend(cfg).delete(info)
        self.log.info("Cluster %s %s", name, "deleted" if deleted else "did not exist (nothing to delete)")
        return {"cluster": name, "deleted": deleted}
