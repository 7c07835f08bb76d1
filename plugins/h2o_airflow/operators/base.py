"""What every pipeline operator shares: the pipeline file, run-time overrides, the interval."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from h2o_airflow.hooks.h2o import CREDENTIALS_MARGIN, H2OHook
from h2o_airflow.links import XCOM_DIAGNOSTICS_KEY, XCOM_ERROR_KEY
from h2o_tasks.cluster.base import EXTEND_REFUSED
from h2o_tasks.errors import ClusterError, H2OTasksError

CREATE_TASK_ID = "create_cluster"


def fail_fast(exc: H2OTasksError) -> Exception:
    """Errors a retry cannot fix fail the task without retries; the others keep Airflow's retry."""
    return exc if exc.retryable else AirflowFailException(str(exc))


def params_to_overrides(cfg: Any, params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Map the DAG params of a manual run or backfill onto pipeline sections."""
    out: dict[str, dict[str, Any]] = {}
    if params.get("replicas") not in (None, ""):
        out.setdefault("cluster", {})["replicas"] = params["replicas"]
    if params.get("memory") not in (None, ""):
        out.setdefault("cluster", {})["memory"] = params["memory"]
    if params.get("window_days") not in (None, ""):
        out.setdefault("source", {})["training_window_days"] = params["window_days"]
    if params.get("algorithm"):
        configured = {a.algo: a.params for a in cfg.training.algorithms}
        out["training"] = {"algorithms": [{"algo": params["algorithm"],
                                           "params": dict(configured.get(params["algorithm"], {}))}]}
    return out


class H2OPipelineOperator(BaseOperator):
    """
    Base of the pipeline operators.

    :param pipeline: path of the pipeline YAML file (templated).
    :param overrides: run-time overrides per section, e.g. ``{"cluster": {"replicas": 3}}``
        (templated; from the DAG's params for manual runs and backfills).
    :param create_task_id: the task that created the cluster (its XCom is the ``ClusterInfo``).
    :param aws_conn_id: AWS connection for S3 (``extra.endpoint_url`` for a non-AWS S3 API).
    :param kubernetes_conn_id: Kubernetes connection, for ``cluster.backend: kubernetes``.
    :param last_day_only: work on the last day of the run's data interval only (the training
        DAG's scoring tasks with ``scoring.after_training``).
    :param s3_refresh_margin: temporary S3 credentials (assume-role, web identity, instance
        profile) that end within this margin are fetched again before each long step (import,
        train, export, score), and handed to the cluster; default 15 minutes.
    """

    template_fields: Sequence[str] = ("pipeline", "overrides")
    ui_color = "#ffe433"

    def __init__(self, *, pipeline: str, overrides: dict[str, Any] | str | None = None,
                 create_task_id: str = CREATE_TASK_ID, aws_conn_id: str | None = "aws_default",
                 kubernetes_conn_id: str = "kubernetes_default", last_day_only: bool = False,
                 s3_refresh_margin: timedelta = CREDENTIALS_MARGIN, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.s3_refresh_margin = s3_refresh_margin
        self.last_day_only = last_day_only
        self.kubernetes_conn_id = kubernetes_conn_id
        self.pipeline = pipeline
        self.overrides = overrides
        self.create_task_id = create_task_id
        self.aws_conn_id = aws_conn_id
        self._cluster: Any = None
        self._hook: Any = None

    def config(self, context: Any) -> Any:
        """The pipeline, with the run's params and this operator's overrides applied (validated)."""
        from h2o_tasks import config

        try:
            cfg = config.load(self.pipeline)
            overrides = self.overrides or {}
            if isinstance(overrides, str):
                import json

                overrides = json.loads(overrides) if overrides.strip() else {}
            merged = params_to_overrides(cfg, context.get("params") or {})
            for section, values in overrides.items():
                merged[section] = {**merged.get(section, {}), **values}
            return cfg.with_overrides(**merged)
        except H2OTasksError as exc:
            raise fail_fast(exc) from exc

    def backend(self, cfg: Any) -> Any:
        """This pipeline's cluster backend, as its file says now (to create a cluster)."""
        from h2o_airflow.backends import backend_for

        return backend_for(cfg.cluster.backend, kubernetes_conn_id=self.kubernetes_conn_id,
                           namespace=cfg.cluster.namespace, endpoint_mode=cfg.cluster.endpoint_mode,
                           cluster_domain=cfg.cluster.cluster_domain)

    @cached_property
    def cluster_backend(self) -> Any:
        """The backend of this task's cluster (:meth:`attach` first): one per task, shared by the
        hook and the watch, so a port-forward is opened once."""
        from h2o_airflow.backends import backend_for_cluster

        return backend_for_cluster(self._cluster, self.kubernetes_conn_id)

    def attach(self, context: Any) -> tuple[Any, H2OHook]:
        """This run's cluster as the create task recorded it (its leader's address read again: a cluster
        rebuilt since has other ports or pods), and a hook on it sharing the task's backend."""
        import dataclasses

        info = self.cluster_info(context)
        self._cluster = info
        if info.endpoint_mode != "port-forward":
            try:
                info = dataclasses.replace(info, url=self.cluster_backend.endpoint(info) or info.url)
            except Exception as exc:  # gone: the watch rebuilds it or reports it
                self.log.warning("Could not read the address of cluster %s: %s", info.name, exc)
        self._cluster = info
        self._hook = H2OHook(cluster=info, aws_conn_id=self.aws_conn_id, backend=self.cluster_backend)
        return info, self._hook

    def s3_settings(self) -> Any:
        """S3 settings for this task: its hook's (fetched once, again only near their end), else new ones."""
        hook = getattr(self, "_hook", None)
        if hook is not None:
            return hook.fresh_s3_settings(self.s3_refresh_margin)
        return H2OHook(aws_conn_id=self.aws_conn_id).s3_settings()

    def watched(self, context: Any, cfg: Any, what: str, job: Any) -> Any:
        """``job()`` while the run's cluster is watched: a lost node fails the task at once, a cluster
        that cannot be observed after ``cluster.unobservable_grace_s``. First the cluster's expiry is
        pushed past the end this task may reach, so the janitor leaves a cluster in use alone."""
        from h2o_tasks.cluster.base import ttl
        from h2o_tasks.cluster.watch import run_watched

        info = self._cluster if getattr(self, "_cluster", None) is not None else self.attach(context)[0]
        backend = self.cluster_backend
        backend.login_patience_s = float(cfg.cluster.unobservable_grace_s)  # as patient as the watch below
        if cfg.cluster.rebuild_on_loss:
            info = self._rebuild_if_lost(context, cfg, info, backend)
        by = max(ttl(cfg.cluster), self.execution_timeout or ttl(cfg.cluster))
        if getattr(self, "_hook", None) is not None:  # temporary credentials that would end during the step
            self._hook.fresh_s3_settings(self.s3_refresh_margin)
        try:
            self._extend_before(info, backend, by)
            return run_watched(what, job, lambda: backend.status(info, elapsed_s=float("inf"), formation_timeout_s=0.0),
                               grace_s=cfg.cluster.unobservable_grace_s, rebuild=cfg.cluster.rebuild_on_loss)
        except BaseException as exc:  # for the run's diagnostics bundle
            context["ti"].xcom_push(key=XCOM_ERROR_KEY, value=f"{type(exc).__name__}: {exc}"[:8000])
            raise
        finally:
            if getattr(self, "_hook", None) is not None:
                self._hook.close()  # the task's H2O session, while the cluster and the forward are there
            backend.close()  # the task's port-forward, if it opened one

    def _extend_before(self, info: Any, backend: Any, by: Any) -> None:
        """Push the expiry past the step's end; a refusal stops the task before its step."""
        try:
            self.log.info("Cluster %s now expires at %s", info.name, backend.extend(info, by))
        except ClusterError as exc:
            if exc.reason in EXTEND_REFUSED:  # a janitor is deleting it, or holds it: the step would not end
                raise
            self.log.warning("Could not extend the expiry of cluster %s: %s", info.name, exc)
        except Exception as exc:  # the watch reports a cluster that is gone
            self.log.warning("Could not extend the expiry of cluster %s: %s", info.name, exc)

    def _rebuild_if_lost(self, context: Any, cfg: Any, info: Any, backend: Any) -> Any:
        """A cluster that lost a node (or is gone) is saved as evidence, deleted and made again under its name."""
        from h2o_tasks.cluster.rebuild import rebuild

        try:
            st = backend.status(info, elapsed_s=float("inf"), formation_timeout_s=0.0)
        except Exception as exc:  # cannot be observed now (an API server restarting): the watch waits its grace
            self.log.warning("Cannot observe cluster %s before this task (%s): going on", info.name, exc)
            return info
        if not st.failed:
            return info
        self.log.warning("Cluster %s is lost (%s: %s): rebuilding it (cluster.rebuild_on_loss)", info.name, st.reason,
                         st.message)
        self.diagnose(context, cfg, info, backend, {self.task_id: f"cluster lost before this try: {st.reason}: "
                                                                  f"{st.message}"})
        s3s = self.s3_settings()
        info = rebuild(backend, info, cfg.cluster, cfg.name, info.dag_id or context["dag"].dag_id,
                       info.run_id or context["run_id"], s3_endpoint=s3s.endpoint_url)
        self.log.info("Cluster %s made again; its leader is at %s", info.name, info.url)
        self._cluster = info
        if getattr(self, "_hook", None) is not None:
            self._hook.cluster = info
            self._hook.close()  # its next connection goes to the new cloud
        return info

    def diagnose(self, context: Any, cfg: Any, info: Any, backend: Any, errors: dict[str, str]) -> str | None:
        """Save the cluster's evidence (before it is deleted) and push where it went; None if it could not be."""
        from h2o_tasks import diagnostics

        s3s = self.s3_settings()
        uri = diagnostics.bundle_uri(cfg.registry_uri, cfg.name, context["dag"].dag_id, context["run_id"])
        try:
            bundle = diagnostics.collect(backend, info, errors=errors, secrets=[s3s.access_key, *s3s.secrets],
                                         client=s3s.client(), uri=uri)
        except Exception as exc:  # the evidence is best effort; the run's own error matters more
            self.log.error("Could not save the diagnostics of cluster %s: %s", info.name, exc)
            return None
        context["ti"].xcom_push(key=XCOM_DIAGNOSTICS_KEY, value=bundle.uri)
        self.log.info("Diagnostics of cluster %s saved to %s (%d files)", info.name, bundle.uri, len(bundle.files))
        return bundle.uri

    def cluster_info(self, context: Any) -> Any:
        """The ``ClusterInfo`` the create task pushed."""
        from h2o_tasks.cluster import ClusterInfo

        info = context["ti"].xcom_pull(task_ids=self.create_task_id)
        if not info:
            raise AirflowFailException(f"no cluster information in the XCom of task {self.create_task_id!r}: "
                                       "the create task did not run in this DAG run; clear the run from its start")
        return ClusterInfo.from_dict(info)

    def periods(self, context: Any, cfg: Any) -> list[Any]:
        """The partitions this run scores: the days of its interval, or (``source.granularity: hour``)
        its hours; a run without an interval, its logical day or hour; ``last_day_only``, the last day's."""
        from h2o_airflow.assets import event_days
        from h2o_tasks import intervals

        granularity = cfg.source.granularity
        start, end = self.interval(context)
        if granularity == "day" or self.last_day_only or event_days(context):  # events name whole days
            return intervals.periods(granularity, start, end)
        first: datetime | None = context.get("data_interval_start")
        last: datetime | None = context.get("data_interval_end")
        if first is None or last is None or last <= first:
            first = (context.get("logical_date") or context["dag_run"].run_after).replace(minute=0, second=0,
                                                                                           microsecond=0)
            last = first + timedelta(hours=1)
        return intervals.periods(granularity, first, last)

    def interval(self, context: Any) -> tuple[date, date]:
        """The run's data interval as dates ``[start, end)`` (a manual run: the logical day; a run triggered by
        asset events: the days they name, see :func:`h2o_airflow.assets.triggered_span`); with
        ``last_day_only`` its last day."""
        start: datetime | None = context.get("data_interval_start")
        end: datetime | None = context.get("data_interval_end")
        if start is None or end is None or end <= start:
            from h2o_airflow.assets import event_days, triggered_span

            try:
                span = triggered_span(context, self.config(context)) if event_days(context) else None
            except H2OTasksError as exc:  # an event naming no day: no retry reads it otherwise
                raise fail_fast(exc) from exc
            if span:
                start, end = datetime.fromisoformat(span[0]), datetime.fromisoformat(span[1]) + timedelta(days=1)
            else:
                logical = context.get("logical_date") or context["dag_run"].run_after
                start, end = logical, logical + timedelta(days=1)
        first, last = start.date(), max(end.date(), start.date() + timedelta(days=1))
        return (last - timedelta(days=1), last) if self.last_day_only else (first, last)
