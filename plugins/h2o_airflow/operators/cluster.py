"""Create (setup) and delete (teardown) an ephemeral H2O cluster for one DAG run."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from h2o_airflow.backends import backend_for_cluster
from h2o_airflow.hooks.h2o import H2OHook
from h2o_airflow.links import XCOM_CLUSTER_KEY, XCOM_ERROR_KEY, H2ODiagnosticsLink, H2OFlowLink
from h2o_airflow.operators.base import H2OPipelineOperator, fail_fast
from h2o_airflow.triggers.cluster import H2OClusterReadyTrigger
from h2o_tasks import intervals, naming, sizing, testhooks
from h2o_tasks.cluster import ClusterInfo, ClusterSpec, login
from h2o_tasks.cluster.base import EXTEND_REFUSED, GONE, ttl
from h2o_tasks.errors import ClusterError, H2OTasksError
from h2o_tasks.s3 import S3Settings


class H2OCreateClusterOperator(H2OPipelineOperator):
    """
    Create this run's H2O cluster and wait until its cloud is whole.

    Idempotent: a retry of the same run re-attaches to the cluster it created (the name is
    derived from the DAG id and run id), reconciling every object. The cluster is sized against
    the input of the interval first; a cluster too small for it is refused before anything
    starts. Whatever fails in this task (a partial create, the wait, the trigger itself), the
    cluster is deleted (``delete_on_error``): the error is raised, cleanup errors are logged.

    :param purpose: ``train`` (reads the training window) or ``score`` (the interval).
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    :param poll_s: seconds between two readiness observations.
    :param delete_on_error: delete the cluster when it fails to become ready.
    """

    template_fields: Sequence[str] = (*H2OPipelineOperator.template_fields, "purpose")
    operator_extra_links = (H2OFlowLink(),)
    ui_color = "#c6f1d6"

    def __init__(self, *, purpose: str = "train", deferrable: bool = True, poll_s: float = 0.5,
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
            # recorded before the create, so that the teardown finds the cluster even if this task dies in it
            context["ti"].xcom_push(key=XCOM_CLUSTER_KEY, value=ClusterInfo(
                name=spec.name, backend=cfg.cluster.backend, namespace=cfg.cluster.namespace,
                endpoint_mode=cfg.cluster.endpoint_mode, kubernetes_conn_id=self.kubernetes_conn_id,
                dag_id=spec.dag_id, run_id=spec.run_id).to_dict())
            info = self._create_extended(backend, spec, cfg)
        except H2OTasksError as exc:
            raise fail_fast(exc) from exc
        context["ti"].xcom_push(key=XCOM_CLUSTER_KEY, value=info.to_dict())
        self.log.info("Cluster %s (%s backend, %d nodes) created at %s", info.name, info.backend, info.replicas, info.url)
        if self.deferrable:
            self.defer(trigger=H2OClusterReadyTrigger(info.to_dict(), timeout_s=cfg.cluster.ready_timeout_s,
                                                      poll_s=self.poll_s, kubernetes_conn_id=self.kubernetes_conn_id,
                                                      formation_timeout_s=cfg.cluster.lookup_timeout_s + 30,
                                                      grace_s=cfg.cluster.unobservable_grace_s),
                       method_name="execute_complete")
        try:
            st = backend.wait_ready(info, cfg.cluster.ready_timeout_s, self.poll_s)
        except BaseException as exc:
            self.diagnose(context, cfg, info, backend, {self.task_id: f"{type(exc).__name__}: {exc}"})
            self._delete(info)
            if isinstance(exc, ClusterError):
                raise fail_fast(exc) from exc
            raise
        return self.execute_complete(context, {"status": "ready", "cluster": info.to_dict(), "message": st.message})

    def _create_extended(self, backend: Any, spec: ClusterSpec, cfg: Any) -> ClusterInfo:
        """Create the cluster (a retry re-attaches) and push its expiry to a time-to-live from now.

        A janitor that listed an expired cluster before a retry re-attached to it may mark or delete
        it before this extend: what is left of it is deleted (waiting until it is gone, so that no new
        object attaches to a terminating one), and the cluster is made again, once. A partial create is
        deleted by the backend before it raises."""
        info = self._cluster = backend.create(spec)
        try:
            info = self._extend(backend, info, cfg)
        except ClusterError as exc:
            if exc.reason not in GONE:
                raise
            self.log.warning("Cluster %s went to the janitor as this task re-attached (%s): creating it again",
                             spec.name, exc)
            backend.delete(ClusterInfo(name=spec.name, backend=info.backend, namespace=info.namespace))
            info = self._cluster = backend.create(spec)
            info = self._extend(backend, info, cfg)
        self._cluster = info
        return info

    def _extend(self, backend: Any, info: ClusterInfo, cfg: Any) -> ClusterInfo:
        """Push the cluster's expiry to a time-to-live from now. A cluster a janitor is deleting, or
        has deleted, fails the task retryably (its retry makes the cluster again); any other error is
        logged: the next task's extend, or the watch, deals with it."""
        try:
            return dataclasses.replace(info, expires_at=backend.extend(info, ttl(cfg.cluster)))
        except ClusterError as exc:
            if exc.reason in EXTEND_REFUSED:
                raise
            if exc.reason == "NotFound":  # deleted since it was created or found ready: only a retry helps
                raise ClusterError(f"cluster {info.name} was deleted under this task ({exc}); a retry creates it "
                                   "again", retryable=True, reason="NotFound") from exc
            self.log.warning("Could not extend the expiry of cluster %s: %s", info.name, exc)
        except Exception as exc:
            self.log.warning("Could not extend the expiry of cluster %s: %s", info.name, exc)
        return info

    def _delete(self, info: ClusterInfo) -> None:
        """``delete_on_error``: the cluster goes; an error deleting it is logged, the original one raised."""
        if not self.delete_on_error:
            return
        self.log.warning("Deleting cluster %s after its failure", info.name)
        try:
            backend_for_cluster(info, self.kubernetes_conn_id).delete(info)
        except Exception as exc:
            self.log.error("Could not delete cluster %s (the janitor will): %s", info.name, exc)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        info = ClusterInfo.from_dict(event["cluster"])
        if event["status"] != "ready":
            msg = f"H2O cluster {info.name} {event['status']}: {event.get('reason')}: {event.get('message')}"
            try:
                self.diagnose(context, self.config(context), info, backend_for_cluster(info, self.kubernetes_conn_id),
                              {self.task_id: msg})
            except Exception as exc:  # the pipeline file may be unreadable by now: the cluster still goes
                self.log.error("No diagnostics for cluster %s: %s", info.name, exc)
            self._delete(info)
            if event["status"] == "timeout" or event.get("reason") in GONE:  # a retry makes it again
                raise ClusterError(msg, retryable=True, reason=event.get("reason") or "")
            raise AirflowFailException(msg)
        # the leader's address as seen from here (the client Service, or the leader pod's IP)
        backend = backend_for_cluster(info, self.kubernetes_conn_id)
        try:
            url = backend.endpoint(info)
        except BaseException:
            self._delete(info)
            raise
        info = self._extend(backend, info, self.config(context))  # the wait may have been long
        info = dataclasses.replace(info, url=url)
        context["ti"].xcom_push(key=XCOM_CLUSTER_KEY, value=info.to_dict())
        self.log.info("%s (after %ss); leader at %s", event.get("message"), event.get("elapsed_s", "?"), url)
        self.log.info("H2O Flow (the task's H2O Flow link) asks for the cluster's login: %s", login.hint(info))
        testhooks.checkpoint("cluster:ready")
        return info.to_dict()

    def on_kill(self) -> None:
        """Killed while waiting in a worker: delete the cluster (a retry creates it again)."""
        info = getattr(self, "_cluster", None)
        if info is not None:
            self._delete(info)


class H2ODeleteClusterOperator(H2OPipelineOperator):
    """
    Delete this run's H2O cluster as one unit and wait until it is gone (a teardown task).

    It deletes exactly what the create task recorded (its ``ClusterInfo`` in XCom, pushed before
    the create), whatever the pipeline file says now: a backend or namespace changed mid-run
    still finds the cluster. Only without that record is the cluster found from the run's ids
    and the current file. A cluster that does not exist counts as deleted.

    When a task of the run failed, the cluster's evidence is saved first (a diagnostics bundle:
    every node's log, the pods' statuses and events or the local nodes' states, ``/3/Cloud``, the
    failed tasks' errors, no secret); its S3 prefix is logged, pushed to XCom
    (``h2o_diagnostics``) and behind the task's "Diagnostics" link.
    """

    operator_extra_links = (H2ODiagnosticsLink(),)
    ui_color = "#f5c6c6"

    def execute(self, context: Any) -> dict[str, Any]:
        recorded = context["ti"].xcom_pull(task_ids=self.create_task_id, key=XCOM_CLUSTER_KEY)
        bundle = None
        if recorded:
            info = ClusterInfo.from_dict(recorded)
            backend = backend_for_cluster(info, self.kubernetes_conn_id)
            failed = self._failed_tasks(context)
            if failed:
                bundle = self._diagnose_failure(context, info, backend, failed)
        else:
            cfg = self.config(context)
            name = naming.cluster_name(cfg.name, context["dag"].dag_id, context["run_id"])
            self.log.warning("No cluster recorded by %s: deleting %s as the pipeline file names it now",
                             self.create_task_id, name)
            info = ClusterInfo(name=name, backend=cfg.cluster.backend, namespace=cfg.cluster.namespace)
            backend = self.backend(cfg)
        deleted = backend.delete(info)
        self.log.info("Cluster %s (%s) %s", info.name, info.backend,
                      "deleted" if deleted else "did not exist (nothing to delete)")
        return {"cluster": info.name, "backend": info.backend, "namespace": info.namespace, "deleted": deleted,
                "diagnostics": bundle}

    def _failed_tasks(self, context: Any) -> list[str]:
        """The tasks of this run that failed (those skipped because of them are not counted)."""
        ti = context["ti"]
        try:
            states = ti.get_task_states(ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        except Exception as exc:  # cannot tell: the evidence is saved rather than lost
            self.log.warning("Could not read the states of this run's tasks (%s): saving diagnostics", exc)
            return sorted(self.upstream_task_ids - {self.create_task_id})
        return sorted(t for t, state in states.items() if str(state) == "failed" and t != self.task_id)

    def _diagnose_failure(self, context: Any, info: ClusterInfo, backend: Any, failed: list[str]) -> str | None:
        pushed = context["ti"].xcom_pull(task_ids=failed, key=XCOM_ERROR_KEY) or []
        errors = {t: e or "failed (see its log)" for t, e in zip(failed, pushed, strict=False)}
        try:
            cfg = self.config(context)
        except Exception as exc:  # the file may be broken by now: the cluster still goes
            self.log.error("No diagnostics for cluster %s: %s", info.name, exc)
            return None
        return self.diagnose(context, cfg, info, backend, errors)

